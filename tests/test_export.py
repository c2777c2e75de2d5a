"""``run.py export``: parameter files, associations and a strun script that reproduces ``run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asdf
import numpy as np
import pytest
from astropy.io import fits

from conftest import run_cli
from test_compare import SMALL, small_run_once

JUMP = SMALL + "[detector1.steps.jump]\nrejection_threshold = 3.0\n\n[image3.steps.skymatch]\nskip = true\n"
VENV_BIN = str(Path(sys.executable).parent)


# Recipes of real data are checked against the pinned context (or $CRDS_CONTEXT): say which, whatever
# another test may have left in this process's environment.
REAL_CONTEXT = {"CRDS_CONTEXT": "jwst_1584.pmap"}


def export(tmp_path: Path, text: str, *extra: str, name: str = "r.toml", env: dict | None = None):
    recipe = tmp_path / name
    recipe.write_text(text)
    return run_cli("export", str(recipe), "--out", str(tmp_path / "out"), *extra, env=env)


def one_line_error(done, code=2) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_export_writes_parameter_files_associations_and_a_script(tmp_path):
    done = export(tmp_path, JUMP)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert "exported 5 strun command(s)" in done.stdout
    assert sorted(p.name for p in (out / "params").iterdir()) == [
        "calwebb_detector1.asdf", "calwebb_image2.asdf", "calwebb_image3.asdf"]
    with asdf.open(out / "params" / "calwebb_detector1.asdf") as af:
        assert af.tree["class"] == "jwst.pipeline.calwebb_detector1.Detector1Pipeline"
        assert af.tree["parameters"] == {}
        # only what the recipe sets: the rest stays jwst's default or the CRDS pars-* value
        assert [(s["name"], s["class"], s["parameters"]) for s in af.tree["steps"]] == [
            ("jump", "jwst.jump.jump_step.JumpStep", {"rejection_threshold": 3.0})]
    with asdf.open(out / "params" / "calwebb_image3.asdf") as af:
        assert [(s["name"], s["parameters"]) for s in af.tree["steps"]] == [("skymatch", {"skip": True})]
    with asdf.open(out / "params" / "calwebb_image2.asdf") as af:
        assert "steps" not in af.tree
    asns = sorted(p.name for p in (out / "asn").iterdir())
    assert asns == ["jw02732-o002_t001_miri_f770w_image3_asn.json",
                    "jw02732002001_02101_00001_mirimage_image2_asn.json",
                    "jw02732002001_02101_00002_mirimage_image2_asn.json"]
    level3 = json.loads((out / "asn" / asns[0]).read_text())
    assert [m["expname"] for m in level3["products"][0]["members"]] == [
        "jw02732002001_02101_00001_mirimage_cal.fits", "jw02732002001_02101_00002_mirimage_cal.fits"]
    script = (out / "reduce.sh").read_text()
    assert os.access(out / "reduce.sh", os.X_OK)
    assert "export CRDS_CONTEXT=jwst_9000.pmap" in script and "unset STPIPE_DISABLE_CRDS_STEPPARS" in script
    assert script.count("\nrun ") == 5
    assert 'run image2:jw02732002001_02101_00001_mirimage "$WORKDIR"/stage1 "$HERE"/params/calwebb_image2.asdf' in script
    assert "--output_dir" in script and "python run.py simulate --out INPUT_DIR" in script
    assert subprocess.run(["sh", "-n", str(out / "reduce.sh")]).returncode == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left


def test_the_script_checks_its_inputs_before_running_anything(tmp_path):
    assert export(tmp_path, SMALL).returncode == 0
    cache = tmp_path / "cache"
    (cache / "mappings" / "jwst").mkdir(parents=True)
    (cache / "mappings" / "jwst" / "jwst_9000.pmap").write_text("")
    (tmp_path / "inputs").mkdir()
    env = {**os.environ, "STRUN": "true", "CRDS_PATH": str(cache)}
    done = subprocess.run([str(tmp_path / "out" / "reduce.sh"), str(tmp_path / "inputs"), str(tmp_path / "w")],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "jw02732002001_02101_00001_mirimage_uncal.fits: missing input" in done.stderr
    env.pop("CRDS_PATH")
    done = subprocess.run([str(tmp_path / "out" / "reduce.sh"), str(tmp_path / "inputs")], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "set CRDS_PATH to the synthetic CRDS cache" in done.stderr


def test_step_parameter_references_off_and_pinned_local_inputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for k in (1, 2):
        hdu = fits.PrimaryHDU(np.zeros((2, 2), dtype=np.float32))
        hdu.header.update(FILTER="F770W", PROGRAM="02732", OBSERVTN="002")
        hdu.writeto(data / f"jw02732002001_02101_0000{k}_mirimage_rate.fits")
    import hashlib

    pin = hashlib.sha256((data / "jw02732002001_02101_00002_mirimage_rate.fits").read_bytes()).hexdigest()
    text = ('schema = 1\n[recipe]\nname = "l"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_1584.pmap"\n'
            'use_step_pars = false\n[inputs]\nlocal = ["data/jw02732002001_02101_00001_mirimage_rate.fits", '
            f'{{ path = "data/jw02732002001_02101_00002_mirimage_rate.fits", sha256 = "{pin}" }}]\n')
    done = export(tmp_path, text, env=REAL_CONTEXT)
    assert done.returncode == 0, done.stderr
    script = (tmp_path / "out" / "reduce.sh").read_text()
    assert "export STPIPE_DISABLE_CRDS_STEPPARS=True" in script
    assert 'export CRDS_SERVER_URL="${CRDS_SERVER_URL:-https://jwst-crds.stsci.edu}"' in script
    assert f'printf "%s  %s\\n" {pin} "$WORKDIR"/stage1/jw02732002001_02101_00002_mirimage_rate.fits | sha256sum -c' in script
    assert "calwebb_detector1" not in script  # rate inputs start at image2
    assert sorted(p.name for p in (tmp_path / "out" / "params").iterdir()) == [
        "calwebb_image2.asdf", "calwebb_image3.asdf"]


def test_bad_requests_are_one_line_and_write_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    assert "not empty (pass --force" in one_line_error(export(tmp_path, SMALL))
    assert "not an earlier export" in one_line_error(export(tmp_path, SMALL, "--force"))
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
    mast = ('schema = 1\n[recipe]\nname = "m"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_1584.pmap"\n'
            '[inputs.mast]\nprogram = "02732"\nobservation = "002"\ninstrument = "MIRI/IMAGE"\nproduct = "uncal"\n')
    line = one_line_error(run_cli("export", str(_write(tmp_path / "m.toml", mast)), "--out", str(tmp_path / "o2"),
                                  env=REAL_CONTEXT))
    assert "known once fetched" in line and "--inputs" in line
    assert not (tmp_path / "o2").exists()
    line = one_line_error(run_cli("export", str(_write(tmp_path / "b.toml", SMALL + "[detector1.steps.jmp]\nx = 1\n")),
                                  "--out", str(tmp_path / "o3")))
    assert "detector1.steps.jmp: unknown step" in line
    assert not (tmp_path / "o3").exists()


def test_force_replaces_an_earlier_export(tmp_path):
    assert export(tmp_path, SMALL).returncode == 0
    done = export(tmp_path, JUMP, "--force")
    assert done.returncode == 0, done.stderr
    assert "rejection_threshold" in (tmp_path / "out" / "params" / "calwebb_detector1.asdf").read_text()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("parameters", ["recipe", "effective"])
def test_the_exported_strun_script_gives_the_same_content_digests_as_run(tmp_path_factory, tmp_path, parameters):
    """Parameter files holding the recipe's parameters alone (stpipe adds defaults and pars-* files), or every
    step's effective parameters as the run recorded them (``--effective-from``): the same products either way."""
    from appliance.digest import content_digest

    base, manifest = small_run_once(tmp_path_factory)
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL)  # the recipe the small run reduced
    extra = ["--effective-from", str(base)] if parameters == "effective" else []
    done = run_cli("export", str(recipe), "--out", str(tmp_path / "exported"), *extra)
    assert done.returncode == 0, done.stderr
    if parameters == "effective":
        import asdf

        with asdf.open(tmp_path / "exported" / "params" / "calwebb_detector1.asdf") as af:
            steps = {s["name"]: s["parameters"] for s in af.tree["steps"]}
        assert steps["jump"]["rejection_threshold"] == 4.0 and steps["emicorr"]["skip"] is False  # not in the recipe
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
           "CRDS_PATH": str(base / "crds_cache")}
    done = subprocess.run([str(tmp_path / "exported" / "reduce.sh"), str(base / "uncal"), str(tmp_path / "plain")],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[5/5] image3:F770W" in done.stdout
    parameter_files = {t["parameter_file"] for t in manifest["tasks"] if "parameter_file" in t}  # the appliance's
    mismatched = [p["path"] for p in manifest["products"] if p["path"] not in parameter_files
                  if not (tmp_path / "plain" / p["path"]).is_file()
                  or content_digest(tmp_path / "plain" / p["path"]) != p["content_digest"]]
    assert mismatched == []


@pytest.mark.e2e
@pytest.mark.parametrize("step, name, value, expected", [
    ("jump", "pre_hooks", ["touch PWNED"], "runs code"),
    ("dq_init", "config_file", "evil.asdf", "no parameter of it"),  # a step's spec has none: refused either way
    ("jump", "suffix", "../../../../tmp/EVIL", "expected letters, digits"),
    ("jump", "output_ext", "/../../x", 'expected ".fits"'),
    ("dark_current", "override_dark", "/etc/passwd", "lies outside the recipe's directory"),
    ("jump", "no_such_parameter", 1, "no parameter of it"),
    ("evil", "", True, "records evil, which is no step of calwebb_detector1"),
])
def test_effective_from_refuses_a_record_that_carries_code_or_paths(tmp_path_factory, tmp_path, step, name, value,
                                                                    expected):
    """A record is untrusted: what it carries reaches the exported parameter files and the script's strun, so
    it must pass the recipe policy (and be a parameter of the step) unless it is the pipeline's own default."""
    import json
    import shutil

    base, _ = small_run_once(tmp_path_factory)
    forged = tmp_path / "forged"
    shutil.copytree(base / "records", forged / "records")
    path = forged / "records" / "detector1_jw02732002001_02101_00001_mirimage.json"
    record = json.loads(path.read_text())
    record["effective_parameters"]["steps"].setdefault(step, {})[name or "skip"] = value
    path.write_text(json.dumps(record))
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL)
    done = run_cli("export", str(recipe), "--out", str(tmp_path / "exported"), "--effective-from", str(forged))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"{step}.{name}".rstrip(".") in done.stderr and expected in done.stderr, done.stderr
    assert not (tmp_path / "exported").exists()
