"""detector1 / image2 / image3 through jwst's own Pipeline classes.

Each stage task is one ``Pipeline.call(input, steps=..., output_dir=...,
save_results=True)``, exactly what the reference notebook does by hand, so a
run of the appliance reduces the data as a plain jwst session would.
"""

from __future__ import annotations

import logging
from contextlib import chdir, contextmanager
from pathlib import Path

from appliance.associations import write_level2, write_level3
from appliance.graph import Task
from appliance.pipelines import STAGES
# The loggers jwst's steps write to (jwst.stpipe.core.JwstStep.get_stpipe_loggers).
LOGGER_NAMES = ("jwst", "stcal", "stdatamodels", "stpipe", "tweakwcs", "CRDS", "py.warnings")


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


def run_stage(task: Task, workdir: Path, log_path: Path) -> None:
    """Run one stage task with the real jwst pipeline; exceptions propagate to the executor."""
    stage = STAGES[task.kind]
    pipeline = stage.pipeline_class()
    output_dir = workdir / stage.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    source = stage_input(task, workdir)
    # calwebb_image2 opens association members relative to the working directory
    # (jwst 3.0's LoadAsLevel2Asn ignores input_dir), so run where the association is.
    with stage_log(log_path), chdir(source.parent):
        result = pipeline.call(
            str(source),
            steps=task.params["steps"],
            output_dir=str(output_dir),
            save_results=True,
            configure_log=False,
        )
    close = getattr(result, "close", None)
    if close:
        close()
