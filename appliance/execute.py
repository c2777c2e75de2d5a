"""The executor: one ready-queue walk of a plan's task graph, whatever runs the tasks.

It knows nothing about jwst: it hands each task whose dependencies are done,
with the content digests of what its upstream tasks wrote, to a backend
(:mod:`appliance.backends`: this process, a process pool, Dask), where
:func:`appliance.runner.perform` decides run or reuse and records the task.
Progress goes through :mod:`appliance.progress`.  It stops at the first
failure with one line naming the task and its log -- or, with ``keep_going``,
goes on with every task that does not depend on a failed one and marks those
that do as blocked.
"""

from __future__ import annotations

import heapq
import os
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager
from typing import Callable


from appliance.errors import WorkFailed, short_reason
from appliance.graph import Plan, Task
from appliance.incremental import PENDING, Decision
from appliance.progress import Progress
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


class Executor:
    """The one ready-queue walk: tasks go to the backend as their dependencies finish, at most one per worker.

    ``backend`` is where tasks run (:mod:`appliance.backends`: in process, a
    process pool, Dask); ``progress`` how it is shown.  Ready tasks start in
    plan order.  An outcome may come back pending (the in-process backend
    digests outputs in a second process): it is settled before any task that
    reads it starts, and at the end.
    """

    def __init__(self, backend, progress: Progress | None = None, decide=None):
        self.backend = backend
        self.progress = progress or Progress()
        #: ``decide(task, digests) -> Outcome | None``: a reuse decided here, so nothing is sent to a worker
        #: (and no worker is started) for a task whose record still holds.
        self.decide = decide

    def run(self, plan: Plan, context, input_digests: dict, *, keep_going: bool = False) -> list[Outcome]:
        """Every task's outcome, in plan order; without ``keep_going`` the first failure raises WorkFailed
        (once the tasks already running have finished and recorded themselves)."""
        ordered = topological(plan.tasks)
        order = {t.id: n for n, t in enumerate(ordered)}
        children: dict[str, list[Task]] = {t.id: [] for t in ordered}
        for t in ordered:
            for d in t.deps:
                children[d].append(t)
        digests = dict(input_digests)
        outcomes: dict[str, Outcome] = {}
        ready = [(order[t.id], t) for t in ordered if not t.deps]
        heapq.heapify(ready)
        running: dict = {}
        failure: Outcome | None = None
        self.progress.begin(ordered, context.workdir, self.backend.name, self.backend.workers)

        def settle(task_id: str) -> None:
            nonlocal failure
            outcome = outcomes[task_id]
            if outcome.pending is not None:
                outcome = outcomes[task_id] = outcome.settle()
                digests.update({out["path"]: out["content_digest"] for out in outcome.outputs})
                if outcome.status == FAILED:
                    self.progress.finished(outcome)
                    failure = failure or outcome

        def finish(task: Task, outcome: Outcome) -> None:
            nonlocal failure
            outcomes[task.id] = outcome
            digests.update({out["path"]: out["content_digest"] for out in outcome.outputs})
            self.progress.finished(outcome)
            if outcome.status == FAILED:
                failure = failure or outcome
            for child in children[task.id]:
                if all(d in outcomes for d in child.deps):
                    heapq.heappush(ready, (order[child.id], child))

        try:
            while len(outcomes) < len(ordered):
                while ready and len(running) < self.backend.workers and (keep_going or failure is None):
                    _, task = heapq.heappop(ready)
                    for dep in task.deps:
                        settle(dep)
                    stopped = [d for d in task.deps if outcomes[d].status in (FAILED, BLOCKED)]
                    if stopped:
                        finish(task, Outcome(task, BLOCKED, f"waits for {stopped[0]}, which {outcomes[stopped[0]].status}"))
                        continue
                    reused = self.decide(task, digests) if self.decide is not None else None
                    if reused is not None:
                        finish(task, reused)
                        continue
                    self.progress.started(task)
                    running[self.backend.submit(task, context, dict(digests))] = task
                if not running:
                    if failure is not None and not keep_going:
                        break
                    continue
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as exc:  # noqa: BLE001 - the worker died (killed, out of memory) or vanished
                        outcome = Outcome(task, FAILED, "its worker failed",
                                          error=f"its worker failed: {type(exc).__name__}: {short_reason(exc, 200)}")
                    finish(task, outcome)
            for task in ordered:
                if task.id in outcomes:
                    settle(task.id)
        finally:
            self.progress.end()
        if failure is not None and not keep_going:
            raise WorkFailed(failure_line(failure))
        return [outcomes[t.id] for t in ordered if t.id in outcomes]


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

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))
    try:
        yield lambda workdir, task_id, paths: pool.submit(digest_outputs, workdir, task_id, paths)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def exit_with_parent(parent: int) -> None:
    """In a helper process: end when ``parent`` does.  A run killed with SIGKILL cannot shut its pool
    down, and a pool's worker waits for work forever; this one notices its parent is gone within a second."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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


def print_decisions(dry_run, out=print) -> None:
    """``run --dry-run``'s table (a :class:`~appliance.reduction.DryRun`): the inputs step, then every task;
    the last line counts the tasks as a run's does."""
    decisions = dry_run.tasks
    width = max((len(t.id) for t, _ in decisions), default=10)
    out(printable(f"{dry_run.inputs.verb:<7} {'inputs':<{width}}   {dry_run.inputs.reason}"))
    for task, decision in decisions:
        out(printable(f"{decision.verb:<7} {task.id:<{width}}   {decision.reason}"))
    runs = sum(1 for _, d in decisions if d.run)
    out(f"{len(decisions)} tasks: {runs} would run, {len(decisions) - runs} reused")

