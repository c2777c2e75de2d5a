"""Effective step parameters: what every step of a stage actually ran with.

A stage's parameters come from three layers, merged by stpipe in this order:
each step's defaults, then the CRDS ``pars-*`` reference files (when the
recipe's ``use_step_pars`` is on), then the recipe.  The recipe holds only the
last layer, so a changed default or ``pars-*`` file would go unseen; this
module records the merged result of one stage task, as data (for the task
record and the manifest) and as an stpipe parameter file (ASDF) that
``strun --config`` and ``Pipeline.from_config_file`` read.

Parameters that only say where files go (``output_dir``, ``input_dir``) are
left out of both: they name the workdir, not the science, and would make
the same reduction in two workdirs look different.  So is ``maximum_cores``
(jump, ramp_fit): it spreads the work over processes without changing the
products, depends on the executor's worker share, and the task's record keeps
its effective value on its own (``maximum_cores``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import first_line
from appliance.files import json_sha256, writing

#: Parameters that name places or share out cores, not science: dropped from the record and the file.
NOT_SCIENCE_PARAMETERS = ("output_dir", "input_dir", "maximum_cores")


def step_config_class():
    """stpipe's ``StepConfig`` (the ASDF parameter-file writer), wherever this stpipe keeps it."""
    try:
        from stpipe.config import StepConfig
    except ImportError:  # stpipe 1.x keeps it (what Step.export_config uses) here
        from stpipe._config import StepConfig
    return StepConfig


#: How often a stage's configuration is tried when a ``pars-*`` lookup failed (see :func:`configured`).
CONFIGURE_ATTEMPTS = 3


class StepParametersUnavailable(Exception):
    """CRDS could not say which ``pars-*`` step parameters apply, so the stage would run with other values."""


def configured(pipeline_class, source: str, **parameters):
    """The pipeline instance exactly as ``Pipeline.call(source, **parameters)`` builds it before running:
    defaults, then the CRDS ``pars-*`` files (stpipe's own ``build_config``), then ``parameters``;
    and the names of the ``pars-*`` files CRDS gave it (they are references the task used).

    stpipe swallows a failed ``pars-*`` lookup (or an input it cannot read for CRDS) with one log line and
    runs the steps with their code defaults, so one transient failure would silently change a product
    (a run in CI once lost ``pars-emicorrstep`` this way and skipped emicorr).  Here a configuration in
    which a lookup failed is built again, and after :data:`CONFIGURE_ATTEMPTS` tries the task fails,
    naming the lookup, instead of running with other parameters.
    """
    problem = ""
    for attempt in range(1, CONFIGURE_ATTEMPTS + 1):
        with step_parameter_references() as seen:
            config, config_file = pipeline_class.build_config(source, **parameters)
        problem = seen.problem(source)
        if not problem:
            break
        logging.getLogger(__name__).warning("configuring %s, attempt %d of %d: %s", pipeline_class.__name__,
                                            attempt, CONFIGURE_ATTEMPTS, problem)
    else:
        raise StepParametersUnavailable(f"{problem} (tried {CONFIGURE_ATTEMPTS} times); the steps would run "
                                        f"with other parameters than CRDS assigns")
    config.pop("class", None)
    pipeline = pipeline_class.from_config_section(config, name=config.get("name"), config_file=config_file)
    return pipeline, sorted(seen.used)


@dataclass
class Lookups:
    """The ``pars-*`` lookups stpipe made while configuring one stage: the files CRDS gave, the ones that failed."""

    enabled: bool  # STPIPE_DISABLE_CRDS_STEPPARS is not set
    made: int = 0
    used: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)

    def problem(self, source: str) -> str:
        """Why these lookups for ``source`` cannot be trusted, or ``""``."""
        if self.failed:
            return f"the CRDS lookup of {self.failed[0]}"
        if self.enabled and not self.made:
            return (f"stpipe looked up no pars-* step parameters in CRDS for {os.path.basename(source)} "
                    f"(it could not read its metadata)")
        return ""


@contextmanager
def step_parameter_references():
    """The :class:`Lookups` of ``pars-*`` files stpipe makes in CRDS inside the block.

    stpipe reads each step's ``pars-*`` file through ``crds_client.get_reference_file``
    (``Step._get_config_from_parameters``) and keeps no list of them, unlike the
    ``R_*`` keywords it writes for calibration references; so the call is observed
    here, for the duration of one stage's configuration (one task at a time runs
    in a process: :func:`appliance.runner.run_task`).
    """
    from stpipe import crds_client
    from stpipe.step import get_disable_crds_steppars

    seen = Lookups(enabled=not get_disable_crds_steppars())
    original = crds_client.get_reference_file

    def observed(parameters, reference_file_type, observatory):
        step_pars = str(reference_file_type).startswith("pars-")
        seen.made += step_pars
        try:
            path = original(parameters, reference_file_type, observatory)
        except Exception as exc:  # stpipe swallows it and runs the code defaults: configured() does not
            if step_pars:
                seen.failed.append(f"{reference_file_type} failed: {first_line(exc)}")
            raise
        if step_pars and path and path != "N/A":
            seen.used.add(os.path.basename(path))
        return path

    crds_client.get_reference_file = observed
    try:
        yield seen
    finally:
        crds_client.get_reference_file = original


