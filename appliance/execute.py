"""Executors walk a plan's task graph; today a serial one, in this process.

An executor knows nothing about jwst: it is handed a function that runs one
task.  It orders the tasks by their dependencies, times them, records which
files each one wrote, shows progress, and stops at the first failure with one
line that names the task and its log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console

from appliance.errors import WorkFailed
from appliance.files import is_temporary
from appliance.graph import Plan, Task
from appliance.workdir import OUTPUT_DIRS, log_path


@dataclass
class TaskResult:
    id: str
    kind: str
    seconds: float
    outputs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "seconds": round(self.seconds, 3), "outputs": self.outputs}


def topological(tasks: tuple[Task, ...]) -> list[Task]:
    """Tasks in an order that respects ``deps`` (stable: plan order among equals)."""
    done: set[str] = set()
    ordered: list[Task] = []
    pending = list(tasks)
    while pending:
        ready = [t for t in pending if set(t.deps) <= done]
        if not ready:
            raise ValueError(f"dependency cycle among {[t.id for t in pending]}")
        for t in ready:
            ordered.append(t)
            done.add(t.id)
            pending.remove(t)
    return ordered


def snapshot(workdir: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file in the output directories, keyed by relative path."""
    found = {}
    for name in OUTPUT_DIRS:
        for path in (workdir / name).rglob("*"):
            if path.is_file() and not is_temporary(path.name):
                st = path.stat()
                found[path.relative_to(workdir).as_posix()] = (st.st_mtime_ns, st.st_size)
    return found


class SerialExecutor:
    """Run the tasks one after another in this process."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)

    def run(self, plan: Plan, workdir: Path, run_task: Callable[[Task, Path], None]) -> list[TaskResult]:
        ordered = topological(plan.tasks)
        results = []
        start = time.perf_counter()
        for n, task in enumerate(ordered, 1):
            label = f"[{n}/{len(ordered)}] {task.kind:<9} {task.id.partition(':')[2]}"
            before = snapshot(workdir)
            t0 = time.perf_counter()
            log = log_path(workdir, task.id)
            log.parent.mkdir(parents=True, exist_ok=True)
            with self.console.status(label):
                try:
                    run_task(task, log)
                except Exception as exc:  # the pipeline's own errors end the run as a failed task
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise WorkFailed(f"{task.id} failed: {first} (log: {log})") from exc
            seconds = time.perf_counter() - t0
            after = snapshot(workdir)
            outputs = sorted(p for p, stamp in after.items() if before.get(p) != stamp)
            results.append(TaskResult(task.id, task.kind, seconds, outputs))
            self.console.print(f"{label}  {seconds:6.1f} s   elapsed {time.perf_counter() - start:6.1f} s", soft_wrap=True)
        return results
