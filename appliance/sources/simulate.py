"""The simulated observation as a recipe input (``[inputs.simulate]``)."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.sources import InputFile


def sim_params(recipe):
    """The recipe's ``[inputs.simulate]`` table as the simulator's parameters (checked)."""
    from appliance.simulate import SimParams

    return SimParams.from_mapping(recipe.simulate, what=f"{recipe.path}: inputs.simulate")


def origin(recipe) -> str:
    return "simulate:" + json.dumps(dict(recipe.simulate), sort_keys=True, separators=(",", ":"))


def materialise(recipe, workdir: Path) -> list[InputFile]:
    from appliance.simulate import simulate_observation

    observation = simulate_observation(workdir / "uncal", sim_params(recipe))
    where = origin(recipe)
    return [InputFile(p, where) for p in [*observation.uncal_files, observation.truth]]
