"""``run.py run RECIPE [--workdir DIR]`` (or just ``run.py RECIPE.toml``): reduce a recipe, write its manifest."""

from __future__ import annotations

from pathlib import Path

from appliance.commands import default_workdir, recipe_path


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="reduce a recipe into a workdir and write its manifest")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None, help="default: work/<recipe name>")
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="run even if the installed jwst/CRDS context differ from the recipe's (recorded)")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from appliance import reduction

    path = reduction.run(recipe_path(args.recipe), default_workdir(args), allow_env_mismatch=args.allow_env_mismatch)
    print(f"manifest: {path}")
    return 0
