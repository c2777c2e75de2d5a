"""TOML recipe -> validated, frozen :class:`Recipe`.

A recipe is the human-edited statement of one reduction: which data, which
pipeline release and CRDS context it was written for, and which ``jwst``
step parameters differ from the defaults.  It is parsed in two passes:

* :func:`parse_recipe` / :func:`load_recipe` check the structure (tables,
  keys, types) without importing ``jwst``, because the CLI must set the CRDS
  environment variables, which the recipe may influence, before ``jwst`` is
  imported;
* :func:`validate_steps` imports ``jwst.pipeline`` and checks every step
  name, parameter name and value against the steps' own stpipe specs, so a
  typo lists the real names.

Every error is a :class:`RecipeError` (a :class:`~appliance.errors.UserError`)
whose message is one line in the manner of tomli's: the file, the position
(a dotted key such as ``detector1.steps.jump.rejection_threshold`` or
``line 3, column 7``) and a plain sentence.  The format reference is
``docs/recipes.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from appliance.errors import UserError
from appliance.files import file_sha256
from appliance.safety import RECIPE_SIZE_LIMIT, inside, read_regular_file
from appliance.pipelines import KIND_FIRST_STAGE, STAGE_ORDER
from appliance.pipelines import STAGES as PIPELINE_STAGES
from appliance.postprocess.registry import OPERATIONS, check_parameter

SCHEMA_VERSION = 1
STAGES = STAGE_ORDER
INPUT_KINDS = ("simulate", "local", "mast")

#: File-name ending of a local input -> its product kind.  ``_uncal`` is
#: tested first so that it is never mistaken for ``_cal``.
LOCAL_SUFFIXES = {"_uncal.fits": "uncal", "_rate.fits": "rate", "_cal.fits": "cal"}
MAST_PRODUCTS = ("uncal", "rate", "cal")

#: Used until ``appliance.simulate.SimParams`` exists (see :func:`_simulate_fields`).
_FALLBACK_SIM_FIELDS = (
    "filters", "dithers", "subarray", "ngroups", "nints", "seed",
    "program", "observation", "visit",
)
#: Keys of a pipeline's per-step spec that describe the pipeline's structure
#: (an external config file, the class to load) rather than a step parameter.
_STRUCTURAL_STEP_KEYS = frozenset({"config_file", "name", "class"})

_TOP_KEYS = ("schema", "recipe", "environment", "inputs", *STAGES, "postprocess")
_GLOB_CHARS = re.compile(r"[*?\[]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CRDS_CONTEXT = re.compile(r"jwst_[0-9]+\.pmap", re.ASCII)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$", re.S)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Environment:
    """The software the recipe was written for; a mismatch is reported, not fatal here."""

    jwst: str
    crds_context: str
    use_step_pars: bool = True


@dataclass(frozen=True)
class StageConfig:
    """One pipeline stage: skip it whole, or run it with these step parameters.

    ``steps`` is ``{step_name: {parameter: value}}`` exactly as stpipe's
    ``Pipeline.call(..., steps=...)`` takes it, kept as plain dicts so that it
    serialises with :func:`json.dumps`.
    """

    skip: bool = False
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class PostOp:
    """One ``[[postprocess]]`` table: a registered operation and its parameters."""

    op: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MastQuery:
    """Which public products to fetch from MAST (fetching lives in ``sources/mast.py``)."""

    program: str
    observation: str
    visit: str | None
    instrument: str
    filters: tuple[str, ...]
    product: str
    calib_level: int | None
    files: tuple[str, ...]


@dataclass(frozen=True)
class LocalSpec:
    """One entry of ``inputs.local`` as written: a path or glob, optionally pinned by sha256."""

    path: str
    sha256: str | None = None

    @property
    def kind(self) -> str:
        """``uncal``, ``rate`` or ``cal``, from the file-name ending (checked at parse time)."""
        return _local_kind(self.path)

    @property
    def is_glob(self) -> bool:
        return bool(_GLOB_CHARS.search(self.path))


@dataclass(frozen=True)
class LocalFile:
    """A local input after glob expansion and checking: an absolute path."""

    path: Path
    sha256: str | None
    kind: str


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe.  ``text`` and ``sha256`` identify it exactly in the manifest."""

    path: Path
    text: str
    sha256: str
    schema: int
    name: str
    description: str
    environment: Environment
    simulate: Mapping[str, Any] | None
    local: tuple[LocalSpec, ...]
    mast: MastQuery | None
    stages: Mapping[str, StageConfig]
    postprocess: tuple[PostOp, ...]

    @property
    def input_kind(self) -> str:
        """``"simulate"``, ``"local"`` or ``"mast"``: the one ``[inputs]`` key given."""
        if self.simulate is not None:
            return "simulate"
        if self.mast is not None:
            return "mast"
        return "local"


