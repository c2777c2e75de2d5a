"""``run.py check RECIPE``: validate a recipe, print its plan and its estimated cost, run nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from appliance.commands import default_workdir, recipe_path
from appliance.errors import UserError
from appliance.pipelines import STAGE_ORDER
from appliance.safety import printable
from appliance.workdir import RECORDS_DIR


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="validate a recipe and print its plan without running it")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the run would go: its free disk is checked, and when an earlier run left its "
                        "records there, each task's run-or-reuse decision is printed (default work/<recipe name>)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from appliance import session

    jwst_version, unknown = session.unknown_in_this_release(recipe_path(args.recipe), default_workdir(args))
    if unknown:  # a recipe of another release: all of them at once, then the one-line error
        for line in unknown:
            print(f"unknown  {printable(line)}", file=sys.stderr if args.json else sys.stdout)
        raise UserError(f"{recipe_path(args.recipe)}: {len(unknown)} step name(s) or parameter(s) unknown to jwst "
                        f"{jwst_version} (listed above); `run.py upgrade RECIPE --to-release {jwst_version}` "
                        f"rewrites the renamed ones")
    prepared, plan, cost = session.check(recipe_path(args.recipe), default_workdir(args))
    recipe = prepared.recipe
    if args.json:
        print(json.dumps({"recipe": recipe.name, "crds": prepared.settings.as_dict(),
                          "plan": plan.as_dict() if plan else None,
                          "estimate": None if cost is None else {"memory_bytes": round(cost.memory),
                                                                 "memory_task": cost.memory_task,
                                                                 "disk_bytes": round(cost.disk)}},
                         indent=2, default=str))
        return 0
    say(f"recipe   {recipe.name}  ({recipe.path})")
    say(f"jwst     {recipe.environment.jwst}   CRDS context {recipe.environment.crds_context}"
        f"   step-parameter references {'on' if recipe.environment.use_step_pars else 'off'}")
    for mismatch in prepared.mismatches:
        say(f"warning  environment differs: {mismatch}")
    say(f"inputs   {recipe.input_kind}")
    if plan is None:
        stages = [s for s in STAGE_ORDER if not recipe.stages[s].skip]
        say("plan     exposures are resolved by the MAST query at fetch time; stages: " + ", ".join(stages))
        print_steps(recipe, stages)
        return 0
    say(f"stages   {' → '.join(plan.stages)}")
    say(f"exposures ({len(plan.exposures)}):")
    for e in plan.exposures:
        say(f"  {e.filter:<7} {e.name}_{e.kind}.fits")
    print_steps(recipe, plan.stages)
    say(f"estimate {cost.describe()}")
    from appliance.resources import worker_budget

    say(f"workers  {worker_budget(cost)[1]} (the default --jobs of --executor process or dask)")
    say(f"tasks ({len(plan.tasks)}):")
    for t in plan.tasks:
        say(f"  {t.id:<48} {' '.join(t.inputs)[:60]} → {' '.join(t.outputs)}")
    for op in recipe.postprocess:
        say(f"postprocess  {op.op} {dict(op.params)}")
    workdir = default_workdir(args)
    if (workdir / RECORDS_DIR).is_dir():  # an earlier run left records: what a run would do now
        from appliance import reduction
        from appliance.execute import print_decisions

        say(f"in {workdir}:")
        print_decisions(reduction.dry_run(recipe_path(args.recipe), workdir), out=say)
    return 0


def print_steps(recipe, stages) -> None:
    for stage in stages:
        steps = recipe.stages[stage].steps
        overrides = ", ".join(f"{s}.{k}={v!r}" for s, p in steps.items() for k, v in p.items()) or "jwst defaults"
        say(f"  {stage:<9} {overrides}")


def say(text: str) -> None:
    """Print a line that quotes the recipe: its control characters escaped."""
    print(printable(text))
