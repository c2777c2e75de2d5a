"""Recipe + exposures → the task graph (:mod:`appliance.graph`).

Each task names its kind, its parameters, the workdir-relative files it reads
and the main files it writes, and the tasks it waits for: detector1 per
exposure, image2 per exposure, image3 per filter, then the post-processing
operations (:mod:`appliance.postprocess.planner`).  The exposures come from
their headers (:func:`exposure_from_header`), every value that reaches a file
name checked first.
"""

from __future__ import annotations

from pathlib import Path

from appliance.associations import level3_product_name
from appliance.errors import UserError, short_reason
from appliance.graph import Exposure, Plan, Task
from appliance.pipelines import KIND_FIRST_STAGE, STAGES
from appliance.recipe import Recipe, stages_to_run, step_parameters
from appliance.safety import FILTER, OBSERVATION, PROGRAM, check_name, is_name, printable
from appliance.workdir import INPUT_DIR_OF_KIND, association_name


def product_path(stage: str, name: str) -> str:
    """The workdir path of a stage's main product for ``name`` (an exposure or a level-3 product)."""
    return f"{STAGES[stage].output_dir}/{name}_{STAGES[stage].product_suffix}.fits"


def exposure_from_header(path: Path) -> Exposure:
    """Describe an exposure file from its name and primary header, each value checked.

    The name, FILTER, PROGRAM and OBSERVTN become parts of task ids, log names,
    association and product names, so each must match its real vocabulary
    (:mod:`appliance.safety`); an unreadable or non-FITS file is a one-line
    UserError naming it.
    """
    from astropy.io import fits

    where = printable(path)
    stem = path.name.removesuffix(".fits")
    name, _, kind = stem.rpartition("_")
    if not is_name(name) or kind not in INPUT_DIR_OF_KIND:
        raise UserError(f"{where}: expected an exposure file named <name>_uncal.fits, _rate.fits or _cal.fits, "
                        f"<name> made of letters, digits, _ . + - only")
    try:
        header = fits.getheader(path)
    except Exception as exc:  # noqa: BLE001 - astropy raises OSError, ValueError, TypeError... for non-FITS bytes
        raise UserError(f"{where}: not a readable FITS file ({printable(short_reason(exc, 120))})") from None

    def count(keyword: str) -> int:
        number = header.get(keyword, 0)
        return number if _is_count(number) else 0

    return checked_exposure(Exposure(
        name=name,
        kind=kind,
        filter=str(header.get("FILTER", "")).strip(),
        program=str(header.get("PROGRAM", "")).strip(),
        observation=str(header.get("OBSERVTN", "")).strip(),
        ngroups=count("NGROUPS") if kind == "uncal" else 0,
        nints=count("NINTS"),
        pixels=count("SUBSIZE1") * count("SUBSIZE2") or _pixels_from_size(path, kind, count("NGROUPS"), count("NINTS")),
    ), where)


#: Bytes per pixel of each kind of file, at the least: uncal uint16 ramps (per group and integration),
#: rate and cal five float32 arrays and a DQ array.
_FILE_BYTES_PER_PIXEL = {"uncal": 2, "rate": 24, "cal": 24}


def _pixels_from_size(path: Path, kind: str, ngroups: int, nints: int) -> int:
    """A header without SUBSIZE1/SUBSIZE2 still gets a price: the pixels its file size holds at the most."""
    per_pixel = _FILE_BYTES_PER_PIXEL[kind] * (max(ngroups, 1) * max(nints, 1) if kind == "uncal" else 1)
    return path.stat().st_size // per_pixel


#: Exposure fields that reach file names: (field, header keyword, pattern, what was expected).
NAMED_FIELDS = (
    ("filter", "FILTER", FILTER, 'a filter name such as "F770W" (upper-case letters and digits)'),
    ("program", "PROGRAM", PROGRAM, 'a program number of 5 digits such as "02732"'),
    ("observation", "OBSERVTN", OBSERVATION, 'an observation number of 3 digits such as "002"'),
)