class RecipeError(UserError):
    """A recipe is wrong.  ``where`` is a dotted key or a ``line L, column C`` position."""

    def __init__(self, path: Path | str, where: str | None, reason: str):
        self.path = Path(path)
        self.where = where
        self.reason = reason
        prefix = f"{path}: {where}: " if where else f"{path}: "
        super().__init__(prefix + reason)

    def __reduce__(self):  # survives pickling (process pools, dask)
        return type(self), (self.path, self.where, self.reason)


class _Invalid(Exception):
    """Raised inside the pure parsers; :func:`parse_recipe` adds the file name."""

    def __init__(self, key: tuple, reason: str):
        super().__init__(key, reason)
        self.key = key
        self.reason = reason


# ------------------------------------------------------------------- public API


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and parse a recipe file; a missing or unreadable file is a UserError."""
    path = Path(path)
    data = read_regular_file(path, "recipe", RECIPE_SIZE_LIMIT)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(path, None, f"not UTF-8 text (byte {exc.start}); TOML files must be UTF-8") from None
    return parse_recipe(text, path)


def parse_recipe(text: str, path: str | os.PathLike) -> Recipe:
    """Parse recipe text and check its structure; imports nothing from jwst.

    ``path`` names the file in messages and anchors relative input paths.
    ``sha256`` is taken over ``text`` encoded as UTF-8, which equals the file's
    bytes when the text came from :func:`load_recipe`.
    """
    path = Path(path)
    try:
        doc = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        where, reason = _toml_position(exc)
        raise RecipeError(path, where, reason) from None
    except RecursionError:
        raise RecipeError(path, None, "arrays or tables nested too deeply to be a recipe") from None
    try:
        return _build(doc, text, path)
    except _Invalid as exc:
        raise RecipeError(path, _dotted(exc.key), exc.reason) from None


def first_stage(recipe: Recipe) -> str:
    """The stage that reads the recipe's inputs: simulated and uncal data start at detector1."""
    if recipe.input_kind == "simulate":
        return "detector1"
    if recipe.input_kind == "mast":
        return KIND_FIRST_STAGE[recipe.mast.product]
    return KIND_FIRST_STAGE[recipe.local[0].kind]


def stages_to_run(recipe: Recipe) -> tuple[str, ...]:
    """The contiguous run of stages from :func:`first_stage` to the last one not skipped.

    Products flow stage to stage, so a skipped stage between two that run is an error.
    """
    start = STAGES.index(first_stage(recipe))
    wanted = [s for s in STAGES[start:] if not recipe.stages[s].skip]
    if not wanted:
        return ()
    run = STAGES[start : STAGES.index(wanted[-1]) + 1]
    gap = [s for s in run if recipe.stages[s].skip]
    if gap:
        raise RecipeError(recipe.path, f"{gap[0]}.skip",
                          f"cannot skip a stage between the inputs' stage ({run[0]}) and {wanted[-1]}")
    return run


def environment_mismatches(recipe: Recipe, jwst_version: str, crds_context: str) -> list[str]:
    """How the installed software differs from what the recipe was written for.

    Returns one line per difference, e.g. ``"jwst: recipe 2.0.1, installed 3.0.0"``;
    an empty list when they agree.  Versions compare by PEP 440 (``3.0`` equals
    ``3.0.0``).
    """
    env = recipe.environment
    out = []
    if not _same_version(env.jwst, jwst_version):
        out.append(f"jwst: recipe {env.jwst}, installed {jwst_version}")
    if env.crds_context != crds_context:
        out.append(f"crds_context: recipe {env.crds_context}, installed {crds_context}")
    return out


