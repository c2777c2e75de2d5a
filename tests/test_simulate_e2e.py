"""The real jwst stages on the default simulated observation: statuses, references, science check.

The pipeline runs once per module in a subprocess (tests/simulate_pipeline_run.py) with the
synthetic cache's CRDS environment, so it is independent of what this process imported.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.simulate import SIM_CONTEXT, SimParams, build_crds_cache, crds_environment, simulate_observation
from appliance.simulate import detector as det
from appliance.simulate.references import reference_files
from appliance.simulate.scene import FILTER_INDEX, FILTERS

pytestmark = pytest.mark.e2e

RUNNER = Path(__file__).with_name("simulate_pipeline_run.py")
STAGE1_COMPLETE = ("S_DQINIT", "S_MIREMI", "S_SATURA", "S_LASTFR", "S_RESET", "S_LINEAR", "S_RSCD", "S_DARK", "S_JUMP", "S_RAMP")
# Steps the jwst 3.0 defaults skip for this data, whatever the references (none for want of a file):
# firstframe, persistence, charge_migration, picture_frame, clean_flicker_noise (off by default),
# group_scale (NFRAMES=1), gain_scale (no GAINFACT), refpix (MIRI subarrays), ipc (N/A for MIRI).
STAGE1_SKIPPED = ("S_FRSTFR", "S_PERSIS", "S_CHGMIG", "S_PCTFRM", "S_CLNFNS", "S_GRPSCL", "S_GANSCL", "S_REFPIX", "S_IPC")


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim_e2e")
    cache = build_crds_cache(root / "crds")
    obs = simulate_observation(root / "uncal", SimParams())
    out = root / "out"
    env = dict(os.environ, **crds_environment(cache))
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(root / "uncal"), str(out)], env=env, capture_output=True, text=True, timeout=1800
    )
    (root / "pipeline.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads((out / "summary.json").read_text())
    return obs, out, summary


def test_stage1_step_statuses(reduced):
    _, _, summary = reduced
    assert len(summary["stage1"]) == 12
    for name, keywords in summary["stage1"].items():
        for key in STAGE1_COMPLETE:
            assert keywords[key] == "COMPLETE", (name, key)
        for key in STAGE1_SKIPPED:
            assert keywords[key] == "SKIPPED", (name, key)
        assert {k for k in keywords if k.startswith("S_")} == set(STAGE1_COMPLETE + STAGE1_SKIPPED)


def test_later_stage_statuses(reduced):
    _, _, summary = reduced
    for keywords in summary["stage2"].values():
        assert [keywords[k] for k in ("S_WCS", "S_FLAT", "S_PHOTOM")] == ["COMPLETE"] * 3
    mosaics = {k: v for k, v in summary["stage3"].items() if k.startswith("sim_")}
    assert sorted(mosaics) == ["sim_f1000w_i2d.fits", "sim_f1500w_i2d.fits", "sim_f770w_i2d.fits"]
    for keywords in mosaics.values():
        assert [keywords[k] for k in ("S_TWKREG", "S_SKYMAT", "S_OUTLIR", "S_RESAMP")] == ["COMPLETE"] * 4


def test_references_come_from_the_synthetic_context(reduced):
    _, _, summary = reduced
    names = {r.name for r in reference_files()}
    used = set()
    for stage in ("stage1", "stage2"):
        for keywords in summary[stage].values():
            assert keywords["CRDS_CTX"] == SIM_CONTEXT
            for key, value in keywords.items():
                if key.startswith("R_") and value != "N/A":
                    assert value.startswith("crds://") and value[len("crds://"):] in names, (key, value)
                    used.add(key)
    assert {"R_DARK", "R_MASK", "R_MIREMI", "R_SATURA", "R_LINEAR", "R_RESET", "R_RSCD", "R_GAIN", "R_READNO",
            "R_FLAT", "R_PHOTOM", "R_AREA", "R_DISTOR", "R_FILOFF"} <= used


def _match(cat, truth, name):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    points = truth[truth["kind"] == "point"]
    true = SkyCoord(points["ra"], points["dec"])
    found = cat["sky_centroid"]
    idx, sep, _ = true.match_to_catalog_sky(found)
    flux = np.asarray(cat["aper_total_flux"])[idx]
    snr = flux / np.asarray(cat["aper_total_flux_err"])[idx]
    ok = (sep < 0.2 * u.arcsec) & (snr > 10)
    ratio = flux[ok] / np.asarray(points[f"flux_{name}"])[ok]
    return ok.mean(), float(np.sqrt(np.mean(sep[ok].arcsec ** 2))), float(np.median(ratio))


@pytest.mark.parametrize("name", SimParams().filters)
def test_catalog_recovers_the_point_sources(reduced, name):
    from astropy.table import Table

    obs, out, _ = reduced
    truth = Table.read(obs.truth)
    cat = Table.read(out / f"sim_{name.lower()}_cat.ecsv")
    completeness, rms, ratio = _match(cat, truth, name)
    print(f"{name}: completeness {completeness:.3f}, astrometric rms {rms * 1000:.1f} mas, median flux ratio {ratio:.4f}")
    assert completeness >= 0.95
    assert rms < 0.05
    assert abs(ratio - 1) < 0.03


def _background_ratio(cal_path: Path, truth) -> tuple[str, float]:
    """Sigma-clipped median of the rate image (DN/s) over source-free pixels, divided by the flat,
    over the simulated background (DN/s before the flat). Sources are masked with the truth
    positions placed by the cal file's WCS (same pixel grid as the rate file)."""
    from astropy.io import fits
    from astropy.stats import sigma_clipped_stats
    from stdatamodels.jwst import datamodels

    rate_path = Path(str(cal_path).replace("_cal.fits", "_rate.fits"))
    with datamodels.open(cal_path) as cal:
        name = cal.meta.instrument.filter
        x, y = cal.meta.wcs.world_to_pixel_values(np.asarray(truth["ra"]), np.asarray(truth["dec"]))
    rate, dq = fits.getdata(rate_path, "SCI"), fits.getdata(rate_path, "DQ")
    f = FILTERS[name]
    yy, xx = np.mgrid[: rate.shape[0], : rate.shape[1]]
    masked = (dq & det.DO_NOT_USE) > 0
    for xi, yi, kind, flux, r_eff in zip(x, y, truth["kind"], truth[f"flux_{name}"], truth["r_eff"]):
        radius = 6 * f.fwhm / det.PIXEL_SCALE if kind == "point" else 8 * float(r_eff) / det.PIXEL_SCALE
        if flux > 1e-3:  # the bright star's wings
            radius *= 3
        masked |= (xx - xi) ** 2 + (yy - yi) ** 2 < radius**2
    sub = det.SUBARRAYS[SimParams().subarray]
    _, median, _ = sigma_clipped_stats((rate / det.flat(sub, FILTER_INDEX[name]))[~masked], sigma=3)
    return name, float(median / f.background)


def test_rate_background_matches_the_simulated_background(reduced):
    from astropy.table import Table

    obs, out, _ = reduced
    truth = Table.read(obs.truth)
    cals = sorted(out.glob("jw*_cal.fits"))
    assert len(cals) == 12
    for cal in cals:
        name, ratio = _background_ratio(cal, truth)
        print(f"{cal.name}: {name} background ratio {ratio:.4f}")
        assert abs(ratio - 1) < 0.02, (cal.name, ratio)
