"""Run one task of a plan: a jwst stage, or a registered post-processing operation.

The executors know nothing about jwst: they hand each task to :func:`run_task`.
"""

from __future__ import annotations

from pathlib import Path

from appliance.graph import Task
from appliance.pipelines import STAGES


def run_task(task: Task, workdir: Path, log: Path) -> None:
    """Run ``task`` in ``workdir``, its log in ``log``; exceptions propagate to the executor."""
    if task.kind in STAGES:
        from appliance.stages import run_stage

        run_stage(task, workdir, log)
    else:
        from appliance.postprocess import run_task as run_operation

        run_operation(task, workdir, log)
