"""One run of a recipe: validate → configure CRDS → inputs → plan → execute → manifest.

Everything that can be wrong with the request is checked before the first byte
is written to the workdir, so a bad recipe leaves nothing behind; the manifest
is written last, so its presence means every product in it is complete.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from appliance import crdsctx, manifest
from appliance.errors import UserError
from appliance.files import file_sha256, utc_now
from appliance.execute import SerialExecutor
from appliance.graph import Exposure, Plan
from appliance.plan import build_plan, exposure_from_header
from appliance.recipe import Recipe, environment_mismatches, load_recipe, resolve_local_inputs, validate_steps
from appliance.pipelines import STAGES
from appliance.resources import Estimate, estimate, refuse_beyond
from appliance.safety import printable
from appliance.workdir import check_workdir, load_fetch_record


@dataclass(frozen=True)
class Prepared:
    """A recipe that passed every check, with the CRDS settings it will run under."""

    recipe: Recipe
    settings: crdsctx.CrdsSettings
    mismatches: tuple[str, ...]


def expected_environment(recipe: Recipe) -> tuple[str, str]:
    """The installed jwst version and the CRDS context this installation pairs with it."""
    from importlib.metadata import version

    from appliance.pin import load_pin

    if recipe.input_kind == "simulate":
        from appliance.simulate import SIM_CONTEXT

        context = SIM_CONTEXT
    else:
        # A user (or a test) who points CRDS at another context says so with CRDS_CONTEXT.
        context = os.environ.get("CRDS_CONTEXT") or load_pin().crds_context
    return version("jwst"), context


def prepare(recipe_path: Path, workdir: Path, *, allow_env_mismatch: bool = False) -> Prepared:
    """Load and check the recipe and set the CRDS environment, before jwst is imported."""
    recipe = load_recipe(recipe_path)
    mismatches = environment_mismatches(recipe, *expected_environment(recipe))
    if mismatches and not allow_env_mismatch:
        raise UserError(
            f"{recipe.path}: environment: {'; '.join(mismatches)} (pass --allow-env-mismatch to run anyway)"
        )
    settings = crdsctx.choose_settings(
        recipe.environment.crds_context,
        use_step_pars=recipe.environment.use_step_pars,
        simulated=recipe.input_kind == "simulate",
        workdir=workdir.resolve(),
    )
    crdsctx.configure(settings)
    validate_steps(recipe, workdir)
    if recipe.postprocess:  # an operation whose input stage does not run fails here, before any write
        from appliance.postprocess import check_recipe

        check_recipe(recipe)
    return Prepared(recipe, settings, tuple(mismatches))


def planned_exposures(recipe: Recipe) -> list[Exposure] | None:
    """The exposures a recipe will reduce, known without running it (None for MAST queries)."""
    if recipe.input_kind == "local":
        return [exposure_from_header(f.path) for f in resolve_local_inputs(recipe)]
    if recipe.input_kind == "simulate":
        from appliance.simulate import planned_exposures as simulated
        from appliance.sources.simulate import sim_params

        from appliance.simulate.detector import SUBARRAYS

        p = sim_params(recipe)
        pixels = SUBARRAYS[p.subarray].xsize * SUBARRAYS[p.subarray].ysize
        return [Exposure(name, "uncal", filt, p.program, p.observation, p.ngroups, p.nints, pixels)
                for name, filt in simulated(p)]
    return None


def check(recipe_path: Path, workdir: Path | None = None) -> tuple[Prepared, Plan | None, Estimate | None]:
    """Validate a recipe, compile its plan and price it, without running anything.

    A plan this machine cannot hold (memory, or free disk where the workdir
    would be) is refused here, as ``run`` would refuse it.
    """
    workdir = workdir or Path.cwd() / "work"
    prepared = prepare(recipe_path, workdir, allow_env_mismatch=True)
    exposures = planned_exposures(prepared.recipe)
    if exposures is None:
        return prepared, None, None
    plan = build_plan(prepared.recipe, exposures)
    cost = priced(prepared.recipe, plan, workdir)
    return prepared, plan, cost


def priced(recipe: Recipe, plan: Plan, workdir: Path) -> Estimate:
    """The plan's estimated memory and disk; a UserError when this machine cannot hold them."""
    cost = estimate(plan, simulated=recipe.input_kind == "simulate")
    refuse_beyond(cost, workdir, printable(recipe.path))
    return cost


