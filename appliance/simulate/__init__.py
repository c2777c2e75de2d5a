"""Simulated MIRI imaging observation and its small synthetic CRDS context (offline demo, tests).

Light to import: jwst and stdatamodels load only when a function runs.

    from appliance.simulate import SimParams, simulate_observation, build_crds_cache, crds_environment
    cache = build_crds_cache("work/crds")
    obs = simulate_observation("work/uncal", SimParams(seed=3))
    env = crds_environment(cache)   # set before jwst is imported

See docs/simulation.md for what is simulated and in which units.
"""

from __future__ import annotations

from pathlib import Path

from .mappings import SIM_CONTEXT
from .params import Observation, SimParams, planned_exposures, validate

__all__ = ["SIM_CONTEXT", "SimParams", "Observation", "planned_exposures", "simulate_observation", "build_crds_cache", "crds_environment"]


def simulate_observation(out_dir, params: SimParams = SimParams()) -> Observation:
    """Write the uncal files and truth.ecsv into ``out_dir`` (created); deterministic per seed."""
    validate(params)
    from .exposures import simulate

    return simulate(Path(out_dir), params)


def build_crds_cache(cache_dir) -> Path:
    """Write the complete synthetic CRDS cache into ``cache_dir``; idempotent and byte-reproducible."""
    from .cache import build

    return build(Path(cache_dir))


def code_digest() -> str:
    """sha256 of the simulator's own code: what, with its parameters, decides every file it writes."""
    import hashlib

    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def crds_environment(cache_dir) -> dict[str, str]:
    """CRDS_PATH, CRDS_MODE=local, CRDS_CONTEXT, an unreachable CRDS_SERVER_URL: set before importing jwst."""
    from .cache import environment

    return environment(Path(cache_dir))