def resolve_local_inputs(recipe: Recipe) -> list[LocalFile]:
    """Expand ``inputs.local`` to absolute files, checking existence and pinned sha256.

    Paths are relative to the recipe file's directory.  Globs expand in sorted
    order (``**`` recurses); a file listed twice is an error, as it would be
    reduced twice.
    """
    base = recipe.path.parent.absolute()
    files: list[LocalFile] = []
    seen: dict[Path, int] = {}
    for i, spec in enumerate(recipe.local):
        key = ("inputs", "local", i)
        for path in _expand_local(recipe, key, spec, base):
            if path in seen:
                raise _error(recipe, key, f"{_q(str(path))} is already listed by {_dotted(('inputs', 'local', seen[path]))}")
            seen[path] = i
            if spec.sha256 is not None:
                actual = file_sha256(path)
                if actual != spec.sha256:
                    raise _error(recipe, (*key, "sha256"),
                                 f"{_q(spec.path)} has sha256 {actual}, but the recipe pins {spec.sha256}")
            files.append(LocalFile(path=path, sha256=spec.sha256, kind=spec.kind))
    return files


#: Step parameters a recipe may not set, and why (``docs/security.md``).  stpipe runs a
#: hook that is not an importable step as a shell command; the others name where a
#: step writes, which is the plan's to decide, inside the workdir.
REFUSED_STEP_PARAMETERS = {
    "pre_hooks": "runs code (stpipe runs a hook that is not a step as a shell command)",
    "post_hooks": "runs code (stpipe runs a hook that is not a step as a shell command)",
    "input_dir": "names a directory to read from; inputs come from [inputs]",
    "output_dir": "names where products are written; each stage writes into its own directory of the workdir",
    "output_file": "names where a product is written; product names are the plan's",
    "output_use_model": "names products after their input headers; product names are the plan's",
    "dark_output": "names where a product is written; product names are the plan's",
    "int_name": "names where a product is written; product names are the plan's",
    "opt_name": "names where a product is written; product names are the plan's",
    "save_persistence": "names where a product is written; product names are the plan's",
}
#: Step parameters that name a file the step reads: it must exist, be a regular file and
#: lie in the recipe's directory (or the workdir).  ``override_<reftype>`` too.
READ_PATH_PARAMETERS = frozenset({
    "abs_refcat", "catfile", "output_wcs", "persistence_array_file", "skylist", "user_mask",
    "user_supplied_dq", "user_supplied_flat", "user_supplied_reffile", "bkg_list", "wfss_mask",
})
#: Values of ``abs_refcat`` that name a catalog service rather than a file.
REFCAT_NAMES = frozenset({"GAIAREFCAT", "GAIADR3", "GAIADR2", "GAIADR1"})
#: String parameters that become part of a product's file name.
NAME_PARAMETERS = {
    "suffix": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}", re.ASCII), "letters, digits, _ and -"),
    "output_ext": (re.compile(r"\.?(fits|asdf|ecsv|json)", re.ASCII), '".fits", ".asdf", ".ecsv" or ".json"'),
}


def validate_steps(recipe: Recipe, workdir: Path | None = None) -> None:
    """Check every ``<stage>.steps.<step>.<param>`` against the jwst step's spec and the appliance's policy.

    Imports ``jwst.pipeline`` (call it after the CRDS environment is set).
    Checks, in file order, that the step belongs to the stage's pipeline, that
    the parameter is in the step's stpipe spec (which includes the generic
    Step parameters and ``override_<reftype>``), that the recipe may set it
    (:data:`REFUSED_STEP_PARAMETERS`), that the value has the spec's type —
    strictly: a string is not a float here, although configobj would convert
    it, and NaN is no number — and meets its range or options, and that a file
    it names exists inside the recipe's directory or ``workdir``.  Raises
    :class:`RecipeError` at the first problem.
    """
    for stage in STAGES:
        steps = recipe.stages[stage].steps
        if not steps:
            continue
        specs, classes = _pipeline_specs(stage)
        for step, params in steps.items():
            if step not in specs:
                raise _error(recipe, (stage, "steps", step),
                             "unknown step" + _choices(step, specs, f"{stage} steps"))
            for param, value in params.items():
                key = (stage, "steps", step, param)
                if param not in specs[step]:
                    raise _error(recipe, key, f"unknown parameter of {step}"
                                 + _choices(param, specs[step], "parameters", owner=classes[step]))
                if param in REFUSED_STEP_PARAMETERS:
                    raise _error(recipe, key, f"a recipe may not set {param}: it {REFUSED_STEP_PARAMETERS[param]}")
                reason = _check_value(specs[step][param], value) or _check_policy(recipe, param, value, workdir)
                if reason:
                    raise _error(recipe, key, reason)


