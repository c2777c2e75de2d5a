"""``run.py fetch RECIPE [--workdir DIR]``: the downloads only (inputs, CRDS references), so ``run`` can follow offline."""

from __future__ import annotations

from pathlib import Path

from appliance.commands import default_workdir, recipe_path


def add_parser(sub) -> None:
    p = sub.add_parser("fetch", help="download the recipe's inputs and CRDS references, so `run` can follow offline")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None, help="default: work/<recipe name>")
    p.add_argument("--allow-env-mismatch", action="store_true")
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(args) -> int:
    from appliance import fetch

    report = fetch.fetch(recipe_path(args.recipe), default_workdir(args), allow_env_mismatch=args.allow_env_mismatch)
    print(report)
    return 0
