"""Step parameters against jwst's own specs, and what a recipe may not set (``docs/security.md``).

Imports ``jwst.pipeline``: call it with the CRDS environment applied.  Each
``<stage>.steps.<step>.<param>`` must name a step of the stage's pipeline and
a parameter of its stpipe spec, have the spec's type strictly (a string is
not a float here, although configobj would convert it; NaN is no number),
meet its range or options, and, when it names a file, name one inside the
recipe's directory or the workdir.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from appliance.pipelines import STAGE_ORDER
from appliance.pipelines import STAGES as PIPELINE_STAGES
from appliance.recipe.messages import choices, describe, quote
from appliance.recipe.model import Recipe, recipe_error
from appliance.safety import inside

#: Keys of a pipeline's per-step spec that describe the pipeline's structure
#: (an external config file, the class to load) rather than a step parameter.
_STRUCTURAL_STEP_KEYS = frozenset({"config_file", "name", "class"})


#: Step parameters a recipe may not set, and why (``docs/security.md``).  stpipe runs a
#: hook that is not an importable step as a shell command; a parameter file or class
#: could bring hooks and paths in by another door; the others name where a step
#: writes, which is the plan's to decide, inside the workdir.  Checked on every run,
#: also when a record spares the check against jwst's specs.
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
    "config_file": "names an stpipe parameter file, which could set any of these; set the parameters themselves",
    "class": "names the Python class stpipe loads for the step; the steps are the pipeline's own",
    "name": "renames the step, and with it where stpipe looks up its parameters",
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


def validate_steps(recipe: Recipe, workdir: Path | None = None, *, specs: bool = True) -> None:
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

    ``specs=False`` checks the policy alone, without jwst: for a recipe whose
    specs the same jwst already accepted (a re-run), the policy still holds
    the files a step reads to the rules.
    """
    for stage in STAGE_ORDER:
        steps = recipe.stages[stage].steps
        if not steps:
            continue
        step_specs, classes = _pipeline_specs(stage) if specs else ({}, {})
        for step, params in steps.items():
            if specs and step not in step_specs:
                raise recipe_error(recipe, (stage, "steps", step),
                                   "unknown step" + choices(step, step_specs, f"{stage} steps"))
            for param, value in params.items():
                key = (stage, "steps", step, param)
                if param in REFUSED_STEP_PARAMETERS:
                    raise recipe_error(recipe, key, f"a recipe may not set {param}: it {REFUSED_STEP_PARAMETERS[param]}")
                if specs and param not in step_specs[step]:
                    raise recipe_error(recipe, key, f"unknown parameter of {step}"
                                       + choices(param, step_specs[step], "parameters", owner=classes[step]))
                reason = ((_check_value(step_specs[step][param], value) if specs else None)
                          or policy_problem(recipe, param, value, workdir))
                if reason:
                    raise recipe_error(recipe, key, reason)


def unknown_step_parameters(recipe: Recipe, jwst_version: str) -> list[str]:
    """Every step and step parameter of the recipe that the installed jwst does not have, one line each,
    with the closest existing name, or the new name when jwst renamed it (:mod:`appliance.recipe.renames`).

    Imports ``jwst.pipeline`` (call it with the CRDS environment applied).  Where
    :func:`validate_steps` stops at the first problem, this lists them all: what
    ``check`` shows for a recipe written for another release.
    """
    import difflib

    from appliance.recipe.messages import dotted
    from appliance.recipe.renames import rename_of

    def closest(name, valid):
        found = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.4)
        return f"; closest: {found[0]}" if found else ""

    lines = []
    for stage in STAGE_ORDER:
        steps = recipe.stages[stage].steps
        if not steps:
            continue
        step_specs, _ = _pipeline_specs(stage)
        for step, params in steps.items():
            if step not in step_specs:
                renamed = rename_of(stage, step, None, jwst_version)
                why = (f"renamed {renamed.new_name} in jwst {renamed.release} (run.py upgrade rewrites it)" if renamed
                       else f"no such {stage} step in jwst {jwst_version}{closest(step, step_specs)}")
                lines.append(f"{dotted((stage, 'steps', step))}: {why}")
                continue
            for param in params:
                if param in step_specs[step]:
                    continue
                renamed = rename_of(stage, step, param, jwst_version)
                why = (f"renamed {renamed.new_name} in jwst {renamed.release} (run.py upgrade rewrites it)" if renamed
                       else f"not a parameter of {step} in jwst {jwst_version}{closest(param, step_specs[step])}")
                lines.append(f"{dotted((stage, 'steps', step, param))}: {why}")
    return lines


def policy_problem(recipe: Recipe, param: str, value: Any, workdir: Path | None) -> str | None:
    """Why a well-typed value is still refused (a refused parameter, a file name part that is no plain word,
    a file outside the allowed roots), or None; also for values read from a record (``export``)."""
    if param in REFUSED_STEP_PARAMETERS:
        return f"a recipe may not set {param}: it {REFUSED_STEP_PARAMETERS[param]}"
    if param in NAME_PARAMETERS and isinstance(value, str):
        pattern, expected = NAME_PARAMETERS[param]
        if not pattern.fullmatch(value):
            return f"expected {expected}, got {describe(value)}"
    if not _reads_path(param):
        return None
    for text in ([value] if isinstance(value, str) else value if isinstance(value, list) else []):
        path = _read_path(recipe, param, text)
        if path is None:
            continue
        noun = "reference file" if param.startswith("override_") else "file"
        if not path.exists():
            return f"no such {noun}: {quote(text)} (looked for {path})"
        if not path.is_file():
            return f"not a regular file: {quote(text)}"
        roots = [recipe.path.parent.absolute()] + ([Path(workdir).absolute()] if workdir is not None else [])
        if not any(inside(path, root) for root in roots):
            return (f"{quote(text)} lies outside the recipe's directory {recipe.path.parent.absolute()}"
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


def _read_path(recipe: Recipe, param: str, value: str) -> Path | None:
    """The file a path parameter names, or None for "none" (``""``, ``"N/A"``, a catalog name)."""
    if value.strip() in ("", "N/A", "None") or (param == "abs_refcat" and value.strip().upper() in REFCAT_NAMES):
        return None
    path = Path(value)
    if not path.is_absolute():
        path = recipe.path.parent.absolute() / path
    return Path(os.path.normpath(path))


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
            return f"expected {expected}, got {describe(value)}"
    if _has_nan(value):  # NaN passes every min/max test and then silently disables what it sets
        return f"expected a number, got {describe(value)} (NaN is not accepted)"
    validator = _validator()
    try:
        validator.check(check, value)
    except VdtUnknownCheckError:
        return None  # a check this appliance does not know; stpipe will apply it at run time
    except ValidateError as exc:
        if fun == "option":
            options = [o for o in validator._parse_with_caching(check)[1] if o not in (None, "None")]
            return f"expected one of {', '.join(quote(str(o)) for o in options)}, got {describe(value)}"
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
