"""``run.py upgrade RECIPE --to-release V``: the recipe rewritten for another jwst release, beside the old one."""

from __future__ import annotations

from pathlib import Path

from appliance.safety import printable


def add_parser(sub) -> None:
    p = sub.add_parser("upgrade", help="rewrite a recipe for another supported jwst release (renamed steps and "
                                       "parameters, [environment]); the new file goes beside the old one")
    p.add_argument("recipe", type=Path)
    p.add_argument("--to-release", required=True, metavar="VERSION",
                   help="a supported jwst release (`run.py releases` lists them)")
    p.set_defaults(func=cmd_upgrade)


def cmd_upgrade(args) -> int:
    from appliance.upgrade import upgrade

    target, changes = upgrade(args.recipe, args.to_release)
    for line in changes or ["nothing to rename; [environment] already names this release"]:
        print(f"changed  {printable(line)}")
    print(f"wrote {target} (check it with: run.py check {target})")
    return 0
