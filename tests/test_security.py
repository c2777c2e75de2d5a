"""Hostile recipes, input files and manifests: nothing in them runs code or writes outside the workdir.

Each case is tried the way an attacker would (docs/security.md); every refusal
is one line on stderr, exit code 2 (bad input) or 1 (a failure of the work),
and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from appliance import cli
from appliance.graph import Exposure, Plan, Task
from conftest import ROOT, run_cli

DEMO = (ROOT / "recipes" / "demo.toml").read_text()
REAL = ('schema = 1\n[recipe]\nname = "r"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_1584.pmap"\n'
        'use_step_pars = false\n')
EXPOSURE = "jw02732002001_02101_00001_mirimage"


@pytest.fixture(autouse=True)
def restored_environment():
    """``prepare`` sets the CRDS variables in this process: give every case the same start."""
    saved = dict(os.environ)
    os.environ["CRDS_CONTEXT"] = "jwst_1584.pmap"
    yield
    os.environ.clear()
    os.environ.update(saved)


def main(capsys, *argv) -> tuple[int, str, str]:
    """``run.py ARGV`` in this process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(capsys, *argv, code: int = 2) -> str:
    got, out, err = main(capsys, *argv)
    lines = err.strip().splitlines()
    assert got == code, (got, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def listing(*dirs: Path) -> dict[Path, set[str]]:
    return {d: set(os.listdir(d)) for d in dirs}


def write_fits(path: Path, **header) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(np.zeros((2, 2), dtype=np.float32))
    cards = {"FILTER": "F770W", "PROGRAM": "02732", "OBSERVTN": "002", **header}
    for key, value in cards.items():
        if value is not None:
            hdu.header[key] = value
    hdu.writeto(path)
    return path


# --------------------------------------------------------------------------- recipes: code and output paths

CODE_OR_WRITES = [
    ("dq_init", "pre_hooks", '["touch /tmp/PWNED"]'),
    ("dq_init", "post_hooks", '["touch /tmp/PWNED"]'),
    ("saturation", "pre_hooks", '["jwst.dq_init.DQInitStep", "sh -c \'touch /tmp/PWNED\'"]'),
    ("jump", "post_hooks", '[]'),
    ("saturation", "output_dir", '"/tmp/EVIL_DIR"'),
    ("saturation", "output_dir", '"../../EVIL_DIR"'),
    ("saturation", "output_file", '"../../../x"'),
    ("saturation", "output_file", '"/tmp/EVIL_FILE.fits"'),
    ("saturation", "input_dir", '"/etc"'),
    ("saturation", "output_use_model", "true"),
    ("dark_current", "dark_output", '"/tmp/EVIL_DARK.fits"'),
    ("ramp_fit", "int_name", '"/tmp/EVIL_INT.fits"'),
    ("ramp_fit", "opt_name", '"../../EVIL_OPT.fits"'),
    ("persistence", "save_persistence", '"/tmp/EVIL_PERS.asdf"'),
    ("dq_init", "config_file", '"evil.asdf"'),  # a parameter file may set hooks: another door to the same room
    ("dq_init", "class", '"stpipe.subprocess.SystemCall"'),
    ("dq_init", "name", '"saturation"'),
]


@pytest.mark.parametrize("step, param, value", CODE_OR_WRITES)
def test_recipes_cannot_run_code_or_choose_where_products_go(capsys, tmp_path, step, param, value):
    recipe = tmp_path / "r.toml"
    recipe.write_text(DEMO + f"\n[detector1.steps.{step}]\nsave_results = true\n{param} = {value}\n")
    before, tmp_before = listing(tmp_path), set(os.listdir("/tmp"))
    line = one_line(capsys, "run", recipe, "--workdir", tmp_path / "work")
    assert f"detector1.steps.{step}.{param}: a recipe may not set {param}" in line
    assert listing(tmp_path) == before
    # /tmp is shared with whatever else runs on the machine: none of the names these cases aim at appeared
    assert not {n for n in set(os.listdir("/tmp")) - tmp_before if "PWNED" in n or "EVIL" in n or n == "x"}
    assert not (tmp_path / "work").exists()
    assert not Path("/tmp/PWNED").exists() and not Path("/tmp/EVIL_DIR").exists()


def test_a_forged_specs_record_spares_no_policy_check(capsys, tmp_path):
    """A workdir's ``records/validated.json`` may spare the check against jwst's specs (a re-run), never the
    policy: a forged one does not let a parameter file with hooks in."""
    from appliance import records
    from appliance.recipe import load_recipe
    from appliance.session import expected_environment

    (tmp_path / "evil.asdf").write_text("#ASDF 1.0.0\n")
    recipe = tmp_path / "r.toml"
    recipe.write_text(DEMO + '\n[detector1.steps.dq_init]\nconfig_file = "evil.asdf"\n')
    loaded = load_recipe(recipe)
    workdir = tmp_path / "work"
    (workdir / "records").mkdir(parents=True)
    records.mark_specs_checked(workdir, records.specs_fingerprint(loaded, expected_environment(loaded)[0]))
    line = one_line(capsys, "run", recipe, "--workdir", workdir)
    assert "detector1.steps.dq_init.config_file: a recipe may not set config_file" in line
    assert sorted(os.listdir(workdir)) == ["records"]


@pytest.mark.parametrize("field, value", [("name", "../../../tmp/victim"), ("name", "x$(touch PWNED)"),
                                          ("filter", "/../../x"), ("program", "\u0660\u0662\u0667\u0663\u0662"),
                                          ("observation", "00 2"), ("nints", -5), ("kind", "../x")])
def test_a_forged_inputs_record_is_not_trusted_and_a_bad_exposure_never_reaches_the_plan(tmp_path, field, value):
    from appliance import records
    from appliance.errors import UserError
    from appliance.plan import build_plan
    from appliance.recipe import load_recipe
    from appliance.sources import INPUTS_TASK, preview, source

    recipe = tmp_path / "r.toml"
    recipe.write_text(DEMO)
    loaded = load_recipe(recipe)
    workdir = tmp_path / "work"
    good = {"name": EXPOSURE, "kind": "uncal", "filter": "F770W", "program": "02732", "observation": "002",
            "ngroups": 5, "nints": 1, "pixels": 1032 * 1024}
    records.finish(workdir, {"id": INPUTS_TASK, "kind": "simulate", "status": records.DONE,
                             "key": source(loaded).input_key(loaded), "outputs": [],
                             "exposures": [{**good, field: value}]})
    assert records.load(workdir, INPUTS_TASK) is not None  # well formed as a record ...
    placed = preview(loaded, workdir)
    assert (placed.status, placed.reason) == ("run", "new")  # ... but its exposures are not trusted
    assert all(e.name != value and e.filter != value for e in placed.exposures)
    with pytest.raises(UserError) as refused:
        build_plan(loaded, [Exposure(**{**good, field: value})])
    assert "\n" not in str(refused.value) and str(recipe) in str(refused.value)


@pytest.mark.parametrize("planted", ["stage1", "logs", "records", "crds_cache", "stage1/x_rate.fits",
                                     "logs/detector1_x.log", "run.lock", "manifest.json"])
def test_a_symbolic_link_planted_in_the_workdir_is_refused_before_anything_is_written(capsys, tmp_path, planted):
    """jwst and astropy write through a product's path: a link there would carry the write outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    recipe = tmp_path / "r.toml"
    recipe.write_text(DEMO)
    workdir = tmp_path / "work"
    link = workdir / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside if "." not in planted else outside / "victim")
    before = listing(outside, workdir)
    line = one_line(capsys, "run", recipe, "--workdir", workdir)
    assert f"{link}: a symbolic link inside the workdir" in line and "remove it" in line
    assert listing(outside, workdir) == before and not (outside / "victim").exists()


NAMED_PARTS = [
    ("suffix", '"../../../../tmp/x"'),
    ("suffix", '"x/y"'),
    ("suffix", '"x$(touch PWNED)"'),
    ("suffix", '""'),
    ("output_ext", '"/../../x"'),
    ("output_ext", '".sh"'),
]


@pytest.mark.parametrize("param, value", NAMED_PARTS)
def test_parameters_that_become_file_names_are_plain_words(capsys, tmp_path, param, value):
    recipe = tmp_path / "r.toml"
    recipe.write_text(DEMO + f"\n[image2.steps.resample]\n{param} = {value}\n")
    line = one_line(capsys, "check", recipe)
    assert f"image2.steps.resample.{param}: expected" in line


@pytest.fixture
def outside(tmp_path) -> Path:
    """A regular file that is not in the recipe's directory."""
    path = tmp_path / "elsewhere" / "ref.fits"
    path.parent.mkdir()
    path.write_bytes(b"SIMPLE")
    return path


READ_PATHS = [
    ("detector1", "dark_current", "override_dark"),
    ("detector1", "dq_init", "user_supplied_dq"),
    ("image2", "flat_field", "user_supplied_flat"),
    ("image2", "flat_field", "override_flat"),
    ("image3", "tweakreg", "abs_refcat"),
    ("image3", "tweakreg", "catfile"),
    ("image3", "skymatch", "skylist"),
    ("image3", "resample", "output_wcs"),
]


@pytest.mark.parametrize("stage, step, param", READ_PATHS)
def test_files_a_step_reads_must_be_in_the_recipe_directory(capsys, tmp_path, outside, stage, step, param):
    home = tmp_path / "recipes"
    home.mkdir()
    (home / "r.toml").write_text(DEMO + f'\n[{stage}.steps.{step}]\n{param} = "{outside}"\n')
    assert "lies outside the recipe's directory" in one_line(capsys, "check", home / "r.toml")
    (home / "r.toml").write_text(DEMO + f'\n[{stage}.steps.{step}]\n{param} = "../elsewhere/ref.fits"\n')
    assert "lies outside the recipe's directory" in one_line(capsys, "check", home / "r.toml")


def test_a_link_out_of_the_recipe_directory_and_special_files_are_refused(capsys, tmp_path, outside):
    home = tmp_path / "recipes"
    home.mkdir()
    (home / "link.fits").symlink_to(outside)
    (home / "r.toml").write_text(DEMO + '\n[detector1.steps.dark_current]\noverride_dark = "link.fits"\n')
    assert "lies outside the recipe's directory" in one_line(capsys, "check", home / "r.toml")
    os.mkfifo(home / "fifo.fits")
    (home / "r.toml").write_text(DEMO + '\n[detector1.steps.dark_current]\noverride_dark = "fifo.fits"\n')
    assert "override_dark: not a regular file" in one_line(capsys, "check", home / "r.toml")
    (home / "r.toml").write_text(DEMO + '\n[image2.steps.flat_field]\nuser_supplied_flat = "/dev/zero"\n')
    assert "user_supplied_flat: not a regular file" in one_line(capsys, "check", home / "r.toml")
    (home / "r.toml").write_text(DEMO + f'\n[image2.steps.bkg_subtract]\nbkg_list = ["{outside}"]\n')
    assert "bkg_list" in one_line(capsys, "check", home / "r.toml")


def test_catalog_names_and_files_inside_are_accepted(capsys, tmp_path):
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "cat.ecsv").write_text("x")
    (tmp_path / "r.toml").write_text(DEMO + '\n[image3.steps.tweakreg]\nabs_refcat = "GAIADR3"\n'
                                     '[image2.steps.flat_field]\nuser_supplied_flat = "refs/cat.ecsv"\n')
    code, out, err = main(capsys, "check", tmp_path / "r.toml")
    assert code == 0, err