def run(recipe_path: Path, workdir: Path, *, allow_env_mismatch: bool = False, console=None) -> Path:
    """Reduce the recipe into ``workdir``; returns the manifest's path."""
    check_workdir(workdir)
    prepared = prepare(recipe_path, workdir, allow_env_mismatch=allow_env_mismatch)
    recipe, settings = prepared.recipe, prepared.settings
    # Missing files, bad headers, checksum mismatches and a plan too big for this machine fail before any write.
    known = planned_exposures(recipe)
    if known is not None:
        priced(recipe, build_plan(recipe, known), workdir)
    started = utc_now()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    for stale in ("manifest.json", "SHA256SUMS"):  # an old manifest must not describe new products
        (workdir / stale).unlink(missing_ok=True)
    crdsctx.prepare_cache(settings, simulated=recipe.input_kind == "simulate")

    from appliance.sources import materialise

    t0 = time.perf_counter()
    inputs = materialise(recipe, workdir)
    input_seconds = time.perf_counter() - t0
    exposures = [exposure_from_header(f.path) for f in inputs if f.path.name.endswith(".fits")]
    plan = build_plan(recipe, exposures)
    if known is None:  # MAST inputs: sized only once they are here
        priced(recipe, plan, workdir)
    results = SerialExecutor(console).run(plan, workdir, lambda task, log: run_task(task, workdir, log))

    input_records = [manifest.input_record(f.path, workdir, f.origin, f.fetched_at) for f in inputs]
    digests = {r["name"]: r["sha256"] for r in input_records}
    products = []
    for result in results:
        for rel in result.outputs:
            record = manifest.product_record(workdir / rel, workdir, result.id)
            products.append(record)
            digests[rel] = record["content_digest"]
    env_summary = {"jwst": expected_environment(recipe)[0], **settings.as_dict()}
    tasks = [{"id": "inputs", "kind": recipe.input_kind, "seconds": round(input_seconds, 3),
              "outputs": [r["name"] for r in input_records]}]
    by_id = {t.id: t for t in plan.tasks}
    for result in results:
        task = by_id[result.id]
        tasks.append({**result.as_dict(), "key": task.key(digests, env_summary),
                      "inputs": list(task.inputs), "params": task.params})
    environment = manifest.capture_environment(
        crds_context=settings.context,
        crds_path=settings.path,
        crds_mode=settings.mode,
        use_step_pars=settings.use_step_pars,
        env_mismatches=list(prepared.mismatches),
    )
    environment["crds_references"] = reference_checksums(products, Path(settings.path))
    fetched = (load_fetch_record(workdir) or {}).get("crds")
    if fetched:  # where and when `fetch` got the references (server, time, per-file state)
        environment["crds_fetch"] = fetched
    built = manifest.build_manifest(
        recipe_text=recipe.text,
        recipe_path=str(recipe.path),
        environment=environment,
        inputs=input_records,
        products=products,
        tasks=tasks,
        started=started,
        finished=utc_now(),
        extra={"plan": {"stages": list(plan.stages), "exposures": [e.name for e in plan.exposures]}},
    )
    return manifest.write_manifest(workdir, built)


def run_task(task, workdir: Path, log: Path) -> None:
    """Run one task of the plan: a jwst stage, or a registered post-processing operation."""
    from appliance.stages import run_stage

    if task.kind in STAGES:
        run_stage(task, workdir, log)
    else:
        from appliance.postprocess import run_task as run_operation

        run_operation(task, workdir, log)


def reference_checksums(products: list[dict], cache: Path) -> dict[str, str]:
    """sha256 of every CRDS reference file the products name, as found in the cache."""
    names = sorted({v.removeprefix("crds://") for p in products for v in p["crds_refs"].values() if v.startswith("crds://")})
    found = {}
    for name in names:
        hits = list((cache / "references").rglob(name))
        found[name] = file_sha256(hits[0]) if hits else "not in cache"
    return found