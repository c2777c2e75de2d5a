"""``run.py reproduce MANIFEST --workdir DIR``: rebuild a recorded run from its manifest alone and compare."""

from __future__ import annotations

import sys
from pathlib import Path

from appliance.commands import nonnegative
from appliance.compare.model import DEFAULT_ATOL, DEFAULT_RTOL
from appliance.errors import UserError
from appliance.files import atomic_write
from appliance.workdir import check_report_path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="rebuild a recorded run from its manifest (recipe, inputs, environment) and check the products match",
        description="Re-run the recipe embedded in a manifest on the same inputs (rebuilt from their recorded "
                    "origins and checked against their sha256) in the same environment, then compare the new "
                    "products with the recorded ones.",
    )
    p.add_argument("manifest", type=Path, help="manifest.json, or the workdir holding it")
    p.add_argument("--workdir", type=Path, required=True, help="directory for the reproduction (new, or empty)")
    p.add_argument("--tolerance", action="store_true",
                   help="accept differences within tolerance (needs the recorded products beside the manifest); "
                        "default: every content digest must match")
    p.add_argument("--rtol", type=nonnegative, default=DEFAULT_RTOL, help=f"with --tolerance (default {DEFAULT_RTOL:g})")
    p.add_argument("--atol", type=nonnegative, default=DEFAULT_ATOL, help=f"with --tolerance (default {DEFAULT_ATOL:g})")
    p.add_argument("--ext-tol", action="append", default=[], metavar="EXT=RTOL[,ATOL]",
                   help="with --tolerance: per-extension tolerance, as for `compare`")
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="run even if this environment differs from the recorded one (loud warnings; "
                        "the result is then not a faithful reproduction)")
    p.add_argument("--docker", action="store_true",
                   help="run in the container image the manifest records (found by its id)")
    p.add_argument("--no-fetch-references", action="store_true",
                   help="do not download CRDS references for real data; the cache must already hold them")
    p.add_argument("--report-md", type=Path, default=None, metavar="PATH", help="also write the comparison as Markdown")
    p.add_argument("--junit", type=Path, default=None, metavar="PATH", help="also write the comparison as JUnit XML")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from appliance import compare
    from appliance.reproduce import reproduce

    tolerances = compare.parse_extension_tolerances(args.ext_tol, args.rtol, args.atol)
    if (args.ext_tol or args.rtol != compare.DEFAULT_RTOL or args.atol != compare.DEFAULT_ATOL) and not args.tolerance:
        raise UserError("--rtol/--atol/--ext-tol: only meaningful with --tolerance")
    check_report_path(args.report_md, "--report-md")
    check_report_path(args.junit, "--junit")
    result = reproduce(args.manifest, args.workdir, tolerance=args.tolerance, tolerances=tolerances,
                       allow_env_mismatch=args.allow_env_mismatch, docker=args.docker,
                       fetch_references=not args.no_fetch_references)
    print(compare.render_text(result))
    if args.report_md:
        atomic_write(args.report_md, compare.render_markdown(result))
    if args.junit:
        atomic_write(args.junit, compare.render_junit(result))
    ok = not result.failed and (args.tolerance or result.all_identical)
    if ok:
        print("reproduced: every content digest matches" if result.all_identical
              else "reproduced within tolerance (some content digests differ)")
        return 0
    print("NOT reproduced: " + ("the products differ beyond tolerance" if args.tolerance
                                else "some content digests differ (see above; --tolerance accepts differences "
                                     "within tolerance)"), file=sys.stderr)
    return 1
