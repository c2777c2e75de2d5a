"""``run.py run RECIPE [--workdir DIR]`` (or just ``run.py RECIPE.toml``): reduce a recipe, write its manifest.

A re-run runs only what changed (``docs/incremental.md``); ``--dry-run`` says
what it would run, and why, without running anything.
"""

from __future__ import annotations

from pathlib import Path

from appliance.commands import default_workdir, positive, recipe_path


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="reduce a recipe into a workdir (running only what changed) and write its manifest")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None, help="default: work/<recipe name>")
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="run even if the installed jwst/CRDS context differ from the recipe's (recorded)")
    p.add_argument("--dry-run", action="store_true", help="print, for each task, run or reused and why; run nothing")
    p.add_argument("--force", action="store_true", help="run every task again, whatever its record says")
    p.add_argument("--force-task", action="append", default=[], metavar="ID",
                   help="run this task again (e.g. image3:F770W); repeatable")
    p.add_argument("--keep-going", action="store_true",
                   help="after a task fails, still run every task that does not depend on it (exit 1 at the end)")
    p.add_argument("--executor", choices=("serial", "process", "dask"), default="serial",
                   help="where tasks run: this process, a local process pool, or Dask workers (docs/scaling.md)")
    p.add_argument("--jobs", type=positive, default=None, metavar="N",
                   help="workers (process, dask); default: what the cores and the memory hold (run.py check says)")
    p.add_argument("--dask-scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="with --executor dask: an existing Dask cluster (default: a local one)")
    p.add_argument("--dask-cluster", default=None, metavar="slurm|FILE",
                   help="with --executor dask: start workers as SLURM jobs (dask-jobqueue); FILE: a TOML [slurm] table")
    p.add_argument("--strict-steps", action="store_true",
                   help="exit 1 when a step ended SKIPPED without being asked to (the manifest is still written)")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from appliance import reduction
    from appliance.execute import print_decisions

    if (args.dask_scheduler or args.dask_cluster) and args.executor != "dask":
        from appliance.errors import UserError

        raise UserError("--dask-scheduler/--dask-cluster: only with --executor dask")
    options = reduction.Options(force=args.force, force_tasks=frozenset(args.force_task), keep_going=args.keep_going,
                                allow_env_mismatch=args.allow_env_mismatch, executor=args.executor, jobs=args.jobs,
                                dask_scheduler=args.dask_scheduler, dask_cluster=args.dask_cluster)
    if args.dry_run:
        print_decisions(reduction.dry_run(recipe_path(args.recipe), default_workdir(args), options))
        return 0
    result = reduction.run(recipe_path(args.recipe), default_workdir(args), options)
    for line in result.unexpected_skips:
        print(f"step guard: {line}")
    print(f"manifest: {result.manifest}")
    print(result.summary)
    return 1 if args.strict_steps and result.unexpected_skips else 0
