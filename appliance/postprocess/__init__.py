"""Registered post-processing operations: the only code a recipe's ``[[postprocess]]`` can run.

The MIRI reference workflow ends with advice that the pipeline's own stage-3
steps do not always serve MIRI well: align to a custom astrometric catalog
(Gaia has few mid-infrared matches), skip skymatch and outlier_detection, and
subtract the background and measure sources with photutils afterwards.  Those
are the operations here.  Each one declares its parameters (name, type, range,
default), what it reads and what it writes; :mod:`appliance.recipe` checks a
recipe against these declarations before anything runs, :func:`plan_tasks`
turns them into tasks of the plan, and :func:`run_task` runs one.

This module stays light (no photutils, no matplotlib): the recipe parser
imports it.  The operations live one per module beside it and are imported
only when a task runs.  ``docs/postprocess.md`` documents them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from appliance.files import file_sha256
from appliance.safety import inside
from appliance.workdir import POSTPROCESS_DIR

# ------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Param:
    """One parameter: its TOML type, its range or choices, and its default.

    ``kind`` is ``integer``, ``float``, ``boolean``, ``string`` or ``choice``
    (a string from ``choices``).  A default of ``None`` means "decided by the
    plan" (documented per parameter).
    """

    kind: str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression a string must match
    pattern_hint: str = ""

    def expected(self) -> str:
        """What a valid value is, as the tail of 'expected ...'."""
        if self.kind == "choice":
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.kind == "string":
            return "a string" + (f" {self.pattern_hint}" if self.pattern_hint else "")
        noun = {"integer": "an integer", "float": "a number", "boolean": "a boolean"}[self.kind]
        if self.min is not None and self.max is not None:
            return f"{noun} between {_num(self.min)} and {_num(self.max)}"
        if self.min is not None:
            return f"{noun} {'>' if self.exclusive_min else '≥'} {_num(self.min)}"
        return noun

    def accepts(self, value: Any) -> bool:
        """Strictly by TOML type, as for step parameters: no ``"3"`` for 3, no ``1`` for true."""
        if isinstance(value, bool):
            return self.kind == "boolean"
        if self.kind == "boolean":
            return False
        if self.kind == "integer":
            ok = isinstance(value, int)
        elif self.kind == "float":
            ok = isinstance(value, (int, float)) and value == value  # no nan
        elif self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        else:
            return isinstance(value, str) and bool(value.strip()) and (
                self.pattern is None or re.fullmatch(self.pattern, value) is not None)
        if not ok:
            return False
        if self.min is not None and (value <= self.min if self.exclusive_min else value < self.min):
            return False
        return self.max is None or value <= self.max


@dataclass(frozen=True)
class Operation:
    """A registered operation: what it does, reads and writes, and its parameters."""

    name: str
    summary: str
    reads: str
    writes: str
    params: Mapping[str, Param] = field(default_factory=dict)


_INPUT_MOSAIC = Param("choice", None, 'the image to use: "background" (the background-subtracted mosaic, the '
                      'default when the recipe has a background operation on the mosaics) or "i2d" (the stage-3 '
                      'mosaic as it is)', choices=("background", "i2d"))

REGISTRY: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "background",
            "photutils Background2D: a smooth 2-D background, subtracted",
            "stage-3 mosaics (stage3/<product>_i2d.fits), or stage-2 cal files with input = \"cal\"",
            "postprocess/<name>_bsub.fits (background-subtracted image), postprocess/<name>_bkg.fits (model, rms, mask)",
            {
                "box_size": Param("integer", 32, "box side in pixels over which the background is estimated", min=4, max=4096),
                "filter_size": Param("integer", 3, "median-filter size in boxes applied to the low-resolution map", min=1, max=15),
                "sigma": Param("float", 3.0, "sigma-clipping threshold for the per-box statistics", min=0, exclusive_min=True),
                "mask_sources": Param("boolean", True, "detect sources on a first estimate and mask them (dilated) before the final one"),
                "input": Param("choice", "i2d", '"i2d" (stage-3 mosaics) or "cal" (stage-2 cal files)', choices=("i2d", "cal")),
            },
        ),
        Operation(
            "catalog",
            "photutils segmentation + aperture photometry; fluxes in Jy (for MJy/sr images) and AB magnitudes",
            "the background-subtracted mosaics (or the stage-3 mosaics)",
            "postprocess/<product>_phot.ecsv",
            {
                "threshold": Param("float", 3.0, "detection threshold in units of the background rms", min=0, exclusive_min=True),
                "npixels": Param("integer", 10, "minimum connected pixels of a source", min=1),
                "deblend": Param("boolean", True, "deblend overlapping sources (photutils deblend_sources)"),
                "input": _INPUT_MOSAIC,
            },
        ),
        Operation(
            "preview",
            "PNG previews with WCS axes and a colour bar; a three-colour composite for three filters",
            "the background-subtracted mosaics (or the stage-3 mosaics)",
            "postprocess/<product>_preview.png; postprocess/<prefix>_<f1>-<f2>-<f3>_rgb.png",
            {
                "stretch": Param("choice", "asinh", "astropy.visualization stretch", choices=("asinh", "log", "sqrt", "linear")),
                "composite": Param("boolean", True, "also make a three-colour composite when the recipe has exactly three filters"),
                "input": _INPUT_MOSAIC,
            },
        ),
        Operation(
            "astrometric_catalog",
            "a custom absolute reference catalog (RA, DEC) for tweakreg's abs_refcat in a second image3 pass",
            "one filter's mosaic, or a user table (ECSV or FITS with RA/DEC or sky_centroid columns)",
            "postprocess/<product>_refcat.ecsv (or postprocess/<table>_refcat.ecsv)",
            {
                "filter": Param("string", None, "the filter whose mosaic gives the catalog (default: the shortest wavelength)",
                                pattern=r"[A-Za-z0-9]+", pattern_hint='such as "F770W"'),
                "min_snr": Param("float", 10.0, "keep point-like sources with aperture S/N at least this", min=0, exclusive_min=True),
                "table": Param("string", None, "an ECSV or FITS table of RA/DEC, relative to the recipe's directory",
                               pattern=r".+\.(ecsv|fits|fit|fits\.gz)", pattern_hint="naming an .ecsv or .fits file"),
            },
        ),
        Operation(
            "report",
            "one self-contained HTML page: recipe, environment, step statuses, previews, catalog sizes",
            "every other product of the run",
            "postprocess/report.html",
        ),
    )
}

#: Registered operation name -> the parameter names it accepts (besides ``op``).
OPERATIONS: dict[str, frozenset[str]] = {name: frozenset(op.params) for name, op in REGISTRY.items()}


def registered_names() -> list[str]:
    """The registered operation names, sorted, for error messages and docs."""
    return sorted(OPERATIONS)


def check_parameter(op: str, name: str, value: Any) -> str | None:
    """``None`` if ``value`` is valid for ``op.name``, else the 'expected ...' phrase."""
    spec = REGISTRY[op].params[name]
    return None if spec.accepts(value) else "expected " + spec.expected()


def resolved_params(op: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The given parameters over the defaults; floats as floats."""
    out = {}
    for name, spec in REGISTRY[op].params.items():
        value = given.get(name, spec.default)
        if spec.kind == "float" and value is not None:
            value = float(value)
        out[name] = value
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# ------------------------------------------------------------------- planning



