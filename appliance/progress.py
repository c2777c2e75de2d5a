"""Progress of a run: a live table on a terminal, one plain line per task anywhere else (CI logs, pipes).

The executor calls :meth:`Progress.started` and :meth:`Progress.finished`;
nothing else knows how progress is shown.  The live display (rich) counts the
tasks done, running, queued and failed per stage, names the current task of
each worker (read from the tasks' incomplete markers, which every worker
writes, whatever the executor), and estimates the time left from the
durations of the tasks of each kind done so far.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console

from appliance.runner import BLOCKED, FAILED, REUSED, RUN, Outcome
from appliance.safety import printable
from appliance.workdir import marker_path


class Progress:
    def __init__(self, console: Console | None = None, *, live: bool | None = None):
        self.console = console or Console(stderr=True, highlight=False)
        self.live = self.console.is_terminal if live is None else live
        self._display = None

    # ------------------------------------------------------------------ the run
    def begin(self, tasks, workdir: Path, backend_name: str, workers: int) -> None:
        self.tasks = list(tasks)
        self.total = len(self.tasks)
        self.workdir = workdir
        self.n = 0
        self.start = time.perf_counter()
        self.state = {t.id: "queued" for t in self.tasks}
        self.kind = {t.id: t.kind for t in self.tasks}
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.workers = workers
        self.line(f"executor  {backend_name}, {workers} worker{'s' if workers != 1 else ''}")
        if self.live:
            from rich.live import Live

            self._display = Live(self._render(), console=self.console, refresh_per_second=2, transient=True,
                                 get_renderable=self._render)
            self._display.start()

    def started(self, task) -> None:
        self.state[task.id] = "running"

    def finished(self, outcome: Outcome) -> None:
        self.n += 1
        self.state[outcome.task.id] = outcome.status
        if outcome.status == RUN:
            self.durations[outcome.task.kind].append(outcome.seconds)
        elapsed = time.perf_counter() - self.start
        label = f"[{self.n}/{self.total}] {outcome.task.kind:<9} {outcome.task.subject}"
        timing = f"{outcome.seconds:6.1f} s" if outcome.status == RUN else " " * 8
        tail = "" if outcome.status == RUN and outcome.reason == "new" else f"   ({outcome.reason})"
        worker = (outcome.record or {}).get("worker") if outcome.status == RUN and self.workers > 1 else None
        self.line(f"{label}  {outcome.status:<7} {timing}   elapsed {elapsed:6.1f} s{tail}"
                  + (f"   [{worker}]" if worker else ""))

    def end(self) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None

    def line(self, text: str) -> None:
        self.console.print(printable(text), soft_wrap=True, markup=False)

    # ------------------------------------------------------------------ the live table
    def eta(self) -> float | None:
        """Seconds left: the remaining tasks at the mean duration of their kind so far, shared by the workers."""
        left = [k for t, k in self.kind.items() if self.state[t] in ("queued", "running")]
        if not left or not self.durations:
            return None
        overall = [s for v in self.durations.values() for s in v]
        mean = {k: sum(v) / len(v) for k, v in self.durations.items()}
        return sum(mean.get(k, sum(overall) / len(overall)) for k in left) / max(1, self.workers)

    def _render(self):
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("stage", "done", "running", "queued", "failed"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for task_id, state in self.state.items():
            stage = self.kind[task_id]
            bucket = {RUN: "done", REUSED: "done", BLOCKED: "failed", FAILED: "failed"}.get(state, state)
            counts[stage][bucket] += 1
        for stage, c in counts.items():
            table.add_row(stage, str(c["done"]), str(c["running"]), str(c["queued"]), str(c["failed"]))
        for task_id, state in self.state.items():
            if state == "running":
                table.add_row(f"  {printable(task_id)}", "", "", "", self._worker_of(task_id))
        elapsed = time.perf_counter() - self.start
        eta = self.eta()
        table.caption = f"elapsed {elapsed:5.0f} s" + (f"   left ≈ {eta:5.0f} s" if eta is not None else "")
        return table

    def _worker_of(self, task_id: str) -> str:
        try:
            return str(json.loads(marker_path(self.workdir, task_id).read_text()).get("worker", ""))
        except (OSError, ValueError):
            return ""