@pytest.mark.parametrize("fragment", [
    "[detector1.steps.jump]\nrejection_threshold = nan\n",
    "[detector1.steps.jump]\nrejection_threshold = -nan\n",
    "[image3.steps.outlier_detection]\nmaskpt = nan\n",
    "[image2.steps.resample]\ncrpix = [1.0, nan]\n",
    "[image3.steps.skymatch]\nlower = nan\n",
])
def test_nan_is_no_number(capsys, tmp_path, fragment):
    (tmp_path / "r.toml").write_text(DEMO + "\n" + fragment)
    assert "(NaN is not accepted)" in one_line(capsys, "check", tmp_path / "r.toml")


@pytest.mark.parametrize("op, param", [("background", "sigma"), ("catalog", "threshold")])
def test_nan_in_post_processing_parameters(capsys, tmp_path, op, param):
    (tmp_path / "r.toml").write_text(DEMO.replace(f'op = "{op}"\n', f'op = "{op}"\n{param} = nan\n', 1)
                                     .replace(f"{param} = 3.0\n", "", 1))
    assert f"{param}: expected a number" in one_line(capsys, "check", tmp_path / "r.toml")


def test_the_astrometric_table_must_be_in_the_recipe_directory(capsys, tmp_path, outside):
    home = tmp_path / "recipes"
    home.mkdir()
    (home / "r.toml").write_text(DEMO + f'\n[[postprocess]]\nop = "astrometric_catalog"\ntable = "{outside}.ecsv"\n')
    shutil.copy(outside, f"{outside}.ecsv")
    assert "lies outside the recipe's directory" in one_line(capsys, "check", home / "r.toml")


