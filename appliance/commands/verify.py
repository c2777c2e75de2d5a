"""``run.py verify MANIFEST``: re-hash every input and product against the manifest."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="re-hash every input and product of a manifest")
    p.add_argument("manifest", type=Path, help="manifest.json or the workdir holding it")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args) -> int:
    from appliance.manifest import verify

    problems = verify(args.manifest)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("all inputs and products match the manifest")
    return 0
