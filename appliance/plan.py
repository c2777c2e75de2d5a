"""Recipe → task graph.

The graph is plain data: each task names its kind, its parameters, the
workdir-relative files it reads and the main files it writes, and the tasks it
waits for.  Executors only walk it, so a serial, a parallel or a distributed
executor run the same graph, and a task's key (a hash of its kind, parameters,
input digests and environment) makes resume and no-op re-runs cheap later on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.associations import level3_product_name
from appliance.errors import UserError
from appliance.safety import FILTER, OBSERVATION, PROGRAM, check_name, is_name, printable
from appliance.recipe import KIND_FIRST_STAGE, Recipe, stages_to_run, step_parameters

# The directory each stage writes, as in the reference workflow; the inputs of
# a recipe that starts at a later stage are placed where that stage reads them.
STAGE_DIRS = {"inputs": "uncal", "detector1": "stage1", "image2": "stage2", "image3": "stage3"}
INPUT_DIR_OF_KIND = {"uncal": "uncal", "rate": "stage1", "cal": "stage2"}


@dataclass(frozen=True)
class Exposure:
    """One exposure of the observation, as its header describes it."""

    name: str  # the file name without the _<suffix>.fits ending
    kind: str  # uncal | rate | cal
    filter: str
    program: str
    observation: str
    ngroups: int = 0  # the size, for the resource estimate (0: unknown)
    nints: int = 0
    pixels: int = 0

    @property
    def path(self) -> str:
        return f"{INPUT_DIR_OF_KIND[self.kind]}/{self.name}_{self.kind}.fits"


@dataclass(frozen=True)
class Task:
    id: str
    kind: str
    params: dict[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    deps: tuple[str, ...] = ()

    def key(self, input_digests: dict[str, str], environment: dict[str, Any]) -> str:
        """What makes this task's result unique; equal keys mean equal outputs."""
        blob = json.dumps(
            {
                "kind": self.kind,
                "params": self.params,
                "inputs": [input_digests.get(p) for p in self.inputs],
                "environment": environment,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Plan:
    stages: tuple[str, ...]  # the stages that run, in order
    exposures: tuple[Exposure, ...]
    tasks: tuple[Task, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {
            "stages": list(self.stages),
            "exposures": [asdict(e) for e in self.exposures],
            "tasks": [asdict(t) for t in self.tasks],
        }


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
        raise UserError(f"{where}: not a readable FITS file ({printable(str(exc).strip() or type(exc).__name__)[:120]})") from None

    def value(keyword: str, pattern, expected: str) -> str:
        return check_name(str(header.get(keyword, "")).strip(), pattern, f"{where}: {keyword}", expected)

    def count(keyword: str) -> int:
        number = header.get(keyword, 0)
        return number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else 0

    return Exposure(
        name=name,
        kind=kind,
        filter=value("FILTER", FILTER, 'a filter name such as "F770W" (upper-case letters and digits)'),
        program=value("PROGRAM", PROGRAM, 'a program number of 5 digits such as "02732"'),
        observation=value("OBSERVTN", OBSERVATION, 'an observation number of 3 digits such as "002"'),
        ngroups=count("NGROUPS") if kind == "uncal" else 0,
        nints=count("NINTS"),
        pixels=count("SUBSIZE1") * count("SUBSIZE2"),
    )


def build_plan(recipe: Recipe, exposures: list[Exposure]) -> Plan:
    """Compile the recipe over its exposures into the task graph."""
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
            out = f"stage1/{e.name}_rate.fits"
            tasks.append(Task(f"detector1:{e.name}", "detector1", {"steps": steps("detector1")}, (current[e.name],), (out,)))
            current[e.name], producer[e.name] = out, f"detector1:{e.name}"
    if "image2" in stages:
        for e in exposures:
            out = f"stage2/{e.name}_cal.fits"
            deps = (producer[e.name],) if e.name in producer else ()
            params = {"steps": steps("image2"), "product_name": e.name}
            tasks.append(Task(f"image2:{e.name}", "image2", params, (current[e.name],), (out,), deps))
            current[e.name], producer[e.name] = out, f"image2:{e.name}"
    if "image3" in stages:
        for filt in sorted({e.filter for e in exposures}):
            members = [e for e in exposures if e.filter == filt]
            product = level3_product_name(members[0].program, members[0].observation, filt)
            deps = tuple(producer[e.name] for e in members if e.name in producer)
            params = {"steps": steps("image3"), "product_name": product}
            outs = (f"stage3/{product}_i2d.fits",)
            inputs = tuple(current[e.name] for e in members)
            tasks.append(Task(f"image3:{filt}", "image3", params, inputs, outs, deps))
    if recipe.postprocess:
        from appliance.postprocess import plan_tasks

        tasks += plan_tasks(recipe, tasks)
    return Plan(stages, tuple(exposures), tuple(tasks))