@pytest.mark.parametrize("name", ["a b.ecsv", "x$(touch PWNED).ecsv", ".hid.ecsv", "-rf.ecsv"])
def test_the_astrometric_table_name_becomes_a_product_name_so_it_is_plain(capsys, tmp_path, name):
    (tmp_path / name).write_text("ra,dec\n1,2\n")
    (tmp_path / "r.toml").write_text(DEMO + f'\n[[postprocess]]\nop = "astrometric_catalog"\ntable = "{name}"\n')
    assert "table: expected a file named with letters, digits" in one_line(capsys, "check", tmp_path / "r.toml")


# --------------------------------------------------------------------------- recipes as files

def test_a_recipe_that_is_a_fifo_or_a_device_is_refused_at_once(capsys, tmp_path):
    os.mkfifo(tmp_path / "r.toml")
    assert "not a regular file (a FIFO)" in one_line(capsys, "check", tmp_path / "r.toml")
    assert "not a regular file (a character device)" in one_line(capsys, "check", "/dev/zero")
    assert "is a directory" in one_line(capsys, "check", tmp_path)


@pytest.mark.parametrize("data, expected", [
    (b"a = " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested too deeply"),
    (b"a = " + b"{b = " * 2000 + b"1" + b"}" * 2000 + b"\n", "nested too deeply"),
    (b"x = 1\n" + b"# padding\n" * 200_000, "more than a recipe may have"),
    (b"schema = 1\n\xff\n", "not UTF-8"),
    (b"schema = 1\n[recipe\n", "line 2"),
])
def test_malformed_recipe_files(capsys, tmp_path, data, expected):
    path = tmp_path / "r.toml"
    path.write_bytes(data)
    assert expected in one_line(capsys, "check", path)


@pytest.mark.parametrize("key, value", [
    ("program", '"０２７３２"'),  # full-width digits match \d, not [0-9]
    ("program", '"٠٢٧٣٢"'),
    ("observation", '"00²"'),
    ("visit", '"0\u200b01"'),
])
def test_digits_are_ascii_digits(capsys, tmp_path, key, value):
    base = {"program": '"02732"', "observation": '"002"', "visit": '"001"'}
    base[key] = value
    text = REAL + "[inputs.mast]\n" + "".join(f"{k} = {v}\n" for k, v in base.items()) + \
        'instrument = "MIRI/IMAGE"\nproduct = "uncal"\n'
    (tmp_path / "r.toml").write_text(text, encoding="utf-8")
    assert f"inputs.mast.{key}: expected a string of" in one_line(capsys, "check", tmp_path / "r.toml")


@pytest.mark.parametrize("key, value", [("program", '"٠٢٧٣٢"'), ("observation", '"００２"'),
                                        ("date", '"２０２４-07-03T10:00:00"')])
def test_simulated_observations_take_ascii_digits_only(capsys, tmp_path, key, value):
    (tmp_path / "r.toml").write_text(DEMO.replace("seed = 1\n", f"seed = 1\n{key} = {value}\n"), encoding="utf-8")
    assert f"inputs.simulate: {key}: expected " in one_line(capsys, "check", tmp_path / "r.toml")


@pytest.mark.parametrize("version", ['"\\n3.0.0\\n"', '" 3.0.0"', '"3.0.0; rm -rf ~"'])
def test_the_jwst_version_is_a_version_and_nothing_else(capsys, tmp_path, version):
    (tmp_path / "r.toml").write_text(DEMO.replace('jwst = "3.0.0"', f"jwst = {version}"))
    assert "environment.jwst: expected a version" in one_line(capsys, "check", tmp_path / "r.toml")


def test_control_characters_in_a_recipe_are_printed_escaped(capsys, tmp_path):
    (tmp_path / "r.toml").write_text(DEMO.replace('name = "demo"', 'name = "demo\\u001b[2J\\nresult: IDENTICAL"'))
    code, out, err = main(capsys, "check", tmp_path / "r.toml")
    assert code == 0, err
    assert "\x1b" not in out and "demo\\x1b[2J\\nresult: IDENTICAL" in out
    (tmp_path / "r.toml").write_text(DEMO + "\n[detector1.steps.jump]\nrejection_threshold = \"\\u001b[31m\"\n")
    line = one_line(capsys, "check", tmp_path / "r.toml")
    assert "\x1b" not in line and "\\u001b[31m" in line


# --------------------------------------------------------------------------- input headers and names

@pytest.mark.parametrize("card, value, expected", [
    ("FILTER", "/../../stage2/x/../../../../../../tmp/victim", "FILTER: expected a filter name"),
    ("FILTER", "x$(touch PWNED)", "FILTER: expected a filter name"),
    ("FILTER", "F770W;rm", "FILTER: expected a filter name"),
    ("FILTER", "f770w", "FILTER: expected a filter name"),
    ("FILTER", "", "FILTER: expected a filter name"),
    ("FILTER", None, "FILTER: expected a filter name"),
    ("PROGRAM", "../..", "PROGRAM: expected a program number"),
    ("PROGRAM", "2732", "PROGRAM: expected a program number"),
    ("OBSERVTN", "../x", "OBSERVTN: expected an observation number"),
    ("OBSERVTN", "1;ls", "OBSERVTN: expected an observation number"),
])
def test_header_values_that_become_file_names_are_checked(capsys, tmp_path, card, value, expected):
    write_fits(tmp_path / "data" / f"{EXPOSURE}_cal.fits", **{card: value})
    (tmp_path / "r.toml").write_text(REAL + '[inputs]\nlocal = ["data/*_cal.fits"]\n')
    victim = Path("/tmp/victim.log")
    for command in ("check", "run"):
        line = one_line(capsys, command, tmp_path / "r.toml", "--workdir", tmp_path / "work")
        assert expected in line and "\n" not in line
    assert not (tmp_path / "work").exists()
    assert not Path("/tmp/victim_image3_asn.json").exists() and not victim.exists()


@pytest.mark.parametrize("name", [
    "ev$(touch PWNED)_uncal.fits",
    "ev`touch PWNED`_uncal.fits",
    "a b_uncal.fits",
    "x\"y_uncal.fits",
    "-rf_uncal.fits",
    ".hidden_uncal.fits",
    "semi;colon_uncal.fits",
    "new\nline_uncal.fits",
])
def test_exposure_file_names_are_plain(capsys, tmp_path, name):
    write_fits(tmp_path / "data" / name)
    (tmp_path / "r.toml").write_text(REAL + f'[inputs]\nlocal = [{json.dumps("data/" + name)}]\n')
    line = one_line(capsys, "run", tmp_path / "r.toml", "--workdir", tmp_path / "work")
    assert "expected an exposure file named" in line
    assert not (tmp_path / "work").exists() and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("content", [b"", b"not a FITS file\n" * 10, b"SIMPLE  =                    T" + b" " * 50])
def test_an_input_that_is_not_fits_is_one_line(capsys, tmp_path, content):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"{EXPOSURE}_uncal.fits").write_bytes(content)
    (tmp_path / "r.toml").write_text(REAL + '[inputs]\nlocal = ["data/*_uncal.fits"]\n')
    assert "not a readable FITS file" in one_line(capsys, "run", tmp_path / "r.toml", "--workdir", tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_a_local_input_that_is_a_fifo_or_a_link_to_a_device_is_refused(capsys, tmp_path):
    (tmp_path / "data").mkdir()
    os.mkfifo(tmp_path / "data" / f"{EXPOSURE}_uncal.fits")
    (tmp_path / "r.toml").write_text(REAL + f'[inputs]\nlocal = ["data/{EXPOSURE}_uncal.fits"]\n')
    assert "not a regular file" in one_line(capsys, "check", tmp_path / "r.toml")
    (tmp_path / "data" / f"{EXPOSURE}_uncal.fits").unlink()
    (tmp_path / "data" / f"{EXPOSURE}_uncal.fits").symlink_to("/dev/zero")
    assert "not a regular file" in one_line(capsys, "check", tmp_path / "r.toml")


# --------------------------------------------------------------------------- the exported script

HOSTILE_NAMES = ["ev$(touch PWNED)", "ev`touch PWNED`", "a b", "q'uote", 'd"q', "semi;touch PWNED", "x\ntouch PWNED"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_exported_script_quotes_every_name(tmp_path, name):
    """Names are refused before export; should one slip through, the script still runs nothing hidden in it."""
    from appliance import export
    from appliance.crdsenv import CrdsSettings
    from appliance.recipe import parse_recipe

    recipe = parse_recipe(REAL + '[inputs]\nlocal = ["x_cal.fits"]\n', tmp_path / f"{name}.toml")
    exposure = Exposure(name, "cal", f"F{name}", "02732", "002")
    product = f"jw02732-o002_t001_miri_{name}"
    task = Task(f"image3:{name}", "image3", {"steps": {}, "product_name": product},
                (f"stage2/{name}_cal.fits",), (f"stage3/{product}_i2d.fits",))
    settings = CrdsSettings("jwst_1584.pmap", str(tmp_path / "crds"), "local", "https://x.invalid", False)
    plan = Plan(("image3",), (exposure,), (task,))
    text = export.render_script(recipe, settings, plan, [task], [], [])
    script = tmp_path / "reduce.sh"
    script.write_text(text)
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    inputs, work = tmp_path / "in dir", tmp_path / "work"
    inputs.mkdir()
    (inputs / f"{name}_cal.fits").write_bytes(b"x")
    strun = tmp_path / "strun"
    strun.write_text("#!/bin/sh\nexit 0\n")
    strun.chmod(0o755)
    (tmp_path / "asn").mkdir()
    (tmp_path / "asn" / f"{product}_image3_asn.json").write_text("{}")
    done = subprocess.run(["sh", str(script), str(inputs), str(work)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "STRUN": str(strun)})
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert (work / "stage2" / f"{name}_cal.fits").is_file()


# --------------------------------------------------------------------------- manifests

def manifest(tmp_path: Path, recipe_text: str, **fields) -> Path:
    data = {"manifest_version": 1,
            "recipe": {"path": "recipes/r.toml", "text": recipe_text,
                       "sha256": hashlib.sha256(recipe_text.encode()).hexdigest()},
            "environment": {}, "inputs": [], "products": [], "tasks": [], **fields}
    path = tmp_path / "run" / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


SHA = "0" * 64
FORGED = [
    ({"inputs": [{"name": "../../a_uncal.fits", "sha256": SHA}]}, "inputs[0].name: expected a relative path"),
    ({"inputs": [{"name": "/etc/a_uncal.fits", "sha256": SHA}]}, "inputs[0].name: expected a relative path"),
    ({"inputs": [{"name": "uncal/./a_uncal.fits", "sha256": SHA}]}, "inputs[0].name: expected a relative path"),
    ({"inputs": [{"name": "uncal/a_uncal.fits", "sha256": "x"}]}, "inputs[0].sha256: expected 64 hexadecimal"),
    ({"inputs": [{"name": "uncal/a_uncal.fits"}]}, "inputs[0].sha256: missing"),
    ({"inputs": [{"name": "uncal/a_uncal.fits", "sha256": SHA, "size": -1}]}, "inputs[0].size: expected"),
    ({"inputs": {"x": 1}}, "inputs: expected a list"),
    ({"inputs": ["x"]}, "inputs[0]: expected an object"),
    ({"products": [{"path": "../outside.fits", "sha256": SHA, "content_digest": "x"}]}, "products[0].path"),
    ({"products": [{"path": "stage1/x.fits", "sha256": SHA}]}, "products[0].content_digest: missing"),
    ({"products": [{"path": "stage1/x.fits", "sha256": SHA, "content_digest": "x", "crds_refs": []}]},
     "products[0].crds_refs: expected an object of strings"),
    ({"products": [{"path": "stage1/x.fits", "sha256": SHA, "content_digest": "x", "step_status": {"S_X": 1}}]},
     "products[0].step_status"),
    ({"tasks": [{"kind": "image3"}]}, "tasks[0].id: missing"),
    ({"tasks": [{"id": "x", "params": []}]}, "tasks[0].params: expected an object"),
    ({"tasks": [{"id": "x", "params": {"steps": {"jump": 5}}}]}, "tasks[0].params: expected an object whose"),
    ({"tasks": [{"id": "x", "effective_parameters": {"steps": [1]}}]}, "tasks[0].effective_parameters: expected"),
    ({"tasks": [{"id": "x", "effective_parameters": {"steps": {"s": 5}}}]}, "tasks[0].effective_parameters"),
    ({"tasks": [{"id": "x", "effective_parameters": {"pipeline": "x"}}]}, "tasks[0].effective_parameters"),
    ({"tasks": [{"id": "x", "outputs": ["../../x"]}]}, "tasks[0].outputs"),
    ({"environment": []}, "environment: expected an object"),
    ({"environment": {"packages": {"jwst": 3}}}, "environment.packages"),
    ({"environment": {"image": {"id": "; rm -rf /"}}}, "environment.image"),
    ({"environment": {"env_mismatches": "x"}}, "environment.env_mismatches"),
    ({"plan": {"exposures": [1]}}, "plan: expected"),
    ({"finished": 3}, "finished: expected a string"),
    ({"manifest_version": 2}, "manifest_version: expected 1"),
]


@pytest.mark.parametrize("fields, expected", FORGED)
@pytest.mark.parametrize("command", ["verify", "compare", "reproduce"])
def test_forged_manifests_are_refused_with_one_line(capsys, tmp_path, fields, expected, command):
    path = manifest(tmp_path, REAL + '[inputs]\nlocal = ["a_uncal.fits"]\n', **fields)
    argv = {"verify": ("verify", path), "compare": ("compare", path, path),
            "reproduce": ("reproduce", path, "--workdir", tmp_path / "again")}[command]
    assert expected in one_line(capsys, *argv)
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize("origin, name", [
    ("file:///x/y/../../a_uncal.fits", "uncal/a_uncal.fits"),
    ("file:///x/./a_uncal.fits", "uncal/a_uncal.fits"),
    ("file://evil.example/x/a_uncal.fits", "uncal/a_uncal.fits"),
    ("file:///x/%2e%2e/a_uncal.fits", "uncal/a_uncal.fits"),
    ("file:///x/a b/a_uncal.fits", "uncal/a_uncal.fits"),
])
def test_reproduce_refuses_forged_local_origins(capsys, tmp_path, origin, name):
    path = manifest(tmp_path, REAL + '[inputs]\nlocal = ["a_uncal.fits"]\n',
                    inputs=[{"name": name, "sha256": SHA, "origin": origin}])
    before = listing(tmp_path)
    assert "not a plain absolute file:// URL" in one_line(capsys, "reproduce", path, "--workdir", tmp_path / "again",
                                                          "--allow-env-mismatch")
    assert listing(tmp_path) == before


@pytest.mark.parametrize("name, origin", [
    ("uncal/ESCAPE_uncal.fits", "mast:JWST/product/../../../ESCAPE/x_uncal.fits"),
    ("stage1/x_uncal.fits", "mast:JWST/product/x_uncal.fits"),
    ("uncal/x_uncal.fits", "https://evil.example/x_uncal.fits"),
])
def test_reproduce_refuses_forged_mast_inputs(capsys, tmp_path, name, origin):
    text = REAL + ('[inputs.mast]\nprogram = "02732"\nobservation = "002"\ninstrument = "MIRI/IMAGE"\n'
                   'product = "uncal"\n')
    path = manifest(tmp_path, text, inputs=[{"name": name, "sha256": SHA, "origin": origin}])
    before = listing(tmp_path)
    assert "from MAST" in one_line(capsys, "reproduce", path, "--workdir", tmp_path / "again", "--allow-env-mismatch")
    assert listing(tmp_path) == before


def test_a_manifest_that_is_a_fifo_a_device_or_deeply_nested_is_refused(capsys, tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    assert "not a regular file (a FIFO)" in one_line(capsys, "verify", tmp_path / "fifo.json")
    assert "not a regular file" in one_line(capsys, "compare", "/dev/zero", "/dev/zero")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in one_line(capsys, "verify", tmp_path / "deep.json")
    (tmp_path / "big.json").write_bytes(b" " * ((64 << 20) + 1))
    assert "more than a manifest may have" in one_line(capsys, "verify", tmp_path / "big.json")


def test_a_sums_file_that_is_a_fifo_does_not_hang_verify(capsys, tmp_path):
    path = manifest(tmp_path, REAL + '[inputs]\nlocal = ["a_uncal.fits"]\n')
    os.mkfifo(path.parent / "SHA256SUMS")
    code, out, _ = main(capsys, "verify", path)
    assert code == 1 and "SHA256SUMS: not a regular file" in out


def test_names_from_a_manifest_are_printed_escaped(capsys, tmp_path):
    path = manifest(tmp_path, REAL + '[inputs]\nlocal = ["a_uncal.fits"]\n',
                    inputs=[{"name": "uncal/a\x1b[2J_uncal.fits", "sha256": SHA}])
    line = one_line(capsys, "verify", path)
    assert "\x1b" not in line and "\\x1b" in line


# --------------------------------------------------------------------------- tampered runs and compare

def small_workdir(root: Path) -> Path:
    """A workdir with one real product and its manifest, made with the appliance's own writers."""
    from appliance.manifest import build_manifest, product_record, write_manifest

    rate = write_fits(root / "stage1" / f"{EXPOSURE}_rate.fits")
    built = build_manifest(recipe_text="x", recipe_path="r.toml", environment={}, inputs=[],
                           products=[product_record(rate, root, f"detector1:{EXPOSURE}")],
                           tasks=[{"id": f"detector1:{EXPOSURE}", "kind": "detector1"}], started="s", finished="f")
    write_manifest(root, built)
    return root


def test_compare_verifies_the_product_files_it_finds(capsys, tmp_path):
    a, b = small_workdir(tmp_path / "a"), small_workdir(tmp_path / "b")
    code, out, _ = main(capsys, "compare", a, b)
    assert code == 0 and "IDENTICAL" in out
    rate = b / "stage1" / f"{EXPOSURE}_rate.fits"
    with open(rate, "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\1")
    assert "does not match the sha256 its manifest records" in one_line(capsys, "compare", a, b)
    rate.unlink()
    code, out, _ = main(capsys, "compare", a, b)
    assert code == 0 and "only its manifest was compared" in out
    code, out, _ = main(capsys, "compare", a, b, "--digests-only")
    assert "only the manifests were compared" in out
    (b / "stage1" / f"{EXPOSURE}_rate.fits").symlink_to(a / "stage1" / f"{EXPOSURE}_rate.fits")
    assert "a symbolic link out of the run's directory" in one_line(capsys, "compare", a, b)


# --------------------------------------------------------------------------- the machine: disk, memory, bugs

@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), so a write runs out of space for real."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "tiny"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", str(where)])


