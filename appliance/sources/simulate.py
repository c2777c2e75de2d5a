"""The simulated observation as a recipe input (``[inputs.simulate]``).

The simulator is deterministic, so a recorded simulated input is restored by
simulating again and checking every file's sha256.
"""

from __future__ import annotations

import json
from pathlib import Path

from appliance.errors import UserError, WorkFailed
from appliance.files import file_sha256
from appliance.graph import Exposure
from appliance.safety import printable
from appliance.sources.inputfile import InputFile
from appliance.workdir import INPUTS_DIR


def sim_params(recipe):
    """The recipe's ``[inputs.simulate]`` table as the simulator's parameters (checked)."""
    from appliance.simulate import SimParams

    return SimParams.from_mapping(recipe.simulate, what=f"{recipe.path}: inputs.simulate")


def origin(recipe) -> str:
    return "simulate:" + json.dumps(dict(recipe.simulate), sort_keys=True, separators=(",", ":"))


def input_key(recipe) -> str:
    """The simulator's parameters and code, and numpy (whose generators draw the noise), decide the files."""
    from importlib.metadata import version

    from appliance.simulate import code_digest
    from appliance.sources import key_of

    return key_of({"origin": origin(recipe), "simulator": code_digest(), "numpy": version("numpy")})


def planned(recipe) -> list[Exposure]:
    """The exposures the simulator will write, with their sizes, without making them."""
    from appliance.simulate import planned_exposures
    from appliance.simulate.detector import SUBARRAYS

    p = sim_params(recipe)
    pixels = SUBARRAYS[p.subarray].xsize * SUBARRAYS[p.subarray].ysize
    return [Exposure(name, "uncal", filt, p.program, p.observation, p.ngroups, p.nints, pixels)
            for name, filt in planned_exposures(p)]


def materialise(recipe, workdir: Path) -> list[InputFile]:
    from appliance.simulate import simulate_observation

    observation = simulate_observation(workdir / INPUTS_DIR, sim_params(recipe))
    where = origin(recipe)
    return [InputFile(p, where) for p in [*observation.uncal_files, observation.truth]]


def restore(recipe, records, stage: Path, targets: dict) -> list[str]:
    """Simulate again into ``stage``; every recorded file must come out with its recorded sha256."""
    expected = origin(recipe)
    for record in records:
        if record.origin != expected:
            raise UserError(f"inputs: {printable(record.name)}: origin {printable(record.origin)} is not "
                            f"what the recipe's [inputs.simulate] gives ({expected}); the manifest is inconsistent")
    made = {f.path.relative_to(stage).as_posix(): f.path for f in materialise(recipe, stage)}
    for record in records:
        path = made.get(record.name)
        if path is None:
            raise WorkFailed(f"inputs: {record.name}: the simulator no longer writes it (origin {record.origin})")
        actual = file_sha256(path)
        if actual != record.sha256:
            raise WorkFailed(f"inputs: {record.name}: re-simulated with sha256 {actual[:16]}…, the manifest records "
                             f"{record.sha256[:16]}… (the simulator or its dependencies changed)")
    extra = sorted(set(made) - {r.name for r in records})
    if extra:
        raise WorkFailed(f"inputs: the simulator now also writes {extra[0]}, which the manifest does not record")
    return [r.name for r in records]