def _check_policy(recipe: Recipe, param: str, value: Any, workdir: Path | None) -> str | None:
    """Why a well-typed value is still refused: a file name part, or a file outside the allowed roots."""
    if param in NAME_PARAMETERS and isinstance(value, str):
        pattern, expected = NAME_PARAMETERS[param]
        if not pattern.fullmatch(value):
            return f"expected {expected}, got {_describe(value)}"
    if not _reads_path(param):
        return None
    for text in ([value] if isinstance(value, str) else value if isinstance(value, list) else []):
        path = _read_path(recipe, param, text)
        if path is None:
            continue
        noun = "reference file" if param.startswith("override_") else "file"
        if not path.exists():
            return f"no such {noun}: {_q(text)} (looked for {path})"
        if not path.is_file():
            return f"not a regular file: {_q(text)}"
        roots = [recipe.path.parent.absolute()] + ([Path(workdir).absolute()] if workdir is not None else [])
        if not any(inside(path, root) for root in roots):
            return (f"{_q(text)} lies outside the recipe's directory {recipe.path.parent.absolute()}"
                    + (" and the workdir" if workdir is not None else "") + "; a recipe may only name files there")
    return None


def _reads_path(param: str) -> bool:
    return param.startswith("override_") or param in READ_PATH_PARAMETERS


def step_parameters(recipe: Recipe, stage: str) -> dict[str, dict[str, Any]]:
    """The ``steps=`` argument for the stage's ``Pipeline.call``: a deep copy of
    ``recipe.stages[stage].steps`` with relative paths of files the steps read
    (``override_<reftype>``, ``abs_refcat``...) made absolute against the recipe's
    directory (stpipe would take them relative to the working directory)."""
    out = {}
    for step, params in recipe.stages[stage].steps.items():
        out[step] = {}
        for param, value in params.items():
            if _reads_path(param) and isinstance(value, (str, list)):
                texts = [value] if isinstance(value, str) else value
                paths = [str(_read_path(recipe, param, t) or t) if isinstance(t, str) else t for t in texts]
                value = paths[0] if isinstance(value, str) else paths
            out[step][param] = json.loads(json.dumps(value))
    return out


# ------------------------------------------------------------- structure (pure)


def _build(doc: dict, text: str, path: Path) -> Recipe:
    schema = _schema(doc)
    _check_keys(doc, (), _TOP_KEYS)
    meta = _required_table(doc, "recipe")
    _check_keys(meta, ("recipe",), ("name", "description"))
    name = _get(meta, ("recipe",), "name", str, required=True)
    if not name.strip():
        raise _Invalid(("recipe", "name"), "must not be empty")
    description = _get(meta, ("recipe",), "description", str, default="")

    # Checked in the order a recipe is usually written, so the first error is the topmost.
    environment = _environment(_required_table(doc, "environment"))
    simulate, local, mast = _inputs(_required_table(doc, "inputs"))
    stages = MappingProxyType({s: _stage(doc, s) for s in STAGES})
    recipe = Recipe(
        path=path,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        schema=schema,
        name=name,
        description=description,
        environment=environment,
        simulate=simulate,
        local=local,
        mast=mast,
        stages=stages,
        postprocess=_postprocess(doc),
    )
    _check_unreachable_stages(recipe)
    return recipe


def _schema(doc: dict) -> int:
    if "schema" not in doc:
        raise _Invalid(("schema",), f"missing required key; put schema = {SCHEMA_VERSION} at the top of the recipe")
    value = doc["schema"]
    _expect(value, int, ("schema",))
    if value != SCHEMA_VERSION:
        raise _Invalid(("schema",), f"schema {value} is not supported; this version of the appliance reads schema = {SCHEMA_VERSION}")
    return value


def _environment(table: dict) -> Environment:
    key = ("environment",)
    _check_keys(table, key, ("jwst", "crds_context", "use_step_pars"))
    jwst = _get(table, key, "jwst", str, required=True, hint='such as "3.0.0"')
    if _version(jwst) is None:
        raise _Invalid((*key, "jwst"), f'expected a version such as "3.0.0", got {_show(jwst)}')
    context = _get(table, key, "crds_context", str, required=True, hint='such as "jwst_1584.pmap"')
    if not _CRDS_CONTEXT.fullmatch(context):
        raise _Invalid((*key, "crds_context"), f'expected a CRDS context such as "jwst_1584.pmap", got {_show(context)}')
    use_step_pars = _get(table, key, "use_step_pars", bool, default=True)
    return Environment(jwst=jwst, crds_context=context, use_step_pars=use_step_pars)


