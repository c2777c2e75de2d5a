"""TOML → :class:`~appliance.recipe.model.Recipe`: the structure (tables, keys, types), without jwst.

The CRDS environment must be set before ``jwst`` is imported, and the recipe
decides it, so this pass imports nothing of jwst; :mod:`.steps` checks the
step parameters against jwst's own specs afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any

from appliance.files import text_sha256
from appliance.postprocess.registry import OPERATIONS, check_parameter
from appliance.recipe.messages import TYPE_NAMES, choices, describe, dotted, show
from appliance.pipelines import STAGE_ORDER
from appliance.recipe.model import (
    INPUT_KINDS,
    LOCAL_SUFFIXES,
    MAST_PRODUCTS,
    SCHEMA_VERSION,
    Environment,
    LocalSpec,
    MastQuery,
    PostOp,
    Recipe,
    RecipeError,
    StageConfig,
    first_stage,
    local_kind,
    parse_version,
)
from appliance.safety import RECIPE_SIZE_LIMIT, read_regular_file

_TOP_KEYS = ("schema", "recipe", "environment", "inputs", *STAGE_ORDER, "postprocess")


_SHA256 = re.compile(r"[0-9a-f]{64}")


_VERSION_TEXT = re.compile(r"[0-9A-Za-z.+!-]{1,40}", re.ASCII)  # what packaging accepts, minus whitespace
_CRDS_CONTEXT = re.compile(r"jwst_[0-9]+\.pmap", re.ASCII)


_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$", re.S)


class _Invalid(Exception):
    """Raised inside the pure parsers; :func:`parse_recipe` adds the file name."""

    def __init__(self, key: tuple, reason: str):
        super().__init__(key, reason)
        self.key = key
        self.reason = reason


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
        raise RecipeError(path, dotted(exc.key), exc.reason) from None


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
    stages = MappingProxyType({s: _stage(doc, s) for s in STAGE_ORDER})
    recipe = Recipe(
        path=path,
        text=text,
        sha256=text_sha256(text),
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
    if parse_version(jwst) is None or not _VERSION_TEXT.fullmatch(jwst):
        raise _Invalid((*key, "jwst"), f'expected a version such as "3.0.0", got {show(jwst)}')
    context = _get(table, key, "crds_context", str, required=True, hint='such as "jwst_1584.pmap"')
    if not _CRDS_CONTEXT.fullmatch(context):
        raise _Invalid((*key, "crds_context"), f'expected a CRDS context such as "jwst_1584.pmap", got {show(context)}')
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
    """Field names of ``appliance.simulate.SimParams`` (a light import: jwst loads only when the simulator runs)."""
    from appliance.simulate import SimParams

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
            raise _Invalid((*key, i), f"is a _{spec.kind}.fits input but {dotted((*key, 0))} is _{first}.fits; "
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
                raise _Invalid((*key, "sha256"), f"expected 64 hexadecimal digits, got {show(item['sha256'])}")
        path_key = (*key, "path")
    elif isinstance(item, str):
        path, sha, path_key = item, None, key
    else:
        raise _Invalid(key, f"expected a path string or a table {{path = ..., sha256 = ...}}, got {describe(item)}")
    if not path.strip():
        raise _Invalid(path_key, "expected a path, got an empty string")
    if local_kind(path) is None:
        endings = ", ".join(LOCAL_SUFFIXES)
        raise _Invalid(path_key, f"{show(path)} must end with one of {endings}")
    spec = LocalSpec(path=path, sha256=sha)
    if sha is not None and spec.is_glob:
        raise _Invalid((*key, "sha256"), f"a checksum pins one file, but {show(path)} is a glob")
    return spec


def _mast(value: Any) -> MastQuery:
    key = ("inputs", "mast")
    _expect(value, dict, key)
    _check_keys(value, key, ("program", "observation", "visit", "instrument", "filters", "product", "calib_level", "files",
                             "cloud"))
    program = _digits(value, key, "program", 5, "02732", required=True)
    observation = _digits(value, key, "observation", 3, "002", required=True)
    visit = _digits(value, key, "visit", 3, "001", required=False)
    instrument = _get(value, key, "instrument", str, required=True, hint='such as "MIRI/IMAGE"')
    if not re.fullmatch(r"[A-Za-z]+/[A-Za-z0-9_]+", instrument):
        raise _Invalid((*key, "instrument"), f'expected INSTRUMENT/MODE such as "MIRI/IMAGE", got {show(instrument)}')
    filters = _string_list(value, key, "filters")
    product = _get(value, key, "product", str, required=True, hint='"uncal", "rate" or "cal"')
    if product not in MAST_PRODUCTS:
        raise _Invalid((*key, "product"), f'expected one of "uncal", "rate", "cal", got {show(product)}')
    calib_level = _get(value, key, "calib_level", int, default=None)
    if calib_level is not None and calib_level not in (1, 2, 3):
        raise _Invalid((*key, "calib_level"), f"expected 1, 2 or 3, got {calib_level}")
    files = _string_list(value, key, "files")
    for i, name in enumerate(files):
        if "/" in name or "\\" in name:
            raise _Invalid((*key, "files", i), f"expected a product file name, not a path: {show(name)}")
        if not name.endswith(f"_{product}.fits"):
            raise _Invalid((*key, "files", i), f"{show(name)} is not a _{product}.fits file, but product = {show(product)}")
    cloud = _get(value, key, "cloud", bool, default=False)
    return MastQuery(program=program, observation=observation, visit=visit, instrument=instrument,
                     filters=filters, product=product, calib_level=calib_level, files=files, cloud=cloud)


def _digits(table: dict, key: tuple, name: str, n: int, example: str, required: bool) -> str | None:
    hint = f'a string of {n} digits such as "{example}"'
    if name not in table:
        if required:
            raise _Invalid((*key, name), f"missing required key ({hint})")
        return None
    value = table[name]
    if not isinstance(value, str) or not re.fullmatch(rf"[0-9]{{{n}}}", value, re.ASCII):
        raise _Invalid((*key, name), f"expected {hint}, got {describe(value)}")
    return value


def _string_list(table: dict, key: tuple, name: str) -> tuple[str, ...]:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid((*key, name), f"expected an array of strings, got {describe(value)}")
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
    for stage in STAGE_ORDER[: STAGE_ORDER.index(start)]:
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
        raise _Invalid(("postprocess",), f"expected an array of tables ([[postprocess]]), got {describe(value)}")
    ops = []
    valid = ", ".join(sorted(OPERATIONS))
    for i, table in enumerate(value):
        key = ("postprocess", i)
        if "op" not in table:
            raise _Invalid((*key, "op"), f"missing required key; valid operations: {valid}")
        op = table["op"]
        _expect(op, str, (*key, "op"))
        if op not in OPERATIONS:
            raise _Invalid((*key, "op"), f"unknown operation {show(op)}" + choices(op, OPERATIONS, "operations"))
        allowed = OPERATIONS[op]
        for name in table:
            if name != "op" and name not in allowed:
                if allowed:
                    reason = f"unknown parameter of {op}" + choices(name, allowed, "parameters")
                else:
                    reason = f"unknown parameter; {op} takes no parameters"
                raise _Invalid((*key, name), reason)
            if name != "op":
                expected = check_parameter(op, name, table[name])
                if expected:
                    raise _Invalid((*key, name), f"{expected}, got {describe(table[name])}")
        ops.append(PostOp(op=op, params={k: v for k, v in table.items() if k != "op"}))
    return tuple(ops)


def _required_table(doc: dict, name: str) -> dict:
    if name not in doc:
        raise _Invalid((name,), f"missing required table [{name}]")
    _expect(doc[name], dict, (name,))
    return doc[name]


def _check_keys(table: dict, key: tuple, allowed) -> None:
    for name in table:
        if name not in allowed:
            raise _Invalid((*key, name), "unknown key" + choices(name, allowed, "allowed keys", plain=True))


def _get(table: dict, key: tuple, name: str, kind: type, *, required: bool = False,
         default: Any = None, hint: str = "") -> Any:
    """``table[name]`` checked to be of TOML type ``kind``; ``default`` when absent."""
    if name not in table:
        if required:
            expected = TYPE_NAMES[kind] + (f" {hint}" if hint else "")
            raise _Invalid((*key, name), f"missing required key ({expected})")
        return default
    _expect(table[name], kind, (*key, name))
    return table[name]


def _expect(value: Any, kind: type, key: tuple) -> None:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise _Invalid(key, f"expected {TYPE_NAMES[kind]}, got {describe(value)}")


def _freeze(value: Any) -> Any:
    """Lists become tuples (recursively) so simulation parameters match SimParams' types."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _toml_position(exc: tomllib.TOMLDecodeError) -> tuple[str, str]:
    """Split tomllib's 'Message (at line L, column C)' into position and message."""
    text = str(exc)
    match = _TOML_POSITION.match(text)
    if not match:
        return "invalid TOML", text
    if match["line"]:
        return f"line {match['line']}, column {match['col']}", match["msg"]
    return "end of file", match["msg"]
