"""Unit tests for appliance.recipe: the happy path and every error a user can make."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.errors import UserError
from appliance.postprocess.registry import OPERATIONS, registered_names
from appliance.files import file_sha256
from appliance.recipe import (
    STAGE_ORDER,
    Environment,
    LocalFile,
    MastQuery,
    PostOp,
    Recipe,
    RecipeError,
    StageConfig,
    environment_mismatches,
    first_stage,
    load_recipe,
    parse_recipe,
    resolve_local_inputs,
    stages_to_run,
    step_parameters,
    validate_steps,
)

HEAD = """\
schema = 1

[recipe]
name = "t"

[environment]
jwst = "3.0.0"
crds_context = "jwst_1584.pmap"
"""

SIMULATE = """
[inputs]
simulate = { filters = ["F770W", "F1800W"], seed = 42 }
"""


def recipe_text(inputs: str = SIMULATE, rest: str = "") -> str:
    return HEAD + textwrap.dedent(inputs) + textwrap.dedent(rest)


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(text: str, path: str = "recipes/x.toml") -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, Path(path))
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    return message


def steps_error(rest: str, inputs: str = SIMULATE) -> str:
    recipe = parse_recipe(recipe_text(inputs, rest), Path("recipes/x.toml"))
    with pytest.raises(RecipeError) as info:
        validate_steps(recipe)
    assert "\n" not in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- happy path

FULL = """
[detector1.steps.jump]
rejection_threshold = 5.0
maximum_cores = "half"

[detector1.steps.dark_current]
override_dark = "refs/dark.fits"

[image2]
skip = false

[image2.steps.resample]
output_shape = [100, 200]
kernel = "gaussian"

[image3.steps.skymatch]
skip = true

[image3.steps.tweakreg]
abs_refcat = "GAIADR3"
save_results = true
suffix = "twk"

[[postprocess]]
op = "background"
box_size = 64
sigma = 3.0