def _filter_key(name: str) -> tuple:
    """Order filters by wavelength: F770W < F1000W < F1500W."""
    m = re.search(r"(\d+)", name)
    return (int(m.group(1)) if m else 1 << 30, name)


@dataclass
class _Products:
    """What the stage tasks will write, read off their declared outputs."""

    mosaics: dict[str, tuple[str, str]]  # filter -> (i2d path, producing task id)
    cals: list[tuple[str, str | None]]  # (cal path, producing task id or None for inputs)


def _products(tasks) -> _Products:
    mosaics = {}
    cals: dict[str, str | None] = {}
    for t in tasks:
        if t.kind == "image3":
            mosaics[t.id.partition(":")[2]] = (t.outputs[0], t.id)
            for p in t.inputs:
                cals.setdefault(p, None)
        elif t.kind == "image2":
            cals[t.outputs[0]] = t.id
    mosaics = dict(sorted(mosaics.items(), key=lambda kv: _filter_key(kv[0])))
    return _Products(mosaics, [(p, cals[p]) for p in sorted(cals) if p.endswith("_cal.fits")])


def _stem(path: str, suffix: str) -> str:
    """``stage3/jw..._f770w_i2d.fits`` -> ``jw..._f770w``."""
    return Path(path).name.removesuffix(f"_{suffix}.fits")