def _inputs(table: dict) -> tuple[dict | None, tuple[LocalSpec, ...], MastQuery | None]:
    _check_keys(table, ("inputs",), INPUT_KINDS)
    given = [k for k in INPUT_KINDS if k in table]
    if len(given) != 1:
        got = ", ".join(given) if given else "none"
        raise _Invalid(("inputs",), f"expected exactly one of {', '.join(sorted(INPUT_KINDS))}; got {got}")
    kind = given[0]
    if kind == "simulate":
        return _simulate(table["simulate"]), (), None
    if kind == "local":
        return None, _local(table["local"]), None
    return None, (), _mast(table["mast"])


def _simulate(value: Any) -> dict:
    key = ("inputs", "simulate")
    _expect(value, dict, key)
    names = _simulate_fields()
    _check_keys(value, key, names)
    return {k: _freeze(v) for k, v in value.items()}


def _simulate_fields() -> tuple[str, ...]:
    """Field names of ``appliance.simulate.SimParams``, or a fallback until it exists.

    ``appliance.simulate`` must stay importable without importing jwst, since
    :func:`parse_recipe` runs before the CRDS environment is set.
    """
    try:
        from appliance.simulate import SimParams
    except ImportError:
        return _FALLBACK_SIM_FIELDS
    return tuple(f.name for f in dataclasses.fields(SimParams))


def _local(value: Any) -> tuple[LocalSpec, ...]:
    key = ("inputs", "local")
    _expect(value, list, key)
    if not value:
        raise _Invalid(key, "expected at least one file or glob")
    specs = tuple(_local_spec(item, (*key, i)) for i, item in enumerate(value))
    first = specs[0].kind
    for i, spec in enumerate(specs):
        if spec.kind != first:
            raise _Invalid((*key, i), f"is a _{spec.kind}.fits input but {_dotted((*key, 0))} is _{first}.fits; "
                           "all local inputs must be the same kind")
    return specs


def _local_spec(item: Any, key: tuple) -> LocalSpec:
    if isinstance(item, dict):
        _check_keys(item, key, ("path", "sha256"))
        path = _get(item, key, "path", str, required=True)
        sha = _get(item, key, "sha256", str, default=None)
        if sha is not None:
            sha = sha.lower()
            if not _SHA256.fullmatch(sha):
                raise _Invalid((*key, "sha256"), f"expected 64 hexadecimal digits, got {_show(item['sha256'])}")
        path_key = (*key, "path")
    elif isinstance(item, str):
        path, sha, path_key = item, None, key
    else:
        raise _Invalid(key, f"expected a path string or a table {{path = ..., sha256 = ...}}, got {_describe(item)}")
    if not path.strip():
        raise _Invalid(path_key, "expected a path, got an empty string")
    if _local_kind(path) is None:
        endings = ", ".join(LOCAL_SUFFIXES)
        raise _Invalid(path_key, f"{_show(path)} must end with one of {endings}")
    spec = LocalSpec(path=path, sha256=sha)
    if sha is not None and spec.is_glob:
        raise _Invalid((*key, "sha256"), f"a checksum pins one file, but {_show(path)} is a glob")
    return spec


def _local_kind(path: str) -> str | None:
    for suffix, kind in LOCAL_SUFFIXES.items():
        if path.endswith(suffix):
            return kind
    return None


def _mast(value: Any) -> MastQuery:
    key = ("inputs", "mast")
    _expect(value, dict, key)
    _check_keys(value, key, ("program", "observation", "visit", "instrument", "filters", "product", "calib_level", "files"))
    program = _digits(value, key, "program", 5, "02732", required=True)
    observation = _digits(value, key, "observation", 3, "002", required=True)
    visit = _digits(value, key, "visit", 3, "001", required=False)
    instrument = _get(value, key, "instrument", str, required=True, hint='such as "MIRI/IMAGE"')
    if not re.fullmatch(r"[A-Za-z]+/[A-Za-z0-9_]+", instrument):
        raise _Invalid((*key, "instrument"), f'expected INSTRUMENT/MODE such as "MIRI/IMAGE", got {_show(instrument)}')
    filters = _string_list(value, key, "filters")
    product = _get(value, key, "product", str, required=True, hint='"uncal", "rate" or "cal"')
    if product not in MAST_PRODUCTS:
        raise _Invalid((*key, "product"), f'expected one of "uncal", "rate", "cal", got {_show(product)}')
    calib_level = _get(value, key, "calib_level", int, default=None)
    if calib_level is not None and calib_level not in (1, 2, 3):
        raise _Invalid((*key, "calib_level"), f"expected 1, 2 or 3, got {calib_level}")
    files = _string_list(value, key, "files")
    for i, name in enumerate(files):
        if "/" in name or "\\" in name:
            raise _Invalid((*key, "files", i), f"expected a product file name, not a path: {_show(name)}")
        if not name.endswith(f"_{product}.fits"):
            raise _Invalid((*key, "files", i), f"{_show(name)} is not a _{product}.fits file, but product = {_show(product)}")
    return MastQuery(program=program, observation=observation, visit=visit, instrument=instrument,
                     filters=filters, product=product, calib_level=calib_level, files=files)


