"""Post-processing: the registered operations a recipe's ``[[postprocess]]`` may name, planned and run as tasks.

The MIRI reference workflow ends with advice that the pipeline's own stage-3
steps do not always serve MIRI well: align to a custom astrometric catalog
(Gaia has few mid-infrared matches), skip skymatch and outlier_detection, and
subtract the background and measure sources with photutils afterwards.  Those
are the operations here:

* :mod:`.registry` -- the one table of operations and their parameters (what a recipe is checked against);
* :mod:`.planner` -- operations → tasks of the plan;
* one module per operation (``background``, ``catalog``, ``preview``, ``astrometry``, ``report``),
  imported only when a task runs, and :mod:`.common`, what they share.
"""

from __future__ import annotations

from pathlib import Path

from appliance.postprocess.registry import REGISTRY
from appliance.workdir import POSTPROCESS_DIR


def run_task(task, workdir: Path, log_path: Path) -> None:
    """Run one post-processing task with its operation's module; its files go to ``workdir/postprocess/``."""
    import importlib

    from appliance.postprocess.common import task_log

    module = importlib.import_module(f"appliance.postprocess.{REGISTRY[task.params['op']].runner}")
    (Path(workdir) / POSTPROCESS_DIR).mkdir(parents=True, exist_ok=True)
    with task_log(log_path, task):
        module.run(task, Path(workdir))
