"""Test data for the loopback servers: small fake exposures, and the simulated observation with its CRDS cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

SIM_FILTERS = ("F770W",)
SIM_DITHERS = 2
_MADE: dict[str, Path] = {}  # one simulation per session, whichever test module asks first


def fake_exposure(directory: Path, program="02732", observation="002", visit="001", exposure=1,
                  filt="F770W", suffix="uncal", nbytes=300_000, seed=0) -> Path:
    """A FITS file named and headed like a MIRI imaging exposure, with ``nbytes`` of random data."""
    from astropy.io import fits

    directory.mkdir(parents=True, exist_ok=True)
    name = f"jw{program}{observation}{visit}_02101_{exposure:05d}_mirimage_{suffix}.fits"
    data = np.random.default_rng(seed + exposure).integers(0, 255, nbytes, dtype=np.uint8)
    hdu = fits.PrimaryHDU(data)
    hdu.header.update(TELESCOP="JWST", INSTRUME="MIRI", DETECTOR="MIRIMAGE", PROGRAM=program,
                      OBSERVTN=observation, VISIT=visit, EXPOSURE=str(exposure), FILTER=filt,
                      EXP_TYPE="MIR_IMAGE", TARGPROP="FAKE", TARG_RA=339.0, TARG_DEC=33.96)
    path = directory / name
    hdu.writeto(path, overwrite=True)
    return path


def fake_archive(directory: Path) -> Path:
    """Two programs' worth of fake exposures: the tests pick some of them by query."""
    for i, filt in enumerate(("F770W", "F770W", "F1000W", "F1000W"), start=1):
        fake_exposure(directory, exposure=i, filt=filt, seed=10)
    fake_exposure(directory, exposure=1, filt="F770W", suffix="rate", nbytes=50_000, seed=20)
    fake_exposure(directory, observation="003", exposure=1, filt="F770W", seed=30)
    fake_exposure(directory, observation="002", visit="002", exposure=1, filt="F770W", seed=40)
    fake_exposure(directory, program="01234", exposure=1, filt="F770W", seed=50)
    return directory


def simulated(tmp_path_factory) -> tuple[Path, Path]:
    """(directory of the simulated uncal files, synthetic CRDS cache), made once per session."""
    if "sim" not in _MADE:
        from appliance.simulate import SimParams, build_crds_cache, simulate_observation

        root = tmp_path_factory.mktemp("simulated")
        obs = simulate_observation(root / "archive", SimParams(filters=SIM_FILTERS, dithers=SIM_DITHERS))
        obs.truth.unlink()  # MAST serves exposures only
        _MADE["sim"] = root / "archive"
        _MADE["cache"] = build_crds_cache(root / "served_cache")
    return _MADE["sim"], _MADE["cache"]


@pytest.fixture(scope="session")
def sim_archive(tmp_path_factory) -> Path:
    return simulated(tmp_path_factory)[0]


@pytest.fixture(scope="session")
def sim_served_cache(tmp_path_factory) -> Path:
    return simulated(tmp_path_factory)[1]


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
