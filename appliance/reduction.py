"""One reduction of a recipe into a workdir, in one pass: load → validate → plan → execute → record → manifest.

Everything that can be wrong with the request is checked before the first
byte is written (:mod:`appliance.session`), so a bad recipe leaves nothing
behind; the manifest is written last, so its presence means every product in
it is complete.
"""

from __future__ import annotations

import time
from pathlib import Path

from appliance import crdsenv, manifest
from appliance.execute import SerialExecutor
from appliance.files import utc_now
from appliance.plan import build_plan, exposure_from_header
from appliance.runner import run_task
from appliance.session import expected_environment, planned_exposures, prepare, prepare_cache, priced
from appliance.sources import materialise
from appliance.workdir import MANIFEST_NAME, SUMS_NAME, check_workdir, load_fetch_record


def run(recipe_path: Path, workdir: Path, *, allow_env_mismatch: bool = False, console=None) -> Path:
    """Reduce the recipe into ``workdir``; returns the manifest's path."""
    # load and validate: a bad request, missing inputs, bad headers, a plan too big for this machine
    check_workdir(workdir)
    prepared = prepare(recipe_path, workdir, allow_env_mismatch=allow_env_mismatch)
    recipe, settings = prepared.recipe, prepared.settings
    known = planned_exposures(recipe)
    if known is not None:
        priced(recipe, build_plan(recipe, known), workdir)

    started = utc_now()
    crdsenv.configure(settings)  # for the rest of this process: the stages import jwst
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    for stale in (MANIFEST_NAME, SUMS_NAME):  # an old manifest must not describe new products
        (workdir / stale).unlink(missing_ok=True)
    prepare_cache(settings, simulated=prepared.simulated)

    # plan: the inputs in place, then the task graph over their headers
    t0 = time.perf_counter()
    inputs = materialise(recipe, workdir)
    input_seconds = time.perf_counter() - t0
    plan = build_plan(recipe, [exposure_from_header(f.path) for f in inputs if f.path.name.endswith(".fits")])
    if known is None:  # MAST inputs: sized only once they are here
        priced(recipe, plan, workdir)

    # execute, then record and write the manifest
    results = SerialExecutor(console).run(plan, workdir, lambda task, log: run_task(task, workdir, log))
    built = manifest.assemble(
        prepared, plan, inputs, results, workdir,
        jwst_version=expected_environment(recipe)[0], input_seconds=input_seconds,
        crds_fetch=(load_fetch_record(workdir) or {}).get("crds"), started=started, finished=utc_now(),
    )
    return manifest.write_manifest(workdir, built)