[[postprocess]]
op = "report"
"""


def full_text() -> str:
    return recipe_text(SIMULATE, FULL).replace('name = "t"\n', 'name = "t"\ndescription = "everything at once"\n')


def test_happy_path(tmp_path):
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "dark.fits").write_bytes(b"x")
    path = write(tmp_path, full_text())
    recipe = load_recipe(path)

    assert recipe.path == path
    assert recipe.text == path.read_text()
    assert recipe.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert recipe.schema == 1 and recipe.name == "t" and recipe.description == "everything at once"
    assert recipe.environment == Environment("3.0.0", "jwst_1584.pmap", True)
    assert recipe.input_kind == "simulate"
    assert recipe.simulate == {"filters": ("F770W", "F1800W"), "seed": 42}
    assert recipe.local == () and recipe.mast is None
    assert tuple(recipe.stages) == STAGE_ORDER
    assert recipe.stages["detector1"] == StageConfig(
        skip=False,
        steps={"jump": {"rejection_threshold": 5.0, "maximum_cores": "half"},
               "dark_current": {"override_dark": "refs/dark.fits"}},
    )
    assert recipe.stages["image3"].steps["skymatch"] == {"skip": True}
    assert recipe.postprocess == (PostOp("background", {"box_size": 64, "sigma": 3.0}), PostOp("report", {}))
    assert first_stage(recipe) == "detector1"
    assert stages_to_run(recipe) == STAGE_ORDER
    for stage in STAGE_ORDER:  # the manifest and task keys serialise these
        json.dumps(dict(recipe.stages[stage].steps))
    validate_steps(recipe)

    steps = step_parameters(recipe, "detector1")
    assert steps["dark_current"]["override_dark"] == str(tmp_path / "refs" / "dark.fits")
    assert recipe.stages["detector1"].steps["dark_current"]["override_dark"] == "refs/dark.fits"


def test_recipe_is_frozen():
    recipe = parse_recipe(recipe_text(), Path("r.toml"))
    with pytest.raises(AttributeError):
        recipe.name = "other"
    with pytest.raises(TypeError):
        recipe.stages["image2"] = StageConfig()


def test_defaults():
    recipe = parse_recipe(recipe_text(), Path("r.toml"))
    assert recipe.description == ""
    assert recipe.environment.use_step_pars is True
    assert all(recipe.stages[s] == StageConfig() for s in STAGE_ORDER)
    assert recipe.postprocess == ()


def test_use_step_pars_false_and_skip_stage():
    text = recipe_text(rest="[image3]\nskip = true\n").replace(
        'crds_context = "jwst_1584.pmap"\n', 'crds_context = "jwst_1584.pmap"\nuse_step_pars = false\n')
    recipe = parse_recipe(text, Path("r.toml"))
    assert recipe.environment.use_step_pars is False
    assert stages_to_run(recipe) == ("detector1", "image2")


def test_parse_does_not_import_jwst():
    code = (
        "import sys; from pathlib import Path; from appliance.recipe import parse_recipe; "
        f"parse_recipe({full_text()!r}, Path('r.toml')); "
        "assert 'jwst' not in sys.modules, 'jwst imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# ------------------------------------------------------------- inputs: local

def local_inputs(entries: str) -> str:
    return f"\n[inputs]\nlocal = {entries}\n"


def test_local_inputs_resolve(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("jw1_b_rate.fits", "jw1_a_rate.fits", "single_rate.fits"):
        (data / name).write_bytes(name.encode())
    digest = hashlib.sha256(b"single_rate.fits").hexdigest()
    path = write(tmp_path, recipe_text(local_inputs(
        f'["data/jw1_*_rate.fits", {{path = "data/single_rate.fits", sha256 = "{digest.upper()}"}}]')))
    recipe = load_recipe(path)
    assert recipe.input_kind == "local"
    assert recipe.local[1].sha256 == digest  # normalised to lower case
    assert first_stage(recipe) == "image2"
    assert stages_to_run(recipe) == ("image2", "image3")

    files = resolve_local_inputs(recipe)
    assert files == [
        LocalFile(data / "jw1_a_rate.fits", None, "rate"),
        LocalFile(data / "jw1_b_rate.fits", None, "rate"),
        LocalFile(data / "single_rate.fits", digest, "rate"),
    ]
    assert file_sha256(files[2].path) == digest


@pytest.mark.parametrize("name, stage", [("x_uncal.fits", "detector1"), ("x_rate.fits", "image2"),
                                         ("x_cal.fits", "image3")])
def test_first_stage_follows_local_kind(name, stage):
    recipe = parse_recipe(recipe_text(local_inputs(f'["{name}"]')), Path("r.toml"))
    assert first_stage(recipe) == stage


def test_local_missing_file(tmp_path):
    path = write(tmp_path, recipe_text(local_inputs('["a_cal.fits", "b_cal.fits"]')))
    (tmp_path / "a_cal.fits").write_bytes(b"")
    recipe = load_recipe(path)
    with pytest.raises(UserError, match=r"r\.toml: inputs\.local\[1\]: no such file: \"b_cal\.fits\""):
        resolve_local_inputs(recipe)


def test_local_glob_matches_nothing(tmp_path):
    path = write(tmp_path, recipe_text(local_inputs('["nothing/*_uncal.fits"]')))
    with pytest.raises(UserError, match=r"inputs\.local\[0\]: \"nothing/\*_uncal\.fits\" matches no files"):
        resolve_local_inputs(load_recipe(path))


def test_local_sha256_mismatch(tmp_path):
    (tmp_path / "a_uncal.fits").write_bytes(b"changed")
    wrong = "0" * 64
    path = write(tmp_path, recipe_text(local_inputs(f'[{{path = "a_uncal.fits", sha256 = "{wrong}"}}]')))
    with pytest.raises(UserError) as info:
        resolve_local_inputs(load_recipe(path))
    message = str(info.value)
    assert "inputs.local[0].sha256:" in message and '"a_uncal.fits"' in message
    assert hashlib.sha256(b"changed").hexdigest() in message and wrong in message


def test_local_listed_twice(tmp_path):
    (tmp_path / "a_rate.fits").write_bytes(b"")
    path = write(tmp_path, recipe_text(local_inputs('["*_rate.fits", "a_rate.fits"]')))
    with pytest.raises(UserError, match=r"inputs\.local\[1\]: .* is already listed by inputs\.local\[0\]"):
        resolve_local_inputs(load_recipe(path))


@pytest.mark.parametrize("entries, expected", [
    ('["a.fits"]', r'inputs\.local\[0\]: "a\.fits" must end with one of _uncal\.fits, _rate\.fits, _cal\.fits'),
    ('["a_rate.fits", "b_cal.fits"]', r"inputs\.local\[1\]: is a _cal\.fits input but inputs\.local\[0\] is _rate"),
    ("[]", r"inputs\.local: expected at least one file or glob"),
    ('"a_cal.fits"', r'inputs\.local: expected an array, got string "a_cal\.fits"'),
    ("[3]", r"inputs\.local\[0\]: expected a path string or a table \{path = \.\.\., sha256 = \.\.\.\}, got integer 3"),
    ('[{path = "a_cal.fits", sha256 = "abc"}]', r'inputs\.local\[0\]\.sha256: expected 64 hexadecimal digits, got "abc"'),
    ('[{path = "*_cal.fits", sha256 = "' + "a" * 64 + '"}]', r"inputs\.local\[0\]\.sha256: a checksum pins one file"),
    ('[{sha256 = "' + "a" * 64 + '"}]', r"inputs\.local\[0\]\.path: missing required key \(a string\)"),
    ('[{path = "a_cal.fits", md5 = "x"}]', r"inputs\.local\[0\]\.md5: unknown key; allowed keys: path, sha256"),
])
def test_local_structure_errors(entries, expected):
    assert_matches(error_of(recipe_text(local_inputs(entries))), "recipes/x.toml: " + expected)


def assert_matches(message: str, pattern: str) -> None:
    import re
    assert re.match(pattern, message), message


# --------------------------------------------------------------- inputs: mast

MAST = """
[inputs.mast]
program = "02732"
observation = "002"
instrument = "MIRI/IMAGE"
filters = ["F770W", "F1000W"]
product = "uncal"
"""


def test_mast_query():
    recipe = parse_recipe(recipe_text(MAST), Path("r.toml"))
    assert recipe.input_kind == "mast"
    assert recipe.mast == MastQuery(program="02732", observation="002", visit=None, instrument="MIRI/IMAGE",
                                    filters=("F770W", "F1000W"), product="uncal", calib_level=None, files=())
    assert first_stage(recipe) == "detector1"


def test_mast_full():
    text = recipe_text(MAST.replace('"uncal"', '"cal"') + 'visit = "001"\ncalib_level = 2\n'
                       'files = ["jw02732002001_02103_00001_mirimage_cal.fits"]\n')
    recipe = parse_recipe(text, Path("r.toml"))
    assert recipe.mast.visit == "001" and recipe.mast.calib_level == 2
    assert recipe.mast.files == ("jw02732002001_02103_00001_mirimage_cal.fits",)
    assert first_stage(recipe) == "image3"


@pytest.mark.parametrize("old, new, expected", [
    ('program = "02732"', "program = 2732", r'inputs\.mast\.program: expected a string of 5 digits such as "02732", got integer 2732'),
    ('program = "02732"', 'program = "2732"', r"inputs\.mast\.program: expected a string of 5 digits"),
    ('observation = "002"\n', "", r"inputs\.mast\.observation: missing required key"),
    ('product = "uncal"', 'product = "i2d"', r'inputs\.mast\.product: expected one of "uncal", "rate", "cal", got "i2d"'),
    ('instrument = "MIRI/IMAGE"', 'instrument = "MIRI"', r"inputs\.mast\.instrument: expected INSTRUMENT/MODE"),
    ('filters = ["F770W", "F1000W"]', 'filters = "F770W"', r'inputs\.mast\.filters: expected an array of strings, got string "F770W"'),
    ('product = "uncal"', 'product = "uncal"\ncalib_level = 7', r"inputs\.mast\.calib_level: expected 1, 2 or 3, got 7"),
    ('product = "uncal"', 'product = "uncal"\nfiles = ["x_rate.fits"]', r'inputs\.mast\.files\[0\]: "x_rate\.fits" is not a _uncal\.fits file'),
    ('product = "uncal"', 'product = "uncal"\nproposal = "1"', r"inputs\.mast\.proposal: unknown key; allowed keys: calib_level, cloud, files"),
])
def test_mast_errors(old, new, expected):
    assert old in MAST
    assert_matches(error_of(recipe_text(MAST.replace(old, new))), "recipes/x.toml: " + expected)


# ----------------------------------------------------------- inputs: general

def test_inputs_exactly_one():
    both = recipe_text(SIMULATE + 'local = ["a_cal.fits"]\n')
    assert error_of(both) == "recipes/x.toml: inputs: expected exactly one of local, mast, simulate; got simulate, local"
    assert error_of(recipe_text("\n[inputs]\n")).endswith("inputs: expected exactly one of local, mast, simulate; got none")


def test_simulate_unknown_key():
    message = error_of(recipe_text("\n[inputs]\nsimulate = { filtres = [\"F770W\"] }\n"))
    assert message.startswith("recipes/x.toml: inputs.simulate.filtres: unknown key (did you mean filters?); allowed keys: ")
    assert "seed" in message


# --------------------------------------------------- structure and key errors

def test_toml_syntax_error_position():
    text = recipe_text().replace('name = "t"', 'name = "t" extra')
    assert error_of(text) == "recipes/x.toml: line 4, column 12: Expected newline or end of document after a statement"


def test_toml_syntax_error_end_of_file():
    assert error_of(recipe_text() + "x = [1,\n") == "recipes/x.toml: end of file: Invalid value"


def test_toml_duplicate_key():
    assert error_of(recipe_text() + "[recipe]\n").startswith("recipes/x.toml: line ")


@pytest.mark.parametrize("text, expected", [
    ("schema = 1\n", "recipe: missing required table [recipe]"),
    ('[recipe]\nname = "t"\n', "schema: missing required key; put schema = 1 at the top of the recipe"),
    ("schema = 2\n", "schema: schema 2 is not supported; this version of the appliance reads schema = 1"),
    ('schema = "1"\n', 'schema: expected an integer, got string "1"'),
    ("schema = true\n", "schema: expected an integer, got boolean true"),
])
def test_top_level_errors(text, expected):
    assert error_of(text) == "recipes/x.toml: " + expected


def test_unknown_top_level_table():
    assert error_of(recipe_text(rest="[detector2]\nskip = true\n")) == (
        "recipes/x.toml: detector2: unknown key (did you mean detector1?); allowed keys: "
        "detector1, environment, image2, image3, inputs, postprocess, recipe, schema")


def test_unknown_key_in_table():
    text = recipe_text().replace('name = "t"', 'name = "t"\nauthor = "me"')
    assert error_of(text) == "recipes/x.toml: recipe.author: unknown key; allowed keys: description, name"


@pytest.mark.parametrize("old, new, expected", [
    ('name = "t"', "name = 3", "recipe.name: expected a string, got integer 3"),
    ('name = "t"', 'name = " "', "recipe.name: must not be empty"),
    ('name = "t"', 'name = "t"\ndescription = ["a"]', 'recipe.description: expected a string, got array ["a"]'),
    ('jwst = "3.0.0"', "jwst = 3.0", "environment.jwst: expected a string, got float 3.0"),
    ('jwst = "3.0.0"', 'jwst = "latest"', 'environment.jwst: expected a version such as "3.0.0", got "latest"'),
    ('jwst = "3.0.0"\n', "", 'environment.jwst: missing required key (a string such as "3.0.0")'),
    ('crds_context = "jwst_1584.pmap"', 'crds_context = "1584"',
     'environment.crds_context: expected a CRDS context such as "jwst_1584.pmap", got "1584"'),
    ('crds_context = "jwst_1584.pmap"', 'crds_context = "jwst_1584.pmap"\nuse_step_pars = "no"',
     'environment.use_step_pars: expected a boolean, got string "no"'),
    ('crds_context = "jwst_1584.pmap"', 'crds_context = "jwst_1584.pmap"\ncrds_server = "x"',
     "environment.crds_server: unknown key; allowed keys: crds_context, jwst, use_step_pars"),
])
def test_head_errors(old, new, expected):
    assert old in HEAD
    assert error_of(recipe_text().replace(old, new, 1)) == "recipes/x.toml: " + expected


@pytest.mark.parametrize("rest, expected", [
    ("[detector1]\nskip = 1\n", "detector1.skip: expected a boolean, got integer 1"),
    ("[image2]\nsave_bsub = true\n", "image2.save_bsub: unknown key; a stage takes only skip and steps"),
    ("[image3]\nsteps = 3\n", "image3.steps: expected a table, got integer 3"),
    ("[image3.steps]\nskymatch = true\n", "image3.steps.skymatch: expected a table, got boolean true"),
])
def test_stage_structure_errors(rest, expected):
    assert error_of(recipe_text(rest=rest)).startswith("recipes/x.toml: " + expected)


def test_stage_must_be_a_table():
    text = 'detector1 = "yes"\n' + recipe_text()
    assert error_of(text) == 'recipes/x.toml: detector1: expected a table, got string "yes"'


def test_steps_for_a_bypassed_stage():
    rate = local_inputs('["a_rate.fits"]')
    message = error_of(recipe_text(rate, "[detector1.steps.jump]\nrejection_threshold = 5.0\n"))
    assert message == ("recipes/x.toml: detector1.steps: the inputs are _rate.fits files, so the reduction starts at "
                       "image2 and detector1 never runs; remove [detector1] or set detector1.skip = true")
    # allowed once the stage is skipped, and with no steps at all
    parse_recipe(recipe_text(rate, "[detector1]\nskip = true\n[detector1.steps.jump]\nrejection_threshold = 5.0\n"),
                 Path("r.toml"))
    parse_recipe(recipe_text(rate, "[detector1]\nskip = false\n"), Path("r.toml"))
    cal = recipe_text(MAST.replace('"uncal"', '"cal"'), "[image2.steps.resample]\nkernel = \"point\"\n")
    assert "image2.steps: the inputs are _cal.fits files" in error_of(cal)


# ------------------------------------------------------------- postprocess

@pytest.mark.parametrize("rest, expected", [
    ('[[postprocess]]\nop = "catalogue"\n',
     'postprocess[0].op: unknown operation "catalogue" (did you mean catalog?); valid operations: '
     + ", ".join(sorted(OPERATIONS))),
    ('[[postprocess]]\nop = "report"\n[[postprocess]]\nop = "catalog"\nthreshhold = 3\n',
     "postprocess[1].threshhold: unknown parameter of catalog (did you mean threshold?); "
     "valid parameters: deblend, input, npixels, threshold"),
    ('[[postprocess]]\nop = "report"\nformat = "html"\n',
     "postprocess[0].format: unknown parameter; report takes no parameters"),
    ("[[postprocess]]\nbox_size = 3\n", "postprocess[0].op: missing required key; valid operations: "),
    ("[[postprocess]]\nop = 3\n", "postprocess[0].op: expected a string, got integer 3"),
    ('[postprocess]\nop = "report"\n', "postprocess: expected an array of tables ([[postprocess]]), got a table"),
])
def test_postprocess_errors(rest, expected):
    assert error_of(recipe_text(rest=rest)).startswith("recipes/x.toml: " + expected)


def test_postprocess_registry():
    assert registered_names() == ["astrometric_catalog", "background", "catalog", "preview", "report"]
    assert OPERATIONS["background"] == {"box_size", "filter_size", "sigma", "mask_sources", "input"}
    assert OPERATIONS["report"] == frozenset()


# ------------------------------------------------------------------ files

def test_load_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.toml: no such recipe file$"):
        load_recipe(tmp_path / "nope.toml")


def test_load_directory(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        load_recipe(tmp_path)


def test_load_not_utf8(tmp_path):
    path = tmp_path / "r.toml"
    path.write_bytes(b"schema = 1\n# \xff\n")
    with pytest.raises(UserError, match=r"r\.toml: not UTF-8 text \(byte 13\)"):
        load_recipe(path)


def test_sha256_is_of_the_bytes_with_crlf(tmp_path):
    path = tmp_path / "r.toml"
    path.write_bytes(recipe_text().replace("\n", "\r\n").encode())
    assert load_recipe(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------- environment

def test_environment_mismatches():
    recipe = parse_recipe(recipe_text().replace('"3.0.0"', '"2.0.1"'), Path("r.toml"))
    assert environment_mismatches(recipe, "3.0.0", "jwst_1584.pmap") == ["jwst: recipe 2.0.1, installed 3.0.0"]
    assert environment_mismatches(recipe, "2.0.1", "jwst_1600.pmap") == [
        "crds_context: recipe jwst_1584.pmap, installed jwst_1600.pmap"]
    same = parse_recipe(recipe_text().replace('"3.0.0"', '"3.0"'), Path("r.toml"))
    assert environment_mismatches(same, "3.0.0", "jwst_1584.pmap") == []


# ------------------------------------------------------- steps (import jwst)

def test_unknown_step():
    message = steps_error("[detector1.steps.jmp]\nrejection_threshold = 5.0\n")
    assert message.startswith("recipes/x.toml: detector1.steps.jmp: unknown step (did you mean jump?); "
                              "valid detector1 steps: charge_migration, clean_flicker_noise, ")
    assert "dark_current" in message and "ramp_fit" in message


def test_step_of_another_stage():
    message = steps_error("[image2.steps.tweakreg]\nskip = true\n")
    assert message.startswith("recipes/x.toml: image2.steps.tweakreg: unknown step; valid image2 steps: "
                              "assign_wcs, bkg_subtract, flat_field, photom, resample")


def test_unknown_param_long_list():
    message = steps_error("[detector1.steps.jump]\nrejection_treshold = 5.0\n")
    assert message.startswith("recipes/x.toml: detector1.steps.jump.rejection_treshold: unknown parameter of jump "
                              "(did you mean rejection_threshold")
    assert "parameters in all, list them with: strun jump --help" in message


def test_unknown_param_without_close_match_lists_all():
    message = steps_error("[image3.steps.skymatch]\nzzz = 1\n")
    assert "unknown parameter of skymatch; valid parameters: " in message
    assert "skymethod" in message and "save_results" in message


@pytest.mark.parametrize("rest", [
    # generic stpipe Step parameters a recipe may set (hooks and output paths are refused: test_security.py)
    "[image3.steps.skymatch]\nskip = true\nsave_results = true\nsuffix = \"sky\"\n"
    "search_output_file = false\noutput_use_index = false\noutput_ext = \".fits\"\n",
    # typed values, ints where floats are expected, options, lists
    "[detector1.steps.jump]\nrejection_threshold = 5\nmaximum_cores = \"all\"\nsat_expand = 3\n"
    "[detector1.steps.ramp_fit]\nalgorithm = \"LIKELY\"\n"
    "[image2.steps.resample]\noutput_shape = [10, 20]\ncrpix = [1, 2.5]\n"
    "[image2.steps.bkg_subtract]\nbkg_list = \"a_rate.fits\"\n"
    "[image2.steps.flat_field]\noverride_flat = \"N/A\"\n",
])
def test_valid_step_parameters(rest, tmp_path):
    (tmp_path / "a_rate.fits").write_bytes(b"")  # a file a step reads must exist beside the recipe
    validate_steps(parse_recipe(recipe_text(rest=rest), tmp_path / "x.toml"))


@pytest.mark.parametrize("rest, expected", [
    ('[detector1.steps.jump]\nrejection_threshold = "5.0"\n',
     'detector1.steps.jump.rejection_threshold: expected a float, got string "5.0"'),
    ("[detector1.steps.jump]\nsat_expand = 2.5\n", "detector1.steps.jump.sat_expand: expected an integer, got float 2.5"),
    ('[image3.steps.skymatch]\nskip = "yes"\n', 'image3.steps.skymatch.skip: expected a boolean, got string "yes"'),
    ("[image3.steps.tweakreg]\nabs_refcat = 3\n", "image3.steps.tweakreg.abs_refcat: expected a string, got integer 3"),
    ("[image2.steps.resample]\noutput_shape = [10, 2.5]\n",
     "image2.steps.resample.output_shape: expected an array of integers, got array [10, 2.5]"),
    ("[image2.steps.resample]\noutput_shape = [10]\n",
     "image2.steps.resample.output_shape: the value [10] is too short (spec: int_list(min=2,max=2))"),
    ("[detector1.steps.jump]\nrejection_threshold = -1.0\n",
     "detector1.steps.jump.rejection_threshold: the value -1.0 is too small (spec: float(min=0))"),
    ('[image2.steps.resample]\nkernel = "sqare"\n',
     'image2.steps.resample.kernel: expected one of "square", "gaussian", "point", "turbo", "lanczos2", "lanczos3", '
     'got string "sqare"'),
    ("[image3.steps.outlier_detection.maskpt]\nx = 1\n",
     "image3.steps.outlier_detection.maskpt: expected a float, got a table"),
    ("[detector1.steps.dark_current]\noverride_dark = 3\n",
     "detector1.steps.dark_current.override_dark: expected a path string, got integer 3"),
])
def test_bad_step_values(rest, expected):
    assert steps_error(rest) == "recipes/x.toml: " + expected


def test_override_file_must_exist(tmp_path):
    path = write(tmp_path, recipe_text(rest='[detector1.steps.dark_current]\noverride_dark = "refs/dark.fits"\n'))
    with pytest.raises(UserError) as info:
        validate_steps(load_recipe(path))
    assert str(info.value).startswith(
        f'{path}: detector1.steps.dark_current.override_dark: no such reference file: "refs/dark.fits" (looked for ')


def test_override_only_on_steps_with_that_reference():
    message = steps_error('[detector1.steps.jump]\noverride_dark = "d.fits"\n')
    assert "detector1.steps.jump.override_dark: unknown parameter of jump (did you mean override_" in message


def test_structural_step_keys_rejected():
    message = steps_error('[image3.steps.tweakreg]\nconfig_file = "t.asdf"\n')
    assert "image3.steps.tweakreg.config_file: a recipe may not set config_file" in message
    message = steps_error('[image3.steps.tweakreg]\nclass = "stpipe.subprocess.SystemCall"\n')
    assert "image3.steps.tweakreg.class: a recipe may not set class" in message


def test_recipe_type_is_plain_data():
    recipe = parse_recipe(recipe_text(), Path("r.toml"))
    assert isinstance(recipe, Recipe)
    assert json.loads(json.dumps(recipe.simulate)) == {"filters": ["F770W", "F1800W"], "seed": 42}


def test_recipe_error_pickles():
    import pickle
    err = RecipeError(Path("recipes/x.toml"), "schema", "bad")
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) == "recipes/x.toml: schema: bad"
    assert copy.where == "schema" and copy.reason == "bad"


def test_docs_examples_are_valid(tmp_path):
    """Every TOML example in docs/recipes.md parses and its steps validate."""
    import re
    doc = (Path(__file__).parents[1] / "docs" / "recipes.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    full, fragments = blocks[0], blocks[1:]
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "my_dark.fits").write_bytes(b"")
    validate_steps(load_recipe(write(tmp_path, full)))
    head = full.split("[inputs.mast]")[0]
    for fragment in fragments:
        inputs = "" if "[inputs" in fragment else "[inputs]\nsimulate = { seed = 1 }\n"
        validate_steps(parse_recipe(head + inputs + fragment, tmp_path / "x.toml"))