def _digits(table: dict, key: tuple, name: str, n: int, example: str, required: bool) -> str | None:
    hint = f'a string of {n} digits such as "{example}"'
    if name not in table:
        if required:
            raise _Invalid((*key, name), f"missing required key ({hint})")
        return None
    value = table[name]
    if not isinstance(value, str) or not re.fullmatch(rf"[0-9]{{{n}}}", value, re.ASCII):
        raise _Invalid((*key, name), f"expected {hint}, got {_describe(value)}")
    return value


def _string_list(table: dict, key: tuple, name: str) -> tuple[str, ...]:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid((*key, name), f"expected an array of strings, got {_describe(value)}")
    return tuple(value)


def _stage(doc: dict, stage: str) -> StageConfig:
    table = doc.get(stage, {})
    _expect(table, dict, (stage,))
    for name in table:
        if name not in ("skip", "steps"):
            raise _Invalid((stage, name), "unknown key; a stage takes only skip and steps "
                           f"(set step parameters as {stage}.steps.<step>.<parameter>; "
                           "pipeline-level parameters are not supported in schema 1)")
    skip = _get(table, (stage,), "skip", bool, default=False)
    steps_table = table.get("steps", {})
    _expect(steps_table, dict, (stage, "steps"))
    steps = {}
    for step, params in steps_table.items():
        _expect(params, dict, (stage, "steps", step))
        steps[step] = dict(params)
    return StageConfig(skip=skip, steps=steps)


def _check_unreachable_stages(recipe: Recipe) -> None:
    """Step parameters for a stage that the inputs bypass are surely a mistake."""
    start = first_stage(recipe)
    for stage in STAGES[: STAGES.index(start)]:
        cfg = recipe.stages[stage]
        if cfg.steps and not cfg.skip:
            raise _Invalid((stage, "steps"), f"the inputs are {_input_kind_label(recipe)}, so the reduction starts at "
                           f"{start} and {stage} never runs; remove [{stage}] or set {stage}.skip = true")


def _input_kind_label(recipe: Recipe) -> str:
    kind = recipe.mast.product if recipe.input_kind == "mast" else recipe.local[0].kind
    return f"_{kind}.fits files"