def test_a_full_disk_is_one_line_and_leaves_no_partial_copy(tmp_path, tiny_disk):
    data = tmp_path / "data"
    data.mkdir()
    hdu = fits.PrimaryHDU(np.zeros((800, 800), dtype=np.float32))  # 2.5 MB: more than the disk holds
    hdu.header.update(FILTER="F770W", PROGRAM="02732", OBSERVTN="002")
    hdu.writeto(data / f"{EXPOSURE}_uncal.fits")
    (tmp_path / "r.toml").write_text(REAL + '[inputs]\nlocal = ["data/*_uncal.fits"]\n[image3]\nskip = true\n')
    cache = tmp_path / "crds"  # enough of a cache for local mode to accept the context
    (cache / "mappings" / "jwst").mkdir(parents=True)
    (cache / "mappings" / "jwst" / "jwst_1584.pmap").write_text("")
    (cache / "config" / "jwst").mkdir(parents=True)
    (cache / "config" / "jwst" / "server_config").write_text("{}")
    env = {"CRDS_CONTEXT": "jwst_1584.pmap", "CRDS_PATH": str(cache)}
    # a header without its frame size is priced by its file size: refused before anything is written
    done = run_cli("run", str(tmp_path / "r.toml"), "--workdir", str(tiny_disk / "work"), env=env)
    assert done.returncode == 2 and "GiB of disk, but" in done.stderr and not (tiny_disk / "work").exists()
    # a header that claims one pixel passes the estimate, and the disk fills during the copy
    fits.setval(data / f"{EXPOSURE}_uncal.fits", "SUBSIZE1", value=1)
    fits.setval(data / f"{EXPOSURE}_uncal.fits", "SUBSIZE2", value=1)
    done = run_cli("run", str(tmp_path / "r.toml"), "--workdir", str(tiny_disk / "work"), env=env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "No space left on device (the disk is full)" in lines[0]
    assert not [p for p in tiny_disk.rglob("*") if p.name.endswith(".part")]


def test_a_simulation_that_cannot_fit_the_disk_is_one_line(tiny_disk):
    done = run_cli("simulate", "--out", str(tiny_disk / "sim"), "--filters", "F770W", "--dithers", "4")
    assert done.returncode in (1, 2), done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "disk" in lines[0], done.stderr
    assert not [p for p in tiny_disk.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]


def test_a_manifest_write_that_fails_leaves_neither_file(tmp_path, monkeypatch):
    from appliance import manifest as m

    real = m.atomic_write

    def full(target, data, **kw):
        if Path(target).name == m.MANIFEST_NAME:
            raise OSError(28, "No space left on device", str(target))
        return real(target, data, **kw)

    monkeypatch.setattr(m, "atomic_write", full)
    with pytest.raises(OSError):
        m.write_manifest(tmp_path, {"inputs": [], "products": []})
    assert sorted(os.listdir(tmp_path)) == []


def test_simulate_into_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    assert "--out: expected a directory, found a file" in one_line(capsys, "simulate", "--out", tmp_path / "f")


def test_a_plan_bigger_than_the_machine_is_refused_before_any_write(capsys, tmp_path):
    huge = DEMO.replace("dithers = 4\nsubarray = \"SUB256\"", "dithers = 64\nsubarray = \"FULL\"\nngroups = 200\nnints = 100")
    (tmp_path / "r.toml").write_text(huge)
    for command in ("check", "run"):
        line = one_line(capsys, command, tmp_path / "r.toml", "--workdir", tmp_path / "work")
        assert "needs an estimated" in line and "GiB" in line
    assert not (tmp_path / "work").exists()
    recorded = manifest(tmp_path, huge)  # a manifest asking for the same simulation: priced before simulating
    line = one_line(capsys, "reproduce", recorded, "--workdir", tmp_path / "again", "--allow-env-mismatch")
    assert "needs an estimated" in line and "GiB" in line
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize("fragment", ["output_shape = [200000, 200000]", "pixel_scale_ratio = 0.0001",
                                      "pixel_scale = 0.00001"])
def test_a_mosaic_bigger_than_the_machine_is_refused(capsys, tmp_path, fragment):
    (tmp_path / "r.toml").write_text(DEMO + f"\n[image3.steps.resample]\n{fragment}\n")
    line = one_line(capsys, "check", tmp_path / "r.toml")
    assert "needs an estimated" in line and "for image3 of" in line


def test_a_simulation_bigger_than_the_machine_is_refused(tmp_path):
    from appliance.errors import UserError
    from appliance.resources import refuse_beyond, simulation

    with pytest.raises(UserError, match="needs an estimated .* GiB of memory for simulating one exposure"):
        refuse_beyond(simulation(200, 100, 1032 * 1024, 192), tmp_path, "simulate")
    refuse_beyond(simulation(10, 1, 256 * 256, 12), tmp_path, "simulate")  # the demo fits


def test_check_prints_the_estimate(capsys):
    code, out, _ = main(capsys, "check", ROOT / "recipes" / "demo.toml")
    assert code == 0 and "estimate peak memory ≈" in out and "disk ≈ 0.13 GiB" in out


def test_an_internal_error_is_one_line_with_the_traceback_in_a_log(capsys, monkeypatch, tmp_path):
    def broken(args):
        raise KeyError("boom")

    from appliance.commands import verify

    monkeypatch.setattr(verify, "cmd_verify", broken)
    line = one_line(capsys, "verify", tmp_path, code=1)
    assert line.startswith("error: internal error (KeyError: 'boom'); the traceback is in ")
    log = Path(line.rpartition(" ")[2])
    assert "Traceback" in log.read_text() and "KeyError" in log.read_text()
    log.unlink()
