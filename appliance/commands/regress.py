"""``run.py regress RECIPE --release A --release B``: the recipe in two releases' images, one report."""

from __future__ import annotations

from pathlib import Path

from appliance.commands import nonnegative
from appliance.compare.model import DEFAULT_ATOL, DEFAULT_RTOL


def add_parser(sub) -> None:
    p = sub.add_parser(
        "regress",
        help="run a recipe in the images of two jwst releases and report what changed; exit 1 if products "
             "differ beyond tolerance",
        description="Run RECIPE in two appliance images (two --release, two --image, or one of each; the first "
                    "is the baseline), compare the runs, and write regress.md, regress.html and regress.xml "
                    "(JUnit) into the workdir: changed effective parameters, step statuses and reference files, "
                    "and per product the SCI ratio or the matched-catalog figures.",
    )
    p.add_argument("recipe", type=Path)
    p.add_argument("--release", action="append", default=[], metavar="VERSION",
                   help="a supported jwst release whose image runs one side (`run.py releases` lists them)")
    p.add_argument("--image", action="append", default=[], metavar="TAG", help="an appliance image for one side")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where both runs and the reports go (default work/regress-<recipe name>); a side whose "
                        "run is already there is reused task by task")
    p.add_argument("--rtol", type=nonnegative, default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL:g})")
    p.add_argument("--atol", type=nonnegative, default=DEFAULT_ATOL, help=f"absolute tolerance (default {DEFAULT_ATOL:g})")
    p.add_argument("--run-arg", dest="run_args", action="append", default=[], metavar="ARG",
                   help="one more argument for `run.py run` on both sides, e.g. --run-arg=--jobs=2")
    p.set_defaults(func=cmd_regress)


def cmd_regress(args) -> int:
    from appliance.compare.model import Tolerances
    from appliance.recipe import load_recipe
    from appliance.regress import plan_sides, regress

    recipe = load_recipe(args.recipe)
    workdir = args.workdir or Path("work") / f"regress-{recipe.name}"
    sides = plan_sides(workdir, args.release, args.image)
    comparison = regress(args.recipe, sides, workdir, Tolerances(args.rtol, args.atol), tuple(args.run_args))
    changed = [c for c in comparison.changes if c.section == "effective parameters"]
    print(f"regress: {sides[0].label} vs {sides[1].label}: {len(changed)} effective-parameter change(s); "
          f"products: {comparison.counts_line()}")
    print(f"reports: {workdir / 'regress.md'}, {workdir / 'regress.html'}, {workdir / 'regress.xml'}")
    print(f"result: {comparison.verdict.upper()}")
    return comparison.exit_code()
