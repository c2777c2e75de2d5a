"""What a simulated observation is made of: the parameters, their checks, and the result."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from .detector import SUBARRAYS
from .scene import FILTERS

MIN_NGROUPS = 5  # rscd flags the first group and lastframe the last: 5 leave 3 for the slope
MAX_NGROUPS = 200


@dataclass(frozen=True)
class SimParams:
    """One simulated MIRI imaging observation; the recipe's ``[inputs.simulate]`` keys."""

    filters: tuple[str, ...] = ("F770W", "F1000W", "F1500W")
    dithers: int = 4  # positions of the cycling dither pattern
    subarray: str = "SUB256"  # SUB256 or FULL
    ngroups: int = 10  # groups per integration (FASTR1)
    nints: int = 1  # integrations per exposure
    seed: int = 1  # sky, noise and cosmic rays; the detector and references never change
    program: str = "02732"
    observation: str = "002"
    visit: str = "001"
    n_point_sources: int = 30  # including one bright star that saturates in F770W
    n_extended_sources: int = 4  # exponential disks; the first two overlap (deblending)
    ra: float = 339.0150  # degrees, target (field centre), near Stephan's Quintet
    dec: float = 33.9750
    pa_v3: float = 250.0  # degrees, position angle of the telescope V3 axis
    cosmic_ray_rate: float = 5.0  # events per cm^2 per s on the detector
    date: str = "2024-07-03T10:00:00"  # UTC start of the first exposure

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], what: str = "simulate") -> "SimParams":
        """Build from a TOML-like table (lists become tuples); unknown keys are a UserError."""
        known = {f.name for f in fields(cls)}
        for key in table:
            if key not in known:
                raise UserError(f"{what}: {key}: expected one of {', '.join(sorted(known))}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
        params = cls(**values)
        validate(params, what)
        return params


def exposure_name(p: SimParams, ifilt: int, k: int) -> str:
    """The JWST file stem of filter number ``ifilt``, dither ``k`` (both from 0): one activity per filter."""
    return f"jw{p.program}{p.observation}{p.visit}_021{ifilt + 1:02d}_{k + 1:05d}_mirimage"


def planned_exposures(p: SimParams) -> list[tuple[str, str]]:
    """(file stem, filter) of every exposure the observation will have, without making it."""
    return sorted((exposure_name(p, i, k), f) for i, f in enumerate(p.filters) for k in range(p.dithers))


@dataclass(frozen=True)
class Observation:
    """What ``simulate_observation`` wrote."""

    uncal_files: list[Path]  # sorted
    truth: Path  # truth.ecsv


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(p: SimParams, what: str = "simulate") -> None:
    """Raise UserError("<what>: <key>: expected ...") for the first bad value."""

    def bad(key: str, expected: str) -> UserError:
        return UserError(f"{what}: {key}: expected {expected}, got {getattr(p, key)!r}")

    if not isinstance(p.filters, (tuple, list)) or not p.filters:
        raise bad("filters", "a non-empty list of MIRI imager filters")
    for f in p.filters:
        if f not in FILTERS:
            raise bad("filters", f"filters among {', '.join(FILTERS)}")
    if len(set(p.filters)) != len(p.filters):
        raise bad("filters", "each filter once")
    if not _int(p.dithers) or not 1 <= p.dithers <= 64:
        raise bad("dithers", "an integer from 1 to 64")
    if p.subarray not in SUBARRAYS:
        raise bad("subarray", f"one of {', '.join(SUBARRAYS)}")
    if not _int(p.ngroups) or not MIN_NGROUPS <= p.ngroups <= MAX_NGROUPS:
        raise bad("ngroups", f"an integer from {MIN_NGROUPS} to {MAX_NGROUPS}")
    if not _int(p.nints) or not 1 <= p.nints <= 100:
        raise bad("nints", "an integer from 1 to 100")
    if not _int(p.seed) or p.seed < 0:
        raise bad("seed", "a non-negative integer")
    for key, digits in (("program", 5), ("observation", 3), ("visit", 3)):
        value = getattr(p, key)
        if not isinstance(value, str) or not re.fullmatch(rf"[0-9]{{{digits}}}", value):
            raise bad(key, f"a string of {digits} digits")
    if not _int(p.n_point_sources) or not 1 <= p.n_point_sources <= 500:
        raise bad("n_point_sources", "an integer from 1 to 500")
    if not _int(p.n_extended_sources) or not 0 <= p.n_extended_sources <= 50:
        raise bad("n_extended_sources", "an integer from 0 to 50")
    if not _num(p.ra) or not 0 <= p.ra < 360:
        raise bad("ra", "degrees in [0, 360)")
    if not _num(p.dec) or not -89 <= p.dec <= 89:
        raise bad("dec", "degrees in [-89, 89]")
    if not _num(p.pa_v3) or not 0 <= p.pa_v3 < 360:
        raise bad("pa_v3", "degrees in [0, 360)")
    if not _num(p.cosmic_ray_rate) or not 0 <= p.cosmic_ray_rate <= 1000:
        raise bad("cosmic_ray_rate", "events per cm^2 per s in [0, 1000]")
    if not isinstance(p.date, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", p.date, re.ASCII) or p.date < "2022-07-12":
        raise bad("date", "an ISO UTC time YYYY-MM-DDThh:mm:ss from 2022-07-12 on")
