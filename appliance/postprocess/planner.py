"""Post-processing operations → tasks of the plan, after the stage tasks whose products they read.

Each registered operation (:mod:`appliance.postprocess.registry`) names the
function here that plans it; ``report`` is planned last, after every other
task.  The checks that need no exposures run before any work
(:func:`check_recipe`); an operation whose input stage does not run is a
one-line error naming ``postprocess[N].op``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from appliance.files import file_sha256
from appliance.graph import Task
from appliance.postprocess.registry import REGISTRY, resolved_params
from appliance.recipe import RecipeError, stages_to_run
from appliance.safety import inside, is_name, printable
from appliance.workdir import POSTPROCESS_DIR



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
            continue  # planned last, after every other task
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
        out += planner(op)(recipe, params, products, list(tasks) + out)
    if "report" in seen and tasks is not None:
        out += planner("report")(recipe, {}, products, list(tasks) + out)
    return out


def planner(op: str):
    """The function of this module that plans ``op`` (named by its registry record)."""
    return globals()[REGISTRY[op].planner]


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
        if not is_name(path.name.split(".")[0]):  # it names the product: <stem>_refcat.ecsv
            fail(i, "table", f"expected a file named with letters, digits, _ . + - only, got {printable(repr(path.name))}")
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


def plan_background(recipe, params, products, earlier) -> list[Task]:
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


def _per_mosaic(op: str, params, products, ending: str, *, with_model: bool) -> list[Task]:
    """One task per filter's mosaic, writing ``postprocess/<product>_<ending>``.

    ``with_model``: the task also reads the background model beside a
    background-subtracted mosaic (its rms), when that is its input.
    """
    tasks = []
    for filt, (path, _) in products.mosaics.items():
        inputs, deps = _mosaic_input(params, products, filt)
        out = f"{POSTPROCESS_DIR}/{_stem(path, 'i2d')}_{ending}"
        tasks.append(Task(f"postprocess:{op}:{filt}", "postprocess", {"op": op, "filter": filt, **params},
                          inputs if with_model else inputs[:1], (out,), deps))
    return tasks


def plan_catalog(recipe, params, products, earlier) -> list[Task]:
    return _per_mosaic("catalog", params, products, "phot.ecsv", with_model=True)


def plan_preview(recipe, params, products, earlier) -> list[Task]:
    tasks = _per_mosaic("preview", params, products, "preview.png", with_model=False)
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


def plan_astrometric(recipe, params, products, earlier) -> list[Task]:
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


def plan_report(recipe, params, products, earlier) -> list[Task]:
    """The report reads every product of every earlier task, so it waits for all of them."""
    inputs = tuple(dict.fromkeys(p for t in earlier for p in t.outputs))
    params = {"op": "report", "recipe_name": recipe.name, "recipe_description": recipe.description,
              "recipe_file": Path(recipe.path).name, "recipe_text": recipe.text}
    return [Task("postprocess:report", "postprocess", params, inputs, (f"{POSTPROCESS_DIR}/report.html",),
                 tuple(t.id for t in earlier))]
