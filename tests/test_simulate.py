"""Fast tests of appliance.simulate: parameters, detector model, references, mappings, CRDS, determinism.

Anything that imports crds with the synthetic cache's environment runs in a subprocess, so the
tests do not depend on which module imported jwst or crds first.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import UserError
from appliance.simulate import SIM_CONTEXT, Observation, SimParams, build_crds_cache, crds_environment, simulate_observation
from appliance.simulate import detector as det
from appliance.simulate.mappings import mapping_texts
from appliance.simulate.references import reference_files


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _run_with_cache(cache: Path, code: str) -> str:
    """Run Python code in a fresh process with the synthetic CRDS environment; return stdout."""
    env = dict(os.environ, **crds_environment(cache))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return build_crds_cache(tmp_path_factory.mktemp("crds"))


@pytest.fixture(scope="module")
def observation(tmp_path_factory) -> Observation:
    return simulate_observation(tmp_path_factory.mktemp("sim"))


# --- parameters -------------------------------------------------------------------------------


def test_defaults():
    p = SimParams()
    assert p.filters == ("F770W", "F1000W", "F1500W")
    assert (p.dithers, p.subarray, p.nints, p.seed) == (4, "SUB256", 1, 1)
    assert (p.program, p.observation, p.visit) == ("02732", "002", "001")
    assert SIM_CONTEXT == "jwst_9000.pmap"


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"filters": ("F770W", "F999W")}, "filters"),
        ({"filters": ()}, "filters"),
        ({"filters": ("F770W", "F770W")}, "filters"),
        ({"dithers": 0}, "dithers"),
        ({"dithers": 2.5}, "dithers"),
        ({"subarray": "SUB64"}, "subarray"),
        ({"ngroups": 4}, "ngroups"),
        ({"nints": 0}, "nints"),
        ({"seed": -1}, "seed"),
        ({"program": "2732"}, "program"),
        ({"observation": "2"}, "observation"),
        ({"visit": "x01"}, "visit"),
        ({"n_point_sources": 0}, "n_point_sources"),
        ({"dec": 95.0}, "dec"),
        ({"date": "yesterday"}, "date"),
    ],
)
def test_bad_parameters_raise_user_error(tmp_path, changes, key):
    with pytest.raises(UserError) as info:
        simulate_observation(tmp_path, SimParams(**changes))
    message = str(info.value)
    assert message.startswith(f"simulate: {key}: expected ")
    assert "\n" not in message
    assert not any(tmp_path.iterdir())


def test_from_mapping():
    p = SimParams.from_mapping({"filters": ["F560W"], "dithers": 2})
    assert p.filters == ("F560W",) and p.dithers == 2
    with pytest.raises(UserError, match=r"^inputs.simulate: nfilters: expected one of "):
        SimParams.from_mapping({"nfilters": 2}, what="inputs.simulate")
    with pytest.raises(UserError, match=r"^simulate: subarray: expected "):
        SimParams.from_mapping({"subarray": "BRIGHTSKY"})


def test_import_is_light():
    code = "import sys, appliance.simulate; print(sorted(m for m in sys.modules if m.split('.')[0] in ('jwst', 'stdatamodels', 'crds', 'gwcs')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- detector model ---------------------------------------------------------------------------


def test_dq_bits_match_stdatamodels():
    from stdatamodels.jwst.datamodels import dqflags

    for name in ("DO_NOT_USE", "DEAD", "HOT", "REFERENCE_PIXEL"):
        assert getattr(det, name) == dqflags.pixel[name]


def test_linearity_inverse_and_subarray_cuts():
    sub = det.SUBARRAYS["SUB256"]
    c2 = det.linearity_c2(sub).astype(np.float64)
    lin = np.full(c2.shape, 40000.0)
    assert np.allclose(det.raw_to_linear(det.linear_to_raw(lin, c2), c2), lin, rtol=1e-12)
    full = det.SUBARRAYS["FULL"]
    rows, cols = sub.slices
    assert np.array_equal(det.gain(full)[rows, cols], det.gain(sub))
    assert np.array_equal(det.flat(full, 1)[rows, cols], det.flat(sub, 1))
    assert sub.frame_time == pytest.approx(0.29952) and full.frame_time == pytest.approx(2.77504)


def test_dark_is_linear_so_extrapolation_is_exact():
    sub = det.SUBARRAYS["SUB256"]
    dark = det.dark_groups(sub, 12).astype(np.float64)
    assert np.allclose(np.diff(dark, axis=0), dark[0], rtol=1e-5, atol=1e-6)


# --- reference files, mappings, CRDS ----------------------------------------------------------


def test_every_reference_validates_and_is_marked_synthetic(cache):
    from stdatamodels.jwst import datamodels
    from stpipe import config_parser

    refdir = cache / "references" / "jwst" / "miri"
    refs = reference_files()
    assert sorted(p.name for p in refdir.iterdir()) == sorted(r.name for r in refs)
    for ref in refs:
        path = refdir / ref.name
        if ref.reftype.startswith("pars-"):
            cfg = config_parser.load_config_file(str(path))
            assert cfg["name"] == "emicorr" and cfg["skip"] is False
            import asdf

            with asdf.open(path) as af:
                meta = af["meta"]
                assert meta["pedigree"] == "SIMULATION" and "SYNTHETIC" in meta["description"]
            continue
        with datamodels.open(path, strict_validation=True) as model:
            model.validate()
            assert model.meta.reftype == ref.reftype
            assert model.meta.pedigree == "SIMULATION"
            assert "synthetic" in model.meta.author
            assert model.meta.description.startswith("SYNTHETIC")
            assert model.meta.instrument.name == "MIRI"


def test_mapping_checksums():
    from crds.core.utils import str_checksum

    for name, text in mapping_texts(reference_files()).items():
        lines = text.splitlines(True)
        stated = [line for line in lines if "'sha1sum'" in line]
        assert len(stated) == 1, name
        body = "".join(line for line in lines if "sha1sum" not in line)
        assert stated[0].split("'")[3] == str_checksum(body), name


def _in_fresh_process(code: str) -> None:
    # A hash seed unlike the test process's: set-ordered output would differ.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300, env=env)


def test_cache_is_deterministic_and_idempotent(cache, tmp_path):
    other = tmp_path / "crds"
    _in_fresh_process(f"from appliance.simulate import build_crds_cache; build_crds_cache({str(other)!r})")
    assert _digests(other) == _digests(cache)
    before = {p: p.stat().st_mtime_ns for p in (other / "references").rglob("*.fits")}
    build_crds_cache(other)
    assert {p: p.stat().st_mtime_ns for p in (other / "references").rglob("*.fits")} == before


def test_environment(cache):
    env = crds_environment(cache)
    assert env["CRDS_PATH"] == str(cache.resolve())
    assert env["CRDS_MODE"] == "local" and env["CRDS_CONTEXT"] == SIM_CONTEXT
    assert env["CRDS_SERVER_URL"].endswith(".invalid")


def test_crds_loads_mappings_and_returns_cache_files(cache, observation):
    uncal = observation.uncal_files[0]
    code = f"""
