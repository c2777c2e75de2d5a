"""Preparing a run: the recipe loaded and checked, the environment compared, the CRDS settings chosen.

Every command that acts on a recipe (run, check, fetch, export, reproduce)
starts here, so a bad request is refused the same way everywhere, before
anything is written:

load the recipe → compare its ``[environment]`` with what is installed →
choose the CRDS settings → validate the step parameters against jwst's own
specs (with those settings applied, since importing jwst reads them) → check
the post-processing operations → list the exposures and price the plan.

The CRDS settings are applied only while jwst is validated: the caller's
environment is as it was afterwards (:func:`appliance.crdsenv.applied`), and a
run configures them for good when it starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance import crdsenv
from appliance.crdsenv import CrdsSettings
from appliance.errors import UserError
from appliance.graph import Plan
from appliance.recipe import Recipe, environment_mismatches, load_recipe, unknown_step_parameters, validate_steps
from appliance.resources import Estimate, estimate, refuse_beyond
from appliance.safety import printable
from appliance.sources import planned_exposures
from appliance.workdir import CRDS_CACHE_DIR


@dataclass(frozen=True)
class Prepared:
    """A recipe that passed every check, with the CRDS settings it will run under."""

    recipe: Recipe
    settings: CrdsSettings
    mismatches: tuple[str, ...]

    @property
    def simulated(self) -> bool:
        return self.recipe.input_kind == "simulate"


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


def choose_settings(context: str, *, use_step_pars: bool, simulated: bool, workdir: Path,
                    environ=os.environ) -> CrdsSettings:
    """Decide the cache and mode for a run.

    Simulated observations use the synthetic context: the cache named by
    ``$CRDS_PATH`` when it already holds it (the image bakes it in), else one
    built inside the workdir, always in local mode.  Real data use
    :func:`appliance.crdsenv.for_real_data`.
    """
    if not simulated:
        return crdsenv.for_real_data(context, use_step_pars=use_step_pars, environ=environ)
    from appliance.simulate import SIM_CONTEXT

    if context != SIM_CONTEXT:
        raise UserError(f"environment.crds_context: simulated observations use the synthetic context "
                        f"{SIM_CONTEXT}, the recipe names {context}")
    env_path = environ.get("CRDS_PATH")
    if env_path and crdsenv.cache_holds_context(Path(env_path), context):
        path = Path(env_path)
    else:
        path = workdir / CRDS_CACHE_DIR
    return CrdsSettings(context, str(path), "local", crdsenv.OFFLINE_SERVER_URL, use_step_pars)


def prepare_cache(settings: CrdsSettings, simulated: bool) -> None:
    """Make sure the cache can serve the context (build the synthetic one when needed)."""
    cache = Path(settings.path)
    if simulated and not crdsenv.cache_holds_context(cache, settings.context):
        from appliance.simulate import build_crds_cache

        build_crds_cache(cache)
    check_cache(settings, simulated=False)


def check_cache(settings: CrdsSettings, simulated: bool) -> None:
    """Refuse, before anything is written, a local-mode cache that cannot serve the context (a simulated
    run builds its synthetic cache, so it can)."""
    cache = Path(settings.path)
    if not simulated and settings.mode == "local" and not crdsenv.cache_holds_context(cache, settings.context):
        raise UserError(
            f"environment.crds_context: {settings.context} is not in the CRDS cache {cache} "
            f"(run `python run.py fetch` with network first, or set CRDS_PATH)"
        )


def prepare(recipe_path: Path, workdir: Path, *, allow_env_mismatch: bool = False) -> Prepared:
    """Load and check the recipe; a bad request is a one-line UserError before anything is written.

    When a run in ``workdir`` already checked this very recipe against this
    jwst's step specs, that check is not repeated (it is what imports jwst);
    the appliance's policy is checked every time.
    """
    from appliance import records

    recipe = load_recipe(recipe_path)
    jwst_version, context = expected_environment(recipe)
    mismatches = environment_mismatches(recipe, jwst_version, context)
    if mismatches and not allow_env_mismatch:
        raise UserError(
            f"{recipe.path}: environment: {'; '.join(mismatches)} (pass --allow-env-mismatch to run anyway)"
        )
    settings = choose_settings(recipe.environment.crds_context, use_step_pars=recipe.environment.use_step_pars,
                               simulated=recipe.input_kind == "simulate", workdir=workdir.resolve())
    if records.specs_checked(workdir, records.specs_fingerprint(recipe, jwst_version)):
        validate_steps(recipe, workdir, specs=False)
    else:
        with crdsenv.applied(settings):  # importing jwst reads them
            validate_steps(recipe, workdir)
    if recipe.postprocess:  # an operation whose input stage does not run fails here, before any write
        from appliance.postprocess.planner import check_recipe

        check_recipe(recipe)
    return Prepared(recipe, settings, tuple(mismatches))


def priced(recipe: Recipe, plan: Plan, workdir: Path) -> Estimate:
    """The plan's estimated memory and disk; a UserError when this machine cannot hold them."""
    cost = estimate(plan, simulated=recipe.input_kind == "simulate")
    refuse_beyond(cost, workdir, printable(recipe.path))
    return cost


def unknown_in_this_release(recipe_path: Path, workdir: Path) -> tuple[str, list[str]]:
    """``(installed jwst, lines)``: every step and parameter of the recipe this jwst lacks (empty: none),
    for a recipe that may have been written for another release."""
    recipe = load_recipe(recipe_path)
    jwst_version, _ = expected_environment(recipe)
    settings = choose_settings(recipe.environment.crds_context, use_step_pars=recipe.environment.use_step_pars,
                               simulated=recipe.input_kind == "simulate", workdir=workdir.resolve())
    with crdsenv.applied(settings):  # importing jwst reads them
        return jwst_version, unknown_step_parameters(recipe, jwst_version)


def check(recipe_path: Path, workdir: Path | None = None) -> tuple[Prepared, Plan | None, Estimate | None]:
    """Validate a recipe, compile its plan and price it, without running anything.

    A plan this machine cannot hold (memory, or free disk where the workdir
    would be) is refused here, as ``run`` would refuse it.
    """
    from appliance.plan import build_plan

    workdir = workdir or Path.cwd() / "work"
    prepared = prepare(recipe_path, workdir, allow_env_mismatch=True)
    exposures = planned_exposures(prepared.recipe)
    if exposures is None:
        return prepared, None, None
    plan = build_plan(prepared.recipe, exposures)
    return prepared, plan, priced(prepared.recipe, plan, workdir)