def check_recipe(recipe) -> None:
    """The checks :func:`plan_tasks` makes that need no exposures (cheap; call before any work)."""
    _plan(recipe, None)


def plan_tasks(recipe, tasks: list) -> list:
    """One task per operation and input; ids like ``postprocess:background:F770W``.

    Inputs are the workdir-relative products the stage tasks declare; an
    operation whose input stage does not run is a one-line
    :class:`~appliance.errors.UserError` naming ``postprocess[N].op``.
    """
    return _plan(recipe, list(tasks))


def _plan(recipe, tasks: list | None) -> list:
    from appliance.plan import Task
    from appliance.recipe import RecipeError, stages_to_run

    stages = stages_to_run(recipe)
    products = _products(tasks or [])
    has_cal = "image2" in stages or _starts_with_cal(recipe)
    seen: dict[str, int] = {}
    bkg_on_mosaics = any(p.op == "background" and p.params.get("input", "i2d") == "i2d" for p in recipe.postprocess)
    out: list = []

    def fail(i: int, key: str, reason: str):
        raise RecipeError(recipe.path, f"postprocess[{i}].{key}", reason)

    for i, post in enumerate(recipe.postprocess):
        op = post.op
        if op in seen:
            fail(i, "op", f"{op} is already postprocess[{seen[op]}]; each operation may appear once")
        seen[op] = i
        params = resolved_params(op, post.params)
        if op == "report":
            continue  # planned last, below
        from_table = op == "astrometric_catalog" and params["table"] is not None
        if op == "background" and params["input"] == "cal":
            if not has_cal:
                fail(i, "op", 'background with input = "cal" reads the stage-2 cal files, but image2 does not run in this recipe')
        elif not from_table and "image3" not in stages:
            fail(i, "op", f"{op} reads the stage-3 mosaics, but image3 does not run in this recipe (image3.skip = true)")
        if op in ("catalog", "preview") or op == "astrometric_catalog" and not from_table:
            params["input"] = params.get("input") or ("background" if bkg_on_mosaics else "i2d")
            if params["input"] == "background" and not bkg_on_mosaics:
                fail(i, "input", '"background" needs a background operation on the mosaics (input = "i2d") '
                     'in this recipe; add one or set input = "i2d"')
        if op == "astrometric_catalog":
            _check_astrometric(recipe, i, params, products, tasks is not None, fail)
        if tasks is None:
            continue
        if op == "background" and params["input"] == "cal" and not products.cals:
            fail(i, "op", 'background with input = "cal" has no cal files to read: no image2 or image3 task names any')
        out += _PLANNERS[op](Task, params, products)
    if "report" in seen and tasks is not None:
        earlier = list(tasks) + out
        inputs = tuple(dict.fromkeys(p for t in earlier for p in t.outputs))
        params = {"op": "report", "recipe_name": recipe.name, "recipe_description": recipe.description,
                  "recipe_file": Path(recipe.path).name, "recipe_text": recipe.text}
        out.append(Task("postprocess:report", "postprocess", params, inputs, (f"{POSTPROCESS_DIR}/report.html",),
                        tuple(t.id for t in earlier)))
    return out


def _starts_with_cal(recipe) -> bool:
    if recipe.input_kind == "mast":
        return recipe.mast.product == "cal"
    if recipe.input_kind == "local":
        return bool(recipe.local) and recipe.local[0].kind == "cal"
    return False


def _check_astrometric(recipe, i, params, products, known, fail) -> None:
    if params["table"] is not None:
        if params["filter"] is not None:
            fail(i, "table", "give either table or filter, not both")
        root = Path(recipe.path).absolute().parent
        path = Path(params["table"])
        if not path.is_absolute():
            path = root / path
        if not path.is_file():
            fail(i, "table", f"no such file: \"{params['table']}\" (looked for {path})")
        if not inside(path, root):
            fail(i, "table", f"\"{params['table']}\" lies outside the recipe's directory {root}; "
                 "a recipe may only name files there")
        params["table_path"] = str(path)
        params["table_sha256"] = file_sha256(path)
        return
    if params["filter"] is not None:
        params["filter"] = params["filter"].upper()
        if known and params["filter"] not in products.mosaics:
            have = ", ".join(products.mosaics) or "none"
            fail(i, "filter", f"no mosaic in {params['filter']}; this reduction's filters: {have}")


