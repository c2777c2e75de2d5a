"""TOML recipe → validated, frozen :class:`Recipe`, in two passes.

* :func:`load_recipe` / :func:`parse_recipe` (:mod:`.parse`) check the
  structure (tables, keys, types) without importing ``jwst``, because the CRDS
  environment, which the recipe decides, must be set before ``jwst`` is
  imported;
* :func:`validate_steps` (:mod:`.steps`) imports ``jwst.pipeline`` and checks
  every step name, parameter name and value against the steps' own stpipe
  specs and the appliance's policy, so a typo lists the real names.

:mod:`.model` holds the frozen data and what follows from it alone (the
stages a recipe runs, how its environment differs from the installed one),
:mod:`.local` the local input files, :mod:`.messages` the parts of every
one-line error.  The format reference is ``docs/recipes.md``.
"""

from appliance.recipe.local import resolve_local_inputs
from appliance.pipelines import STAGE_ORDER
from appliance.recipe.model import (
    INPUT_KINDS,
    LOCAL_SUFFIXES,
    MAST_PRODUCTS,
    SCHEMA_VERSION,
    Environment,
    LocalFile,
    LocalSpec,
    MastQuery,
    PostOp,
    Recipe,
    RecipeError,
    StageConfig,
    environment_mismatches,
    first_stage,
    stages_to_run,
)
from appliance.recipe.parse import load_recipe, parse_recipe
from appliance.recipe.steps import (
    NAME_PARAMETERS,
    READ_PATH_PARAMETERS,
    REFCAT_NAMES,
    REFUSED_STEP_PARAMETERS,
    policy_problem,
    step_parameters,
    unknown_step_parameters,
    validate_steps,
)

__all__ = [
    "INPUT_KINDS", "LOCAL_SUFFIXES", "MAST_PRODUCTS", "NAME_PARAMETERS", "READ_PATH_PARAMETERS", "REFCAT_NAMES",
    "REFUSED_STEP_PARAMETERS", "SCHEMA_VERSION", "STAGE_ORDER", "Environment", "LocalFile", "LocalSpec", "MastQuery",
    "PostOp", "Recipe", "RecipeError", "StageConfig", "environment_mismatches", "first_stage", "load_recipe",
    "parse_recipe", "policy_problem", "resolve_local_inputs", "stages_to_run", "step_parameters", "unknown_step_parameters",
    "validate_steps",
]
