"""One task of a plan, start to finish: decide run or reuse, run it, find and digest its outputs, record it.

Executors only schedule: whichever process runs a task calls :func:`perform`,
which writes the task's incomplete marker, runs it (a jwst stage, or a
registered post-processing operation), computes the size, sha256 and content
digest of each output as its last act, and writes the completion record
(:mod:`appliance.records`).  So a task's record exists only when its outputs
are complete, whoever ran it and however the run ended.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from appliance import records
from appliance.errors import first_line
from appliance.files import is_temporary, utc_now
from appliance.graph import Task
from appliance.incremental import Decision, decide, key_of, key_parts, reference_states
from appliance.pipelines import STAGES
from appliance.workdir import log_path

RUN, REUSED, FAILED, BLOCKED = "run", "reused", "failed", "blocked"


@dataclass(frozen=True)
class RunContext:
    """What every task of one run shares."""

    workdir: Path
    cache: Path  # the CRDS cache, where the references' sha256 are read
    environment: dict  # incremental.environment_of(...): part of every key
    force: bool = False
    force_tasks: frozenset[str] = frozenset()
    maximum_cores: str = "1"  # jump's and ramp_fit's share of the worker's cores, unless the recipe sets it


@dataclass
class Outcome:
    """What happened to one task in this run."""

    task: Task
    status: str  # run | reused | failed | blocked
    reason: str
    record: dict | None = None
    seconds: float = 0.0
    error: str = ""
    pending: object = None  # a callable that writes the record once the digests are in: see settle()

    def settle(self) -> "Outcome":
        """This outcome with its record written (waiting for its outputs' digests if they are being computed)."""
        return self.pending() if self.pending is not None else self

    @property
    def outputs(self) -> list[dict]:
        return (self.record or {}).get("outputs", []) if self.status in (RUN, REUSED) else []


def decision_for(task: Task, context: RunContext, input_digests: dict) -> tuple[Decision, dict, dict | None]:
    """(decision, key parts, existing record) for ``task`` given the digests of the files it reads."""
    parts = key_parts(task, input_digests, context.environment)
    record = records.load(context.workdir, task.id)
    forced = context.force or task.id in context.force_tasks
    decision = decide(task, parts, record, context.workdir, context.cache, forced=forced,
                      interrupted=records.interrupted(context.workdir, task.id))
    return decision, parts, record


def reused(task: Task, context: RunContext, input_digests: dict) -> Outcome | None:
    """The task's outcome when its record still holds (decided where the run is scheduled), else None."""
    decision, _, record = decision_for(task, context, input_digests)
    return None if decision.run else Outcome(task, REUSED, decision.reason, record)


def perform(task: Task, context: RunContext, input_digests: dict, digester=None) -> Outcome:
    """Reuse ``task`` if its record still holds, else run it and record it.

    ``digester(workdir, task_id, paths)``, when given, returns a future of the
    outputs' digests (:func:`digest_outputs` in another process): the outcome
    is then *pending* until :meth:`Outcome.settle` writes the record, so the
    next task can run while this one's outputs are digested.
    """
    decision, parts, record = decision_for(task, context, input_digests)
    if not decision.run:
        return Outcome(task, REUSED, decision.reason, record)
    return execute(task, context, parts, decision.reason, digester)


def execute(task: Task, context: RunContext, parts: dict, reason: str, digester=None) -> Outcome:
    """Run the task under its marker; its record (done, or failed) is written whatever happens but a kill."""
    workdir = context.workdir
    log = log_path(workdir, task.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    before = written(workdir, task)
    records.begin(workdir, task.id)
    started, t0 = utc_now(), time.perf_counter()
    base = {"id": task.id, "kind": task.kind, "key": key_of(parts), "key_parts": parts, "params": task.params,
            "inputs": list(task.inputs), "log": log.relative_to(workdir).as_posix(), "started": started,
            "worker": records.worker(), "reason": reason}
    running, cores = with_cores(task, worker_share(context.maximum_cores))
    if cores:
        base["maximum_cores"] = cores
    try:
        base.update(run_task(running, workdir, log) or {})
    except Exception as exc:  # the pipeline's own errors end the task as failed, and are recorded
        return _failed(task, context, base, reason, exc, time.perf_counter() - t0, failing_step(log))
    seconds = time.perf_counter() - t0
    after = written(workdir, task)
    paths = sorted({p for p, stamp in after.items() if before.get(p) != stamp}
                   | {p for p in task.outputs if (workdir / p).is_file()})

    def settle(outputs_or_future) -> Outcome:
        try:
            outputs = outputs_or_future.result() if hasattr(outputs_or_future, "result") else outputs_or_future
        except Exception as exc:  # a product whose content digest cannot be computed fails its task
            return _failed(task, context, base, reason, exc, seconds, "")
        names = {v.removeprefix("crds://") for p in outputs for v in p["crds_refs"].values()
                 if v.startswith("crds://")} | set(base.get("step_parameter_references", ()))
        record = records.finish(workdir, {**base, "status": records.DONE, "outputs": outputs,
                                          "references": reference_states(context.cache, names),
                                          "seconds": round(seconds, 3), "finished": utc_now()})
        return Outcome(task, RUN, reason, record, seconds)

    if digester is None:
        return settle(digest_outputs(workdir, task.id, paths))
    future = digester(workdir, task.id, paths)
    return Outcome(task, RUN, reason, None, seconds, pending=lambda: settle(future))


def worker_share(share: str) -> str:
    """The run's core share, or 1 in a daemonic process (a Dask worker under a nanny started without
    ``distributed.worker.daemon: False``), where jump's and ramp_fit's process pools cannot start."""
    return "1" if multiprocessing.current_process().daemon else share


#: The steps whose ``maximum_cores`` spreads their work over processes.
MULTICORE_STEPS = ("jump", "ramp_fit")


def with_cores(task: Task, share: str) -> tuple[Task, dict[str, str]]:
    """The task as it runs: ``maximum_cores`` of jump and ramp_fit set to the worker's share of cores where the
    recipe does not set it, so parallel workers never oversubscribe; and the effective value per step.

    Not part of the task's key: the products do not depend on it (``docs/scaling.md``).
    """
    if task.kind != "detector1":
        return task, {}
    steps = {name: dict(params) for name, params in task.params.get("steps", {}).items()}
    effective = {}
    for step in MULTICORE_STEPS:
        steps.setdefault(step, {}).setdefault("maximum_cores", share)
        effective[step] = str(steps[step]["maximum_cores"])
    return replace(task, params={**task.params, "steps": steps}), effective


def _failed(task, context, base, reason, exc, seconds, step) -> Outcome:
    first = first_line(exc)
    record = records.finish(context.workdir, {**base, "status": records.FAILED, "error": first, "step": step,
                                              "outputs": [], "seconds": round(seconds, 3), "finished": utc_now()})
    return Outcome(task, FAILED, reason, record, seconds, first)


def digest_outputs(workdir: Path, task_id: str, paths: list[str]) -> list[dict]:
    """Each output's product record (size, sha256, content digest, CRDS references, statuses) and mtime."""
    from appliance.manifest import product_record

    outputs = []
    for rel in paths:
        product = product_record(Path(workdir) / rel, Path(workdir), task_id)
        outputs.append({**product, "mtime_ns": os.stat(Path(workdir) / rel).st_mtime_ns})
    return outputs


#: One task at a time in a process.  A stage changes what belongs to the whole process while it runs (the
#: working directory, the loggers' handlers, stpipe's CRDS lookup, the collector's frozen heap), so two
#: tasks in threads of one process -- a Dask worker started with ``--nthreads 2`` -- would mix them up;
#: the second waits instead.
_ONE_TASK_AT_A_TIME = threading.Lock()


def run_task(task: Task, workdir: Path, log: Path) -> dict | None:
    """Run ``task`` in ``workdir``, its log in ``log``; exceptions propagate.  A stage returns what its
    record keeps besides the outputs (effective parameters, skipped steps)."""
    with _ONE_TASK_AT_A_TIME:
        if task.kind in STAGES:
            from appliance.stages import run_stage

            return run_stage(task, workdir, log)
        from appliance.postprocess import run_task as run_operation

        run_operation(task, workdir, log)
        return None


def written(workdir: Path, task: Task) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file the task may write (its outputs and ``produces`` patterns)."""
    found = {}
    for pattern in (*task.outputs, *task.produces):
        for hit in glob.glob(str(workdir / pattern)):
            path = Path(hit)
            if path.is_file() and not is_temporary(path.name):
                st = path.stat()
                found[path.relative_to(workdir).as_posix()] = (st.st_mtime_ns, st.st_size)
    return found


_STEP_RUNNING = re.compile(r" - stpipe\.\w+ - INFO - Step (\w+) running")
_STEP_DONE = re.compile(r" - stpipe\.\w+ - INFO - Step (\w+) done")


def failing_step(log: Path) -> str:
    """The step that was running when a stage failed: the last one started and not done (its log says so)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    running: list[str] = []
    for line in text.splitlines():
        if m := _STEP_RUNNING.search(line):
            running.append(m.group(1))
        elif (m := _STEP_DONE.search(line)) and m.group(1) in running:
            running.remove(m.group(1))
    inner = [s for s in running if not s.endswith("Pipeline")]
    return inner[-1] if inner else (running[-1] if running else "")