import json, crds
from stdatamodels.jwst import datamodels
ctx = crds.get_cached_mapping({SIM_CONTEXT!r})
ctx.validate()
with datamodels.open({str(uncal)!r}) as model:
    params = model.get_crds_parameters()
types = ["mask", "saturation", "gain", "readnoise", "linearity", "dark", "reset", "rscd", "emicorr",
         "flat", "photom", "area", "distortion", "filteroffset", "apcorr", "abvegaoffset",
         "pars-emicorrstep", "superbias", "ipc", "refpix", "pars-jumpstep", "chromcorr"]
print(json.dumps(crds.getreferences(params, reftypes=types, context={SIM_CONTEXT!r}, observatory="jwst")))
"""
    refs = json.loads(_run_with_cache(cache, code).strip().splitlines()[-1])
    refdir = str(cache.resolve() / "references" / "jwst" / "miri")
    for reftype in ("superbias", "ipc", "refpix", "pars-jumpstep", "chromcorr"):
        assert refs.pop(reftype) == "NOT FOUND n/a"
    assert all(path.startswith(refdir + "/") and Path(path).exists() for path in refs.values()), refs
    assert Path(refs["flat"]).name in {r.name for r in reference_files() if r.match == ("MIRIMAGE", "F770W", "SUB256")}


# --- exposures --------------------------------------------------------------------------------


def test_default_observation_files_and_headers(observation):
    from astropy.io import fits
    from astropy.table import Table

    names = [p.name for p in observation.uncal_files]
    assert len(names) == 12 and names == sorted(names)
    assert names[0] == "jw02732002001_02101_00001_mirimage_uncal.fits"
    assert names[-1] == "jw02732002001_02103_00004_mirimage_uncal.fits"
    with fits.open(observation.uncal_files[0]) as hdul:
        h = hdul[0].header
        assert (h["INSTRUME"], h["DETECTOR"], h["EXP_TYPE"], h["FILTER"]) == ("MIRI", "MIRIMAGE", "MIR_IMAGE", "F770W")
        assert (h["SUBARRAY"], h["READPATT"], h["NGROUPS"], h["NINTS"]) == ("SUB256", "FASTR1", 10, 1)
        assert h["DATE"] == "2024-01-01T00:00:00.000"
        assert hdul["SCI"].data.shape == (1, 10, 256, 256) and hdul["SCI"].data.dtype.kind == "u" and hdul["SCI"].data.dtype.itemsize == 2
        assert "INT_TIMES" in hdul
        sci = hdul["SCI"].header
        assert sci["V2_REF"] and sci["RA_REF"] and sci["ROLL_REF"] == 250.0
    truth = Table.read(observation.truth)
    assert {"id", "ra", "dec", "kind", "flux_F770W", "flux_F1000W", "flux_F1500W"} <= set(truth.colnames)
    assert (truth["kind"] == "point").sum() == 30 and (truth["kind"] == "extended").sum() == 4
    assert str(truth["flux_F770W"].unit) == "Jy"


def test_ramps_undo_to_the_simulated_rate(observation):
    """Applying the reference-file corrections by hand recovers the simulated background."""
    from astropy.io import fits

    sub = det.SUBARRAYS["SUB256"]
    data = fits.getdata(observation.uncal_files[4], "SCI").astype(np.float64)[0]  # F1000W
    data[: det.RESET_NGROUPS] -= det.reset_anomaly(sub)
    c2 = det.linearity_c2(sub).astype(np.float64)
    lin = det.raw_to_linear(data, c2) - det.dark_groups(sub, data.shape[0])
    t = np.arange(data.shape[0]) * sub.frame_time
    use = slice(1, data.shape[0] - 1)  # rscd and lastframe drop the first and last group
    tt = t[use] - t[use].mean()
    slope = np.tensordot(tt, lin[use] - lin[use].mean(0), axes=(0, 0)) / (tt**2).sum()
    good = det.mask(sub) == 0
    rate = slope / det.flat(sub, 2)
    assert np.median(rate[good]) == pytest.approx(18.0, rel=0.02)


def test_simulation_is_deterministic(observation, tmp_path):
    _in_fresh_process(f"from appliance.simulate import simulate_observation; simulate_observation({str(tmp_path / 'a')!r})")
    assert _digests(tmp_path / "a") == _digests(observation.truth.parent)
    other = simulate_observation(tmp_path / "b", SimParams(filters=("F770W",), dithers=1, seed=2))
    assert other.uncal_files[0].read_bytes() != observation.uncal_files[0].read_bytes()


def test_full_frame(tmp_path):
    from astropy.io import fits

    obs = simulate_observation(
        tmp_path, SimParams(filters=("F2100W",), dithers=1, subarray="FULL", ngroups=5, nints=2, n_extended_sources=0)
    )
    with fits.open(obs.uncal_files[0]) as hdul:
        assert hdul["SCI"].data.shape == (2, 5, 1024, 1032)
        assert hdul[0].header["SUBARRAY"] == "FULL" and hdul[0].header["APERNAME"] == "MIRIM_FULL"
        assert len(hdul["INT_TIMES"].data) == 2


def test_more_dithers_than_the_pattern_and_ids(tmp_path):
    from astropy.io import fits

    from appliance.simulate.exposures import dither_offsets

    offsets = dither_offsets(9)
    assert len(set(offsets)) == 9 and offsets[8] != offsets[0]
    obs = simulate_observation(
        tmp_path, SimParams(filters=("F560W",), dithers=9, ngroups=5, n_point_sources=5,
                            program="01234", observation="007", visit="003")
    )
    assert len(obs.uncal_files) == 9
    assert obs.uncal_files[-1].name == "jw01234007003_02101_00009_mirimage_uncal.fits"
    header = fits.getheader(obs.uncal_files[-1])
    assert (header["PATT_NUM"], header["NUMDTHPT"], header["PROGRAM"], header["OBSERVTN"]) == (9, 9, "01234", "007")
