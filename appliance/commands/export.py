"""``run.py export RECIPE --out DIR``: the recipe's reduction as stpipe parameter files, associations and strun commands."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the recipe's reduction as stpipe parameter files, associations and a script of strun commands",
        description="Export a recipe as plain jwst: one stpipe parameter file (ASDF) per stage, the association "
                    "files, and a shell script of strun commands that reproduces the reduction with jwst alone.",
    )
    p.add_argument("recipe", type=Path)
    p.add_argument("--out", type=Path, required=True, help="directory to write (must not exist, or be empty)")
    p.add_argument("--inputs", type=Path, default=None, metavar="DIR",
                   help="directory holding the input exposures, to resolve the plan from their headers "
                        "(needed for MAST recipes: e.g. the uncal/ directory of a `run.py fetch` workdir)")
    p.add_argument("--effective-from", type=Path, default=None, metavar="WORKDIR",
                   help="write every step's effective parameters as that run of the recipe recorded them "
                        "(defaults, pars-* files and recipe merged), instead of the recipe's alone")
    p.add_argument("--force", action="store_true", help="replace an existing export in --out")
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="export even if the installed jwst/CRDS context differ from the recipe's")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from appliance.export import export

    written = export(args.recipe, args.out, inputs_dir=args.inputs, force=args.force,
                     allow_env_mismatch=args.allow_env_mismatch, effective_from=args.effective_from)
    print(written.summary())
    return 0
