"""Executors walk a plan's task graph; today a serial one, in this process.

An executor knows nothing about jwst: it orders the tasks by their
dependencies and hands each one, with the content digests of what its
upstream tasks wrote, to a ``perform`` function (:func:`appliance.runner.perform`),
which decides run or reuse and records the task.  It shows progress, and stops
at the first failure with one line naming the task and its log -- or, with
``keep_going``, goes on with every task that does not depend on a failed one
and marks those that do as blocked.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable

from rich.console import Console

from appliance.errors import WorkFailed
from appliance.graph import Plan, Task
from appliance.incremental import PENDING, Decision
from appliance.runner import BLOCKED, FAILED, REUSED, RUN, Outcome
from appliance.safety import printable


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


def counts_line(outcomes: list[Outcome]) -> str:
    """``38 tasks: 0 run, 38 reused`` (failed and blocked said only when there are any)."""
    count = {s: sum(1 for o in outcomes if o.status == s) for s in (RUN, REUSED, FAILED, BLOCKED)}
    text = f"{len(outcomes)} tasks: {count[RUN]} run, {count[REUSED]} reused"
    for status in (FAILED, BLOCKED):
        if count[status]:
            text += f", {count[status]} {status}"
    return text


class SerialExecutor:
    """Run the tasks one after another in this process."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False)

    def run(self, plan: Plan, perform: Callable[[Task, dict], Outcome], input_digests: dict, *,
            keep_going: bool = False) -> list[Outcome]:
        """Every task's outcome, in order; without ``keep_going`` the first failure raises WorkFailed.

        An outcome may come back pending (its outputs being digested elsewhere):
        it is settled before any task that reads it is decided, and at the end.
        """
        ordered = topological(plan.tasks)
        digests = dict(input_digests)
        outcomes: dict[str, Outcome] = {}
        start = time.perf_counter()

        def settle(task_id: str) -> None:
            outcome = outcomes[task_id]
            if outcome.pending is None:
                return
            outcome = outcomes[task_id] = outcome.settle()
            for out in outcome.outputs:
                digests[out["path"]] = out["content_digest"]
            if outcome.status == FAILED:
                self.report(f"          {task_id}", outcome, time.perf_counter() - start)
                if not keep_going:
                    raise WorkFailed(failure_line(outcome))

        for n, task in enumerate(ordered, 1):
            label = f"[{n}/{len(ordered)}] {task.kind:<9} {task.subject}"
            for dep in task.deps:
                settle(dep)
            stopped = [d for d in task.deps if outcomes[d].status in (FAILED, BLOCKED)]
            if stopped:
                outcome = Outcome(task, BLOCKED, f"waits for {stopped[0]}, which {outcomes[stopped[0]].status}")
            else:
                with self.console.status(printable(label)):
                    outcome = perform(task, digests)
            outcomes[task.id] = outcome
            for out in outcome.outputs:
                digests[out["path"]] = out["content_digest"]
            self.report(label, outcome, time.perf_counter() - start)
            if outcome.status == FAILED and not keep_going:
                raise WorkFailed(failure_line(outcome))
        for task in ordered:
            settle(task.id)
        return [outcomes[t.id] for t in ordered]

    def report(self, label: str, outcome: Outcome, elapsed: float) -> None:
        timing = f"{outcome.seconds:6.1f} s" if outcome.status == RUN else " " * 8
        tail = "" if outcome.status == RUN and outcome.reason == "new" else f"   ({outcome.reason})"
        self.console.print(printable(f"{label}  {outcome.status:<7} {timing}   elapsed {elapsed:6.1f} s{tail}"),
                           soft_wrap=True, markup=False)


@contextmanager
def background_digests():
    """A digester for :func:`appliance.runner.perform`: outputs digested in one other process.

    Content digests parse every product (FITS headers, ASDF trees); in a second
    process they overlap the next task instead of delaying it, which is most of
    what the appliance adds to a plain jwst run.  The process starts with the
    first digest and ends with the block.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from appliance.runner import digest_outputs

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield lambda workdir, task_id, paths: pool.submit(digest_outputs, workdir, task_id, paths)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def failure_line(outcome: Outcome) -> str:
    """One line: the task, the step that failed, the first line of the error, the log."""
    record = outcome.record or {}
    step = f" in step {record['step']}" if record.get("step") else ""
    return f"{outcome.task.id} failed{step}: {outcome.error} (log: {record.get('log', '?')})"


def preview(plan: Plan, decide: Callable[[Task, dict], Decision], reused_outputs: Callable[[Task], list[dict]],
            input_digests: dict) -> list[tuple[Task, Decision]]:
    """What a run would do, task by task, without running anything (``run --dry-run``).

    A task that would run makes its declared outputs :data:`~appliance.incremental.PENDING`,
    so what reads them would run too, its reason saying so.
    """
    digests = dict(input_digests)
    decisions = []
    for task in topological(plan.tasks):
        decision = decide(task, digests)
        decisions.append((task, decision))
        if decision.run:
            digests.update({p: PENDING for p in task.outputs})
        else:
            digests.update({out["path"]: out["content_digest"] for out in reused_outputs(task)})
    return decisions


def print_decisions(decisions: list[tuple[Task, Decision]], out=print) -> None:
    width = max((len(t.id) for t, _ in decisions), default=10)
    for task, decision in decisions:
        out(printable(f"{decision.verb:<7} {task.id:<{width}}   {decision.reason}"))
    runs = sum(1 for _, d in decisions if d.run)
    out(f"{len(decisions)} tasks: {runs} would run, {len(decisions) - runs} reused")