def plain(value):
    """A parameter value as JSON and YAML take it: tuples become lists, non-finite floats strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _science(parameters: dict) -> dict:
    return {k: plain(v) for k, v in parameters.items() if k not in NOT_SCIENCE_PARAMETERS and k != "steps"}


def effective_parameters(pipeline) -> dict:
    """``{"pipeline": {...}, "steps": {step: {...}}}``: every parameter, in the pipeline's step order."""
    return {"pipeline": _science(step_parameters(pipeline)),
            "steps": {name: _science(step_parameters(getattr(pipeline, name)))
                      for name in pipeline.step_defs}}


def step_parameters(step) -> dict:
    """What ``step.get_pars()`` returns for one step (without its ``steps``), the spec parsed once per class.

    stpipe's ``get_pars`` parses the class's merged spec on every call (a fifth of a second for one
    detector1 pipeline); the spec depends on the class alone, so it is parsed once here.  The values are
    then validated against it exactly as ``get_pars`` does.
    """
    from stpipe import config_parser

    spec = _merged_spec(type(step))
    present = {key: getattr(step, key) for key in spec if hasattr(step, key)}
    return dict(config_parser.config_from_dict(present, spec, allow_missing=True))


@functools.cache
def _merged_spec(step_class):
    from stpipe import config_parser

    return config_parser.get_merged_spec_file(step_class)


def save(pipeline, effective: dict, path: Path) -> Path:
    """``effective`` as an stpipe parameter file for ``pipeline``'s class (:func:`write_parameter_file`)."""
    return write_parameter_file(type(pipeline), effective["pipeline"], effective["steps"], path)


#: Parameter sets this process wrote and read back: a file of the same content is not read back again
#: (reading back instantiates the whole pipeline, ~0.1 s a task).
_READ_BACK: set[str] = set()


def write_parameter_file(pipeline_class, pipeline_parameters: dict, steps: dict[str, dict], path: Path, *,
                         check: bool = False) -> Path:
    """An stpipe parameter file (ASDF) of ``pipeline_class`` with these parameters, steps in the pipeline's
    own order; written under a temporary name with stpipe's ``StepConfig`` (validated against its schema),
    read back with ``from_config_file`` (``check``: and every step parameter compared), then renamed."""
    from stpipe.utilities import get_fully_qualified_class_name

    step_config = step_config_class()
    configs = [step_config(get_fully_qualified_class_name(step_class), name, plain(steps[name]), [])
               for name, step_class in pipeline_class.step_defs.items() if name in steps]
    config = step_config(get_fully_qualified_class_name(pipeline_class), pipeline_class.__name__,
                         plain(pipeline_parameters), configs)
    fingerprint = json_sha256([get_fully_qualified_class_name(pipeline_class), plain(pipeline_parameters),
                               plain(steps), check])
    with writing(path) as temporary:
        with config.to_asdf() as af:
            af.write_to(str(temporary))
        if fingerprint in _READ_BACK:
            return path  # this process read the same parameters back already (every exposure's detector1 task)
        pipeline = pipeline_class.from_config_file(str(temporary))  # stpipe reads it back, or this raises
        for name, params in steps.items() if check else ():
            for key, value in params.items():
                got = getattr(getattr(pipeline, name), key)
                if plain(got) != plain(value) and not (isinstance(value, (int, float)) and got == value):
                    raise RuntimeError(f"{path.name}: {name}.{key} reads back as {got!r}, not {value!r}")
        _READ_BACK.add(fingerprint)
    return path


def changed_parameters(old: dict, new: dict, missing=None) -> list[tuple[str, object, object]]:
    """``(step.parameter, old, new)`` for every parameter whose effective value differs between two
    records (a parameter that exists on one side only shows ``missing`` on the other)."""
    changes = []
    for scope in sorted(set(old.get("steps", {})) | set(new.get("steps", {}))):
        a, b = old.get("steps", {}).get(scope, {}), new.get("steps", {}).get(scope, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key, missing) != b.get(key, missing):
                changes.append((f"{scope}.{key}", a.get(key, missing), b.get(key, missing)))
    return changes


def task_parameter_changes(old_tasks, new_tasks) -> list[str]:
    """``image3:F770W: tweakreg.snr_threshold 10.0 -> 5.0`` for each effective parameter that differs between
    the same task of two runs (tasks as the manifest records them: ``id`` and ``effective_parameters``)."""
    new = {t.id: t.effective_parameters for t in new_tasks if t.effective_parameters}
    return [f"{t.id}: {name} {before!r} -> {after!r}" for t in old_tasks if t.effective_parameters and t.id in new
            for name, before, after in changed_parameters(t.effective_parameters, new[t.id])]
