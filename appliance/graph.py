"""The task graph as plain data: exposures, tasks and the plan that holds them.

Nothing here knows jwst, the recipe format or an executor: a plan is made by
:mod:`appliance.plan`, walked by :mod:`appliance.execute`, and each task is
run by :mod:`appliance.runner`, so serial, parallel and distributed executors
walk the same graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.workdir import INPUT_DIR_OF_KIND


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
    """One unit of work: its kind, parameters, the workdir files it reads and writes, the tasks it waits for.

    ``outputs`` are the main files it writes (what later tasks read);
    ``produces`` are glob patterns of every file it may write besides (a
    stage's rateints, crf and associations), which its record lists once it
    ran.
    """

    id: str
    kind: str
    params: dict[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    deps: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        """What the task is about: the exposure, the filter, or the operation's subject (after the kind)."""
        return self.id.partition(":")[2]


def flatten_params(params: dict) -> dict[str, object]:
    """A task's params as ``step.parameter`` → value (other keys as they are): how changes are named."""
    flat = {}
    for key, value in (params or {}).items():
        if key == "steps" and isinstance(value, dict):
            for step, pars in value.items():
                for name, v in (pars or {}).items():
                    flat[f"{step}.{name}"] = v
        else:
            flat[key] = value
    return flat


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
