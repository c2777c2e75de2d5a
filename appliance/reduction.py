"""One reduction of a recipe into a workdir, in one pass: load → validate → plan → execute → record → manifest.

Everything that can be wrong with the request is checked before the first
byte is written (:mod:`appliance.session`), so a bad recipe leaves nothing
behind.  The run is incremental (``docs/incremental.md``): each task is
reused when its completion record still holds and run otherwise, each
finished task is recorded at once (so a crash loses nothing finished), and the
manifest, assembled from the records, is written last, so its presence means
every product in it is complete.  One run works in a workdir at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from appliance import backends, crdsenv, manifest, records, stepguard
from appliance.errors import WorkFailed
from appliance.execute import Executor, counts_line, failure_line, preview
from appliance.files import utc_now
from appliance.graph import Task
from appliance.incremental import Decision, environment_of
from appliance.plan import build_plan
from appliance.progress import Progress
from appliance.resources import core_share, unknown_plan_estimate, worker_budget
from appliance.runner import BLOCKED, FAILED, Outcome, RunContext, decision_for, reused
from appliance.session import (
    Prepared,
    check_cache,
    expected_environment,
    prepare,
    prepare_cache,
    priced,
)
from appliance.sources import place, planned_exposures
from appliance.workdir import (
    MANIFEST_NAME,
    SLURM_LOGS_DIR,
    SUMS_NAME,
    check_not_busy,
    check_workdir,
    load_fetch_record,
    locked,
)


@dataclass(frozen=True)
class Options:
    """How a run treats what earlier runs left (``run``'s flags)."""

    force: bool = False  # run every task, whatever its record says
    force_tasks: frozenset[str] = frozenset()  # run these tasks
    keep_going: bool = False  # after a failure, run every task that does not depend on it
    allow_env_mismatch: bool = False
    executor: str = "serial"  # serial | process | dask (appliance/backends.py)
    jobs: int | None = None  # workers; default: what fits the cores and the memory (resources.worker_budget)
    dask_scheduler: str | None = None  # tcp://HOST:PORT of an existing Dask cluster
    dask_cluster: str | None = None  # "slurm", or a TOML file of a SLURM cluster for dask-jobqueue


@dataclass
class Result:
    manifest: Path | None
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return counts_line(self.outcomes)

    @property
    def unexpected_skips(self) -> list[str]:
        """One line per step that ended SKIPPED though nothing asked it to (:mod:`appliance.stepguard`)."""
        return stepguard.summary_lines({o.task.id: (o.record or {}).get("skipped_steps", []) for o in self.outcomes})


def run(recipe_path: Path, workdir: Path, options: Options = Options(), *, console=None) -> Result:
    """Reduce the recipe into ``workdir``: run what changed, reuse the rest, write the manifest."""
    check_workdir(workdir)
    check_not_busy(workdir)  # at once, before the step specs are checked (which imports jwst)
    prepared = prepare(recipe_path, workdir, allow_env_mismatch=options.allow_env_mismatch)
    recipe, settings = prepared.recipe, prepared.settings
    known = planned_exposures(recipe)
    jobs = options.jobs or 1
    if known is not None:  # an unknown --force-task, a plan too big for this machine: before any write
        planned = build_plan(recipe, known)
        _check_forced(planned, options)
        cost = priced(recipe, planned, workdir)
        jobs = options.jobs or worker_budget(cost)[0]
    elif not options.jobs:
        jobs = worker_budget(unknown_plan_estimate())[0]
    if options.executor == "serial":
        jobs = 1
    check_cache(settings, simulated=prepared.simulated)
    progress = Progress(console)
    # an unreachable --dask-scheduler, a bad cluster file: one line before anything is written
    backend = backends.start(options.executor, jobs, settings.as_env(), scheduler=options.dask_scheduler,
                             cluster=options.dask_cluster, log_directory=str(Path(workdir).absolute() / SLURM_LOGS_DIR),
                             announce=progress.line)
    try:
        return _run(prepared, workdir, options, known, backend, progress)
    finally:
        backend.close()


def _run(prepared: Prepared, workdir: Path, options: Options, known, backend, progress: Progress) -> Result:
    recipe, settings = prepared.recipe, prepared.settings
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    with locked(workdir, "run"):
        started = utc_now()
        crdsenv.configure(settings)  # for the rest of this process: the stages import jwst
        for stale in (MANIFEST_NAME, SUMS_NAME):  # an old manifest must not describe new products
            (workdir / stale).unlink(missing_ok=True)
        prepare_cache(settings, simulated=prepared.simulated)
        jwst_version = expected_environment(recipe)[0]
        records.mark_specs_checked(workdir, records.specs_fingerprint(recipe, jwst_version))

        placed = place(recipe, workdir, force=options.force)
        plan = build_plan(recipe, placed.exposures)
        _check_forced(plan, options)
        if known is None:  # MAST inputs: sized only once they are here
            priced(recipe, plan, workdir)
        context = _context(prepared, workdir, options, jwst_version, core_share(None, backend.workers))
        progress.line(f"inputs    {placed.status}   ({placed.reason})")
        executor = Executor(backend, progress, decide=lambda task, digests: reused(task, context, digests))
        outcomes = executor.run(plan, context, placed.digests, keep_going=options.keep_going)
        stopped = [o for o in outcomes if o.status in (FAILED, BLOCKED)]
        if stopped:
            failed = [o for o in outcomes if o.status == FAILED]
            raise WorkFailed(f"{counts_line(outcomes)}; {failure_line(failed[0])}"
                             + (f" (and {len(failed) - 1} more failed)" if len(failed) > 1 else "")
                             + "; run again to resume from here")
        execution = {"executor": backend.name, "workers": backend.workers, "maximum_cores": context.maximum_cores}
        built = manifest.assemble(prepared, plan, placed, outcomes, jwst_version=jwst_version,
                                  crds_fetch=(load_fetch_record(workdir) or {}).get("crds"),
                                  started=started, finished=utc_now(), execution=execution)
        return Result(manifest.write_manifest(workdir, built), outcomes)


@dataclass
class DryRun:
    """What ``run`` would do now: the inputs step, then each task, with the reason for each."""

    inputs: Decision
    tasks: list[tuple[Task, Decision]]


def dry_run(recipe_path: Path, workdir: Path, options: Options = Options()) -> DryRun:
    """What ``run`` would do in ``workdir``, task by task and why, writing nothing."""
    from appliance.sources import preview as preview_inputs

    prepared = prepare(recipe_path, workdir, allow_env_mismatch=True)
    recipe = prepared.recipe
    workdir = workdir.absolute()
    inputs = preview_inputs(recipe, workdir, force=options.force)
    if inputs.exposures is None:
        from appliance.errors import UserError

        raise UserError(f"{recipe.path}: inputs.mast: the exposures of a MAST recipe are known once fetched "
                        f"(run `python run.py fetch` first)")
    plan = build_plan(recipe, inputs.exposures)
    _check_forced(plan, options)
    context = _context(prepared, workdir, options, expected_environment(recipe)[0])

    def reused_outputs(task: Task) -> list[dict]:
        return (records.load(workdir, task.id) or {}).get("outputs", [])

    return DryRun(Decision(inputs.status == "run", inputs.reason),
                  preview(plan, lambda task, d: decision_for(task, context, d)[0], reused_outputs, inputs.digests))


def _context(prepared: Prepared, workdir: Path, options: Options, jwst_version: str,
             maximum_cores: str = "1") -> RunContext:
    return RunContext(workdir, Path(prepared.settings.path), environment_of(jwst_version, prepared.settings),
                      options.force, options.force_tasks, maximum_cores)


def _check_forced(plan, options: Options) -> None:
    unknown = sorted(options.force_tasks - {t.id for t in plan.tasks})
    if unknown:
        from appliance.errors import UserError
        from appliance.recipe.messages import choices

        raise UserError(f"--force-task {unknown[0]}: no such task in this plan"
                        + choices(unknown[0], [t.id for t in plan.tasks], "tasks"))