def checked_exposure(exposure: Exposure, where: str) -> Exposure:
    """``exposure`` when every value that reaches a file name or a size matches its vocabulary, else a
    one-line UserError naming ``where`` (a header, the inputs' record, a simulation's parameters)."""
    if not is_name(exposure.name) or exposure.kind not in INPUT_DIR_OF_KIND:
        raise UserError(f"{where}: expected an exposure named <name>_uncal.fits, _rate.fits or _cal.fits, "
                        f"<name> made of letters, digits, _ . + - only, got {printable(repr(exposure.name))}")
    for field, keyword, pattern, expected in NAMED_FIELDS:
        check_name(getattr(exposure, field), pattern, f"{where}: {keyword}", expected)
    for field in ("ngroups", "nints", "pixels"):
        if not (_is_count(getattr(exposure, field)) or getattr(exposure, field) == 0):
            raise UserError(f"{where}: {field}: expected a whole number, got {printable(repr(getattr(exposure, field)))}")
    return exposure


def _is_count(number) -> bool:
    return isinstance(number, int) and not isinstance(number, bool) and number > 0


def build_plan(recipe: Recipe, exposures: list[Exposure]) -> Plan:
    """Compile the recipe over its exposures into the task graph (each exposure checked again, wherever
    it was described: a header, a record, the simulator)."""
    for e in exposures:
        checked_exposure(e, f"{printable(recipe.path)}: inputs: exposure {printable(repr(e.name))}")
    kinds = {e.kind for e in exposures}
    if len(kinds) != 1:
        raise UserError(f"{recipe.path}: inputs: expected files of one kind, got {sorted(kinds)}")
    kind = kinds.pop()
    stages = stages_to_run(recipe)
    if stages and KIND_FIRST_STAGE[kind] != stages[0]:
        raise UserError(f"{recipe.path}: inputs: {kind} files cannot start at {stages[0]}")
    exposures = sorted(exposures, key=lambda e: e.name)
    tasks: list[Task] = []
    current = {e.name: e.path for e in exposures}  # latest product of each exposure
    producer: dict[str, str] = {}

    def steps(stage: str) -> dict:
        return step_parameters(recipe, stage)

    if "detector1" in stages:
        for e in exposures:
            out = product_path("detector1", e.name)
            tasks.append(Task(f"detector1:{e.name}", "detector1", {"steps": steps("detector1")}, (current[e.name],),
                              (out,), produces=(f"{STAGES['detector1'].output_dir}/{e.name}_*.fits",
                                                STAGES["detector1"].parameter_file(e.name))))
            current[e.name], producer[e.name] = out, f"detector1:{e.name}"
    if "image2" in stages:
        for e in exposures:
            out = product_path("image2", e.name)
            deps = (producer[e.name],) if e.name in producer else ()
            params = {"steps": steps("image2"), "product_name": e.name}
            asn = f"{Path(current[e.name]).parent.as_posix()}/{association_name(e.name, 'image2')}"
            tasks.append(Task(f"image2:{e.name}", "image2", params, (current[e.name],), (out,), deps,
                              produces=(f"{STAGES['image2'].output_dir}/{e.name}_*.fits", asn,
                                        STAGES["image2"].parameter_file(e.name))))
            current[e.name], producer[e.name] = out, f"image2:{e.name}"
    if "image3" in stages:
        for filt in sorted({e.filter for e in exposures}):
            members = [e for e in exposures if e.filter == filt]
            product = level3_product_name(members[0].program, members[0].observation, filt)
            deps = tuple(producer[e.name] for e in members if e.name in producer)
            params = {"steps": steps("image3"), "product_name": product}
            outs = (product_path("image3", product),)
            inputs = tuple(current[e.name] for e in members)
            out_dir = STAGES["image3"].output_dir
            produces = (f"{out_dir}/{product}_*", STAGES["image3"].parameter_file(product),
                        *(f"{out_dir}/{e.name}_*" for e in members),
                        f"{Path(inputs[0]).parent.as_posix()}/{association_name(product, 'image3')}")
            tasks.append(Task(f"image3:{filt}", "image3", params, inputs, outs, deps, produces=produces))
    if recipe.postprocess:
        from appliance.postprocess.planner import plan_tasks

        tasks += plan_tasks(recipe, tasks)
    return Plan(stages, tuple(exposures), tuple(tasks))

