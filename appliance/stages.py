"""detector1 / image2 / image3 through jwst's own Pipeline classes.

Each stage task is one ``Pipeline.call(input, steps=..., output_dir=...,
save_results=True)``, exactly what the reference notebook does by hand, so a
run of the appliance reduces the data as a plain jwst session would.
"""

from __future__ import annotations

import gc
import logging
from contextlib import chdir, contextmanager
from pathlib import Path

from appliance import parameters, stepguard
from appliance.associations import write_level2, write_level3
from appliance.graph import Task
from appliance.pipelines import STAGES
# The loggers jwst's steps write to (jwst.stpipe.core.JwstStep.get_stpipe_loggers), and the appliance's own
# (a retried configuration, :func:`appliance.parameters.configured`).
LOGGER_NAMES = ("jwst", "stcal", "stdatamodels", "stpipe", "tweakwcs", "CRDS", "py.warnings", "appliance")


@contextmanager
def stage_log(path: Path):
    """Send the pipeline's log to ``path`` alone, keeping the terminal for progress."""
    from crds.core import log as crds_log

    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    saved = {}
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    console = crds_log.THE_LOGGER.console is not None
    if console:
        crds_log.remove_console_handler()
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        if console:
            crds_log.add_console_handler()
        for name, (level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        handler.close()


def stage_input(task: Task, workdir: Path) -> Path:
    """The file a stage is called on: the exposure for detector1, an association otherwise."""
    files = [workdir / p for p in task.inputs]
    if task.kind == "detector1":
        return files[0]
    if task.kind == "image2":
        return write_level2(files[0], task.params["product_name"])
    return write_level3(files, task.params["product_name"])


def run_stage(task: Task, workdir: Path, log_path: Path) -> dict:
    """Run one stage task with the real jwst pipeline; exceptions propagate to the executor.

    Returns what the task record keeps besides its outputs: the effective
    parameters of every step (also written as an stpipe parameter file beside
    the products), the ``pars-*`` files they came from, and the steps that
    ended SKIPPED (:mod:`appliance.stepguard`).
    """
    stage = STAGES[task.kind]
    output_dir = workdir / stage.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    source = stage_input(task, workdir)
    name = task.params.get("product_name") or Path(task.outputs[0]).name.removesuffix(f"_{stage.product_suffix}.fits")
    # calwebb_image2 opens association members relative to the working directory
    # (jwst 3.0's LoadAsLevel2Asn ignores input_dir), so run where the association is.
    with stage_log(log_path), chdir(source.parent):
        pipeline_class = stage.pipeline_class()
        freeze_heap()
        # what Pipeline.call(source, steps=..., ...) does, keeping the instance to ask what it ran with
        pipeline, step_pars = parameters.configured(pipeline_class, str(source), steps=task.params["steps"],
                                                    output_dir=str(output_dir), save_results=True)
        effective = parameters.effective_parameters(pipeline)
        parameters.save(pipeline, effective, workdir / stage.parameter_file(name))
        result = pipeline.run(str(source))
    close = getattr(result, "close", None)
    if close:
        close()
    return {"parameter_file": stage.parameter_file(name), "effective_parameters": effective,
            "step_parameter_references": step_pars,
            "skipped_steps": [s.as_dict() for s in skipped_steps(pipeline, effective, workdir / task.outputs[0],
                                                                 log_path)]}


def freeze_heap() -> None:
    """Collect the garbage, then exempt every object still alive from the collections to come (``gc.freeze``).

    stpipe's ``Step.run`` calls ``gc.collect()`` before every step, and a full
    collection walks every object in the process: the modules, schemas and
    CRDS rules of jwst, astropy and asdf, some 300 000 objects.  On the demo
    those walks were 40 % of a run.  Called as a stage task starts, this
    freezes what is alive then (modules, caches), so the steps' collections
    walk only what the task itself makes, and free it as before.  The frozen
    objects are thawed and searched once here, at the next task, so a cycle
    that died frozen is freed one task later instead of never, and memory does
    not grow from task to task.  The products do not change.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def skipped_steps(pipeline, effective: dict, product: Path, log_path: Path) -> list[stepguard.Skip]:
    """The steps that ended SKIPPED in the stage's main product, and whether anything asked for it."""
    from astropy.io import fits

    statuses = {k: v for k, v in fits.getheader(product).items() if k.startswith("S_")} if product.is_file() else {}
    steps = {name: getattr(pipeline, name) for name in pipeline.step_defs}
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    return stepguard.check(
        effective["steps"],
        reference_types={name: list(step.reference_file_types) for name, step in steps.items()},
        attributes={name: stepguard.CAL_STEP_ATTRIBUTE.get(name, step.class_alias or name)
                    for name, step in steps.items()},
        keywords=stepguard.status_keywords(), statuses=statuses,
        not_applicable=stepguard.not_applicable_types(log_text), log_text=log_text)