def _postprocess(doc: dict) -> tuple[PostOp, ...]:
    value = doc.get("postprocess", [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise _Invalid(("postprocess",), f"expected an array of tables ([[postprocess]]), got {_describe(value)}")
    ops = []
    valid = ", ".join(sorted(OPERATIONS))
    for i, table in enumerate(value):
        key = ("postprocess", i)
        if "op" not in table:
            raise _Invalid((*key, "op"), f"missing required key; valid operations: {valid}")
        op = table["op"]
        _expect(op, str, (*key, "op"))
        if op not in OPERATIONS:
            raise _Invalid((*key, "op"), f"unknown operation {_show(op)}" + _choices(op, OPERATIONS, "operations"))
        allowed = OPERATIONS[op]
        for name in table:
            if name != "op" and name not in allowed:
                if allowed:
                    reason = f"unknown parameter of {op}" + _choices(name, allowed, "parameters")
                else:
                    reason = f"unknown parameter; {op} takes no parameters"
                raise _Invalid((*key, name), reason)
            if name != "op":
                expected = check_parameter(op, name, table[name])
                if expected:
                    raise _Invalid((*key, name), f"{expected}, got {_describe(table[name])}")
        ops.append(PostOp(op=op, params={k: v for k, v in table.items() if k != "op"}))
    return tuple(ops)


# ------------------------------------------------------------- small helpers


def _required_table(doc: dict, name: str) -> dict:
    if name not in doc:
        raise _Invalid((name,), f"missing required table [{name}]")
    _expect(doc[name], dict, (name,))
    return doc[name]


def _check_keys(table: dict, key: tuple, allowed) -> None:
    for name in table:
        if name not in allowed:
            raise _Invalid((*key, name), "unknown key" + _choices(name, allowed, "allowed keys", plain=True))


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
               list: "an array", dict: "a table"}


def _get(table: dict, key: tuple, name: str, kind: type, *, required: bool = False,
         default: Any = None, hint: str = "") -> Any:
    """``table[name]`` checked to be of TOML type ``kind``; ``default`` when absent."""
    if name not in table:
        if required:
            expected = _TYPE_NAMES[kind] + (f" {hint}" if hint else "")
            raise _Invalid((*key, name), f"missing required key ({expected})")
        return default
    _expect(table[name], kind, (*key, name))
    return table[name]


def _expect(value: Any, kind: type, key: tuple) -> None:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise _Invalid(key, f"expected {_TYPE_NAMES[kind]}, got {_describe(value)}")


def _freeze(value: Any) -> Any:
    """Lists become tuples (recursively) so simulation parameters match SimParams' types."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _choices(name: str, valid, noun: str, *, owner: str | None = None, plain: bool = False, limit: int = 20) -> str:
    """The tail of an 'unknown X' message: a did-you-mean and the valid names.

    Long lists (a step has ~50 parameters) are cut to the closest matches plus
    the count, so the message stays one readable line.
    """
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    label = noun if plain else f"valid {noun}"
    if len(valid) <= limit or not close:
        return f"{hint}; {label}: {', '.join(valid)}"
    if owner:
        return f"{hint}; {len(valid)} {noun} in all, list them with: strun {owner} --help"
    return f"{hint}; {len(valid)} {noun} in all"


def _dotted(key: tuple) -> str:
    """``("inputs", "local", 3)`` -> ``inputs.local[3]``; odd keys quoted as TOML would."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            out += f".{text}" if out else text
    return out


def _show(value: Any) -> str:
    """A value as TOML would write it, cut short for one-line messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{_dotted((k,))} = {_show(v)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: Any) -> str:
    """``integer 5``, ``string "x"``, ``a table``: the TOML type and the value."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    else:
        kind = type(value).__name__  # datetime, date, time
    return f"{kind} {_show(value)}"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _toml_position(exc: tomllib.TOMLDecodeError) -> tuple[str, str]:
    """Split tomllib's 'Message (at line L, column C)' into position and message."""
    text = str(exc)
    match = _TOML_POSITION.match(text)
    if not match:
        return "invalid TOML", text
    if match["line"]:
        return f"line {match['line']}, column {match['col']}", match["msg"]
    return "end of file", match["msg"]


def _error(recipe: Recipe, key: tuple, reason: str) -> RecipeError:
    return RecipeError(recipe.path, _dotted(key), reason)


def _version(text: str):
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # packaging ships with every jwst install; be lenient without it
        return text if re.fullmatch(r"[0-9]+(\.[0-9]+)*\S*", text, re.ASCII) else None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _same_version(a: str, b: str) -> bool:
    va, vb = _version(a), _version(b)
    if va is None or vb is None:
        return a == b
    return va == vb


def _read_path(recipe: Recipe, param: str, value: str) -> Path | None:
    """The file a path parameter names, or None for "none" (``""``, ``"N/A"``, a catalog name)."""
    if value.strip() in ("", "N/A", "None") or (param == "abs_refcat" and value.strip().upper() in REFCAT_NAMES):
        return None
    path = Path(value)
    if not path.is_absolute():
        path = recipe.path.parent.absolute() / path
    return Path(os.path.normpath(path))


def _expand_local(recipe: Recipe, key: tuple, spec: LocalSpec, base: Path) -> list[Path]:
    pattern = Path(spec.path).expanduser()
    if not pattern.is_absolute():
        pattern = base / pattern
    pattern = Path(os.path.normpath(pattern))
    if spec.is_glob:
        matches = sorted(Path(m) for m in glob.glob(str(pattern), recursive=True) if os.path.isfile(m))
        if not matches:
            raise _error(recipe, key, f"{_q(spec.path)} matches no files (looked in {pattern.parent})")
        return matches
    if not pattern.exists():
        raise _error(recipe, key, f"no such file: {_q(spec.path)} (looked for {pattern})")
    if not pattern.is_file():
        raise _error(recipe, key, f"not a regular file: {_q(spec.path)}")
    return [pattern]


# ------------------------------------------------------------ step specs (jwst)


@lru_cache(maxsize=None)
def _pipeline_specs(stage: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """``({step: {param: configobj check}}, {step: strun name})`` for a stage's pipeline.

    Uses the pipeline's own ``load_spec_file``, which merges each step's spec
    with stpipe's generic Step parameters and adds ``override_<reftype>``.
    """
    pipeline = PIPELINE_STAGES[stage].pipeline_class()
    spec = pipeline.load_spec_file()["steps"]
    specs = {
        step: {p: str(c) for p, c in spec[step].items() if p not in _STRUCTURAL_STEP_KEYS}
        for step in pipeline.step_defs
    }
    classes = {step: cls.class_alias or f"{cls.__module__}.{cls.__name__}" for step, cls in pipeline.step_defs.items()}
    return specs, classes


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _list_of(pred):
    return lambda v: isinstance(v, list) and all(pred(x) for x in v)


_is_str = lambda v: isinstance(v, str)  # noqa: E731

#: configobj check name -> (what a TOML value must be, test).  Stricter than
#: configobj, which converts strings: in TOML a number is written as a number.
_STRICT_TYPES = {
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
    "integer": ("an integer", _is_int),
    "float": ("a float", _is_number),
    "string": ("a string", _is_str),
    "option": ("a string", _is_str),
    "input_file": ("a path string", _is_str),
    "output_file": ("a path string", _is_str),
    "is_string_or_datamodel": ("a path string", _is_str),
    "ip_addr": ("a string", _is_str),
    "list": ("an array", _list_of(lambda x: not isinstance(x, dict))),
    "tuple": ("an array", _list_of(lambda x: not isinstance(x, dict))),
    "mixed_list": ("an array", _list_of(lambda x: not isinstance(x, dict))),
    "force_list": ("a string or an array", lambda v: isinstance(v, str) or isinstance(v, list)),
    "int_list": ("an array of integers", _list_of(_is_int)),
    "float_list": ("an array of floats", _list_of(_is_number)),
    "bool_list": ("an array of booleans", _list_of(lambda x: isinstance(x, bool))),
    "string_list": ("an array of strings", _list_of(_is_str)),
    "is_datamodel": ("a data model, which a recipe cannot give", lambda v: False),
}


@lru_cache(maxsize=1)
def _validator():
    """configobj's Validator with stpipe's extra checks, minus their side effects.

    stpipe's ``input_file``/``output_file`` checks test for and create files
    relative to the working directory; a recipe check must do neither.
    """
    from configobj.validate import Validator, VdtTypeError

    def path_check(value, *args, **kwargs):
        if not isinstance(value, str):
            raise VdtTypeError(value)
        return value

    def never(value, *args, **kwargs):
        raise VdtTypeError(value)

    validator = Validator()
    for name in ("input_file", "output_file", "is_string_or_datamodel"):
        validator.functions[name] = path_check
    validator.functions["is_datamodel"] = never
    return validator


def _check_value(check: str, value: Any) -> str | None:
    """Why ``value`` does not satisfy the configobj ``check`` string, or None."""
    from configobj.validate import ValidateError, VdtUnknownCheckError

    match = re.match(r"\s*(\w+)", check)
    fun = match.group(1) if match else ""
    if isinstance(value, dict):
        return f"expected {_STRICT_TYPES.get(fun, ('a value',))[0]}, got a table"
    if fun in _STRICT_TYPES:
        expected, ok = _STRICT_TYPES[fun]
        if not ok(value):
            return f"expected {expected}, got {_describe(value)}"
    if _has_nan(value):  # NaN passes every min/max test and then silently disables what it sets
        return f"expected a number, got {_describe(value)} (NaN is not accepted)"
    validator = _validator()
    try:
        validator.check(check, value)
    except VdtUnknownCheckError:
        return None  # a check this appliance does not know; stpipe will apply it at run time
    except ValidateError as exc:
        if fun == "option":
            options = [o for o in validator._parse_with_caching(check)[1] if o not in (None, "None")]
            return f"expected one of {', '.join(_q(str(o)) for o in options)}, got {_describe(value)}"
        reason = str(exc).rstrip(".").replace('"', "")
        return f"{reason} (spec: {_spec_text(check)})"
    return None


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    return isinstance(value, list) and any(_has_nan(v) for v in value)


def _spec_text(check: str) -> str:
    """The check without its default, e.g. ``float(min=0)``, for messages."""
    text = re.sub(r",?\s*default=(?:'[^']*'|\"[^\"]*\"|list\(\)|[^,)]*)", "", check)
    return text.replace("(,", "(").replace(" ", "")
