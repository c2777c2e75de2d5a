"""``run.py compare BASELINE NEW``: its arguments, the terminal report, and the report files it writes."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.compare.model import DEFAULT_ATOL, DEFAULT_RTOL, parse_extension_tolerances
from appliance.commands import nonnegative
from appliance.files import atomic_write
from appliance.workdir import check_report_path

def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="compare two runs (manifests) product by product; exit 1 if anything differs beyond tolerance",
        description="Compare the products of two runs: equal content digests are identical; otherwise FITS "
                    "files are compared with jwst's STFITSDiff and catalogs column by column, within rtol/atol.",
    )
    p.add_argument("baseline", type=Path, help="baseline manifest.json, or the workdir holding it")
    p.add_argument("new", type=Path, help="new manifest.json, or the workdir holding it")
    p.add_argument("--rtol", type=nonnegative, default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL:g})")
    p.add_argument("--atol", type=nonnegative, default=DEFAULT_ATOL, help=f"absolute tolerance (default {DEFAULT_ATOL:g})")
    p.add_argument("--ext-tol", action="append", default=[], metavar="EXT=RTOL[,ATOL]",
                   help="tolerance for one FITS extension (EXTNAME or HDU number; also 'primary', 'headers', "
                        "'default'), as jwst's STFITSDiff takes them, e.g. --ext-tol ERR=1e-4,1e-6; repeatable")
    p.add_argument("--digests-only", action="store_true",
                   help="compare content digests only (no product files needed, e.g. a baseline kept as its "
                        "manifest alone): any digest difference is a difference")
    p.add_argument("--report-md", type=Path, default=None, metavar="PATH",
                   help="also write the report as Markdown (e.g. for a pull-request comment)")
    p.add_argument("--junit", type=Path, default=None, metavar="PATH",
                   help="also write a JUnit XML report (one test case per product) for CI systems")
    p.set_defaults(func=cmd_compare)
    return p


def cmd_compare(args) -> int:
    from appliance.compare import compare, render_junit, render_markdown, render_text  # FITS diffs: only here

    tolerances = parse_extension_tolerances(args.ext_tol, args.rtol, args.atol)
    check_report_path(args.report_md, "--report-md")
    check_report_path(args.junit, "--junit")
    result = compare(args.baseline, args.new, tolerances=tolerances, digests_only=args.digests_only)
    print(render_text(result))
    if args.report_md:
        atomic_write(args.report_md, render_markdown(result))
    if args.junit:
        atomic_write(args.junit, render_junit(result))
    return result.exit_code()