def _mosaic_input(params, products, filt) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(inputs, deps) of an operation on one filter's mosaic or its background-subtracted version."""
    path, producer = products.mosaics[filt]
    if params.get("input") == "background":
        stem = _stem(path, "i2d")
        return ((f"{POSTPROCESS_DIR}/{stem}_bsub.fits", f"{POSTPROCESS_DIR}/{stem}_bkg.fits"),
                (f"postprocess:background:{filt}",))
    return (path,), (producer,)


def _plan_background(Task, params, products) -> list:
    tasks = []
    if params["input"] == "cal":
        items = [(_stem(p, "cal"), p, (dep,) if dep else ()) for p, dep in products.cals]
    else:
        items = [(filt, path, (dep,)) for filt, (path, dep) in products.mosaics.items()]
    for label, path, deps in items:
        stem = _stem(path, "cal" if params["input"] == "cal" else "i2d")
        outs = (f"{POSTPROCESS_DIR}/{stem}_bsub.fits", f"{POSTPROCESS_DIR}/{stem}_bkg.fits")
        tasks.append(Task(f"postprocess:background:{label}", "postprocess", {"op": "background", **params}, (path,), outs, deps))
    return tasks


def _plan_catalog(Task, params, products) -> list:
    tasks = []
    for filt, (path, _) in products.mosaics.items():
        inputs, deps = _mosaic_input(params, products, filt)
        out = f"{POSTPROCESS_DIR}/{_stem(path, 'i2d')}_phot.ecsv"
        tasks.append(Task(f"postprocess:catalog:{filt}", "postprocess", {"op": "catalog", "filter": filt, **params},
                          inputs, (out,), deps))
    return tasks


def _plan_preview(Task, params, products) -> list:
    tasks = []
    for filt, (path, _) in products.mosaics.items():
        inputs, deps = _mosaic_input(params, products, filt)
        out = f"{POSTPROCESS_DIR}/{_stem(path, 'i2d')}_preview.png"
        tasks.append(Task(f"postprocess:preview:{filt}", "postprocess", {"op": "preview", "filter": filt, **params},
                          inputs[:1], (out,), deps))
    filters = list(products.mosaics)
    if params["composite"] and len(filters) == 3:
        inputs, deps = (), ()
        for filt in filters:  # blue, green, red: shortest to longest wavelength
            i, d = _mosaic_input(params, products, filt)
            inputs, deps = inputs + i[:1], deps + d
        prefix = _stem(products.mosaics[filters[0]][0], "i2d").rpartition("_")[0]
        out = f"{POSTPROCESS_DIR}/{prefix}_{'-'.join(f.lower() for f in filters)}_rgb.png"
        tasks.append(Task("postprocess:preview:rgb", "postprocess",
                          {"op": "preview", "filter": "rgb", "filters": filters, **params}, inputs, (out,), deps))
    return tasks


def _plan_astrometric(Task, params, products) -> list:
    params = dict(params)
    if params["table"] is not None:
        stem = Path(params["table"]).name.split(".")[0]
        return [Task("postprocess:astrometric_catalog:table", "postprocess", {"op": "astrometric_catalog", **params},
                     (), (f"{POSTPROCESS_DIR}/{stem}_refcat.ecsv",), ())]
    filt = params["filter"] or next(iter(products.mosaics))
    params["filter"] = filt
    path = products.mosaics[filt][0]
    inputs, deps = _mosaic_input(params, products, filt)
    return [Task(f"postprocess:astrometric_catalog:{filt}", "postprocess", {"op": "astrometric_catalog", **params},
                 inputs, (f"{POSTPROCESS_DIR}/{_stem(path, 'i2d')}_refcat.ecsv",), deps)]


_PLANNERS = {
    "background": _plan_background,
    "catalog": _plan_catalog,
    "preview": _plan_preview,
    "astrometric_catalog": _plan_astrometric,
}


# ------------------------------------------------------------------- running


def run_task(task, workdir: Path, log_path: Path) -> None:
    """Run one post-processing task; its files go to ``workdir/postprocess/`` atomically."""
    import importlib

    from appliance.postprocess.common import task_log

    op = task.params["op"]
    module = importlib.import_module(f"appliance.postprocess.{_MODULES[op]}")
    (Path(workdir) / POSTPROCESS_DIR).mkdir(parents=True, exist_ok=True)
    with task_log(log_path, task):
        module.run(task, Path(workdir))


_MODULES = {"background": "background", "catalog": "catalog", "preview": "preview",
            "astrometric_catalog": "astrometry", "report": "report"}
