"""``run.py compare BASELINE NEW``: manifest against manifest, for CI regression checks.

Products are paired by their *role* -- the stage that wrote them, the exposure
(or, for image3, the filter) they belong to, and their suffix -- not by file
name alone, so a renamed or moved product still meets its counterpart.  For
each pair:

* equal content digests (same digest format): **identical**;
* otherwise the files are compared the way jwst's own regression tests compare
  them: FITS with jwst's ``STFITSDiff`` (astropy's ``FITSDiff`` plus
  per-extension tolerances), ``rtol``/``atol`` 1e-5/1e-7 unless told
  otherwise, the ``ASDF`` HDU and the volatile keywords ignored; ECSV catalogs
  column by column with the same tolerances.  The verdict is **within
  tolerance** or **different**, with the largest absolute and relative
  differences and the number of values beyond tolerance per extension or
  column.  Other kinds (association ``.json`` files, previews) have no
  tolerance: a different digest is a difference.

Around the products it reports what changed in the recipe, the step
parameters of each task, package versions, the CRDS context and reference
files (per run and per product), step statuses, inputs, and the products that
appeared or disappeared.

Exit status: 0 when every product is identical or within tolerance and none
appeared or disappeared, 1 otherwise, 2 for a bad request (an unreadable or
tampered manifest, a product file that is needed but missing).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from appliance.errors import UserError
from appliance.files import atomic_write
from appliance.safety import inside, printable
from appliance.workdir import check_report_path

#: jwst's regression-test tolerances (``rtol``, ``atol``).
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-7
#: HDUs the jwst regression tests never compare (the ASDF tree is checked by the content digest).
IGNORE_HDUS = ("ASDF",)
#: Keywords the jwst regression tests ignore: write times and software/context versions.
JWST_IGNORE_KEYWORDS = ("DATE", "CAL_VER", "CAL_VCS", "CRDS_VER", "CRDS_CTX", "NAXIS1", "TFORM*")

IDENTICAL = "identical"
WITHIN = "within tolerance"
DIFFERENT = "different"
DISAPPEARED = "disappeared"
APPEARED = "appeared"
STATUS_ORDER = (DIFFERENT, DISAPPEARED, APPEARED, WITHIN, IDENTICAL)
FAILING = frozenset({DIFFERENT, DISAPPEARED, APPEARED})

FITS_SUFFIXES = (".fits", ".fit", ".fts")
CATALOG_SUFFIXES = (".ecsv",)


# --------------------------------------------------------------------------- options and results


@dataclass(frozen=True)
class Tolerances:
    """Relative and absolute tolerances, with per-extension overrides as STFITSDiff takes them."""

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    extensions: dict = field(default_factory=dict)  # EXTNAME (upper) / HDU index / HEADERS / PRIMARY -> (rtol, atol)

    def for_extension(self, name: str, index: int) -> tuple[float, float]:
        for key in (index, (name or "").upper()):
            if key in self.extensions:
                return self.extensions[key]
        return self.extensions.get("DEFAULT", (self.rtol, self.atol))

    def stfitsdiff(self) -> dict | None:
        if not self.extensions:
            return None
        return {k: {"rtol": r, "atol": a} for k, (r, a) in self.extensions.items()}

    def describe(self) -> str:
        text = f"rtol {self.rtol:g}, atol {self.atol:g}"
        if self.extensions:
            text += "; " + ", ".join(f"{k}: rtol {r:g}, atol {a:g}" for k, (r, a) in self.extensions.items())
        return text


@dataclass
class Finding:
    """One thing that differs inside a product: an extension's data, a header, a catalog column."""

    where: str  # "SCI", "PRIMARY header", "column flux", "HDUs"
    text: str  # one readable line
    beyond: bool  # beyond tolerance (makes the product different)
    count: int | None = None  # values beyond tolerance
    total: int | None = None
    max_abs: float | None = None
    max_rel: float | None = None


@dataclass
class ProductResult:
    role: tuple
    label: str
    status: str
    baseline: dict | None
    new: dict | None
    findings: list[Finding] = field(default_factory=list)
    note: str = ""

    @property
    def path(self) -> str:
        return (self.new or self.baseline or {}).get("path", "")

    def summary(self) -> str:
        """One line: what differs (the findings beyond tolerance first)."""
        if self.note:
            return self.note
        lines = [f.text for f in self.findings if f.beyond] or [f.text for f in self.findings]
        if not lines:
            return ""
        more = f" (+{len(lines) - 2} more)" if len(lines) > 2 else ""
        return "; ".join(lines[:2]) + more


@dataclass
class Change:
    """A change around the products, grouped: ``section`` is e.g. ``step parameters``."""

    section: str
    text: str


@dataclass
class Comparison:
    baseline_path: Path
    new_path: Path
    baseline: dict
    new: dict
    tolerances: Tolerances
    digests_only: bool
    products: list[ProductResult]
    changes: list[Change]
    notes: list[str] = field(default_factory=list)  # what was compared: manifests alone, or verified files too

    def count(self, status: str) -> int:
        return sum(1 for p in self.products if p.status == status)

    @property
    def failed(self) -> bool:
        return any(p.status in FAILING for p in self.products)

    @property
    def all_identical(self) -> bool:
        return all(p.status == IDENTICAL for p in self.products)

    @property
    def verdict(self) -> str:
        if self.failed:
            return DIFFERENT
        return IDENTICAL if self.all_identical else WITHIN

    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def counts_line(self) -> str:
        return ", ".join(f"{self.count(s)} {s}" for s in (IDENTICAL, WITHIN, DIFFERENT, DISAPPEARED, APPEARED))


# --------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="compare two runs (manifests) product by product; exit 1 if anything differs beyond tolerance",
        description="Compare the products of two runs: equal content digests are identical; otherwise FITS "
                    "files are compared with jwst's STFITSDiff and catalogs column by column, within rtol/atol.",
    )
    p.add_argument("baseline", type=Path, help="baseline manifest.json, or the workdir holding it")
    p.add_argument("new", type=Path, help="new manifest.json, or the workdir holding it")
    p.add_argument("--rtol", type=_nonnegative, default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL:g})")
    p.add_argument("--atol", type=_nonnegative, default=DEFAULT_ATOL, help=f"absolute tolerance (default {DEFAULT_ATOL:g})")
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


def _nonnegative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def parse_extension_tolerances(items: list[str], rtol: float, atol: float) -> Tolerances:
    """``["ERR=1e-4,1e-6", "3=0.1"]`` -> :class:`Tolerances`; a bad item is a one-line UserError."""
    ext: dict = {}
    for item in items:
        name, eq, values = item.partition("=")
        name = name.strip()
        parts = [v.strip() for v in values.split(",")] if eq else []
        try:
            if not name or not 1 <= len(parts) <= 2:
                raise ValueError
            r = float(parts[0])
            a = float(parts[1]) if len(parts) == 2 else atol
            if not (r >= 0 and a >= 0 and math.isfinite(r) and math.isfinite(a)):
                raise ValueError
        except ValueError:
            raise UserError(f"--ext-tol {item}: expected EXT=RTOL[,ATOL] with numbers >= 0, e.g. ERR=1e-4,1e-6") from None
        key = int(name) if name.isdigit() else name.upper()
        ext[key] = (r, a)
    return Tolerances(rtol, atol, ext)


def cmd_compare(args) -> int:
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


# --------------------------------------------------------------------------- the comparison


def compare(baseline, new, *, tolerances: Tolerances | None = None, digests_only: bool = False) -> Comparison:
    """Compare two manifests (paths to ``manifest.json`` or the workdirs holding them).

    Everything that can make the request impossible -- unreadable or tampered
    manifests, product files that are needed but missing or altered -- is
    checked before the first file comparison, and raised as a one-line
    :class:`UserError`.
    """
    from appliance.manifest import load_manifest, manifest_path

    tolerances = tolerances or Tolerances()
    base_path, new_path = manifest_path(baseline), manifest_path(new)
    base_m = _labelled(load_manifest, base_path, "baseline")
    new_m = _labelled(load_manifest, new_path, "new")

    same_format = _digest_format(base_m) == _digest_format(new_m)
    base_roles, new_roles = product_roles(base_m), product_roles(new_m)
    pairs = [(role, base_roles.get(role), new_roles.get(role)) for role in _ordered_roles(base_roles, new_roles)]

    to_open = [(role, b, n) for role, b, n in pairs
               if b is not None and n is not None and not (same_format and b["content_digest"] == n["content_digest"])]
    if digests_only:
        notes = ["digests only: only the manifests were compared; no product file was read"]
    else:
        notes = [note for note in (_verify_side(base_path, base_m, "baseline"), _verify_side(new_path, new_m, "new"))
                 if note]
        for _, b, n in to_open:
            if _kind(b["path"]) or _kind(n["path"]):
                _check_file(base_path.parent, b, "baseline", base_path)
                _check_file(new_path.parent, n, "new", new_path)

    results = []
    for role, b, n in pairs:
        label = role_label(role)
        if b is None:
            results.append(ProductResult(role, label, APPEARED, None, n, note=f"new product {n['path']}"))
        elif n is None:
            results.append(ProductResult(role, label, DISAPPEARED, b, None,
                                         note=f"{b['path']} is in the baseline but not in the new run"))
        elif same_format and b["content_digest"] == n["content_digest"]:
            results.append(ProductResult(role, label, IDENTICAL, b, n))
        else:
            results.append(_compare_files(role, label, b, n, base_path.parent, new_path.parent, tolerances,
                                          digests_only, same_format))
    changes = context_changes(base_m, new_m, pairs)
    return Comparison(base_path, new_path, base_m, new_m, tolerances, digests_only, results, changes, notes)


def _verify_side(path: Path, manifest: dict, side: str) -> str | None:
    """Where a run's product files are beside its manifest, each must still be the file it records.

    Equal content digests prove nothing about files changed after the run, so
    every product present is re-hashed (a changed, missing or out-linked one is
    a one-line UserError).  A manifest kept alone is compared as it is, and the
    returned note says so.
    """
    root = path.parent
    products = manifest.get("products", [])
    if products and not any((root / p["path"]).exists() for p in products):
        return f"{side}: no product file is beside {printable(path)}; only its manifest was compared"
    for product in products:
        _check_file(root, product, side, path)
    return None


def _labelled(func, path: Path, side: str):
    try:
        return func(path)
    except UserError as exc:
        raise UserError(f"{side}: {exc}") from None


def _digest_format(manifest: dict) -> str | None:
    info = manifest.get("content_digest")
    return info.get("format") if isinstance(info, dict) else None


def _kind(path: str) -> str | None:
    name = path.lower()
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    if name.endswith(CATALOG_SUFFIXES):
        return "ecsv"
    return None


def _check_file(root: Path, record: dict, side: str, manifest: Path) -> None:
    from appliance.files import file_sha256

    rel = record["path"]
    target = root / rel
    shown = printable(target)
    if not target.is_file():
        raise UserError(f"{side}: {shown}: missing, but the manifest lists it (keep the products beside the "
                        f"manifest, or pass --digests-only to compare the manifests alone)")
    if not inside(target, root):
        raise UserError(f"{side}: {shown}: a symbolic link out of the run's directory; not compared")
    size = record.get("size")
    if (size is not None and target.stat().st_size != size) or file_sha256(target) != record["sha256"].lower():
        raise UserError(f"{side}: {shown}: does not match the sha256 its manifest records "
                        f"(changed after the run; `run.py verify {printable(manifest)}` lists every such file)")


# --------------------------------------------------------------------------- roles


def product_roles(manifest: dict) -> dict[tuple, dict]:
    """Each product keyed by its role: (stage, exposure or task subject, suffix).

    The stage is the producing task's kind (``detector1``, ``image3``...); the
    subject is the exposure the file belongs to when its name starts with one
    (``jw02732002001_02101_00001_mirimage``), else the task's subject (the
    filter of an image3 task); the suffix is the last ``_`` part of the name
    with its extension (``rate.fits``, ``crf.fits``, ``i2d.fits``, ``asn.json``).
    Should two products of one manifest share a role, the file name is used for
    them instead of the suffix.
    """
    kinds = {t.get("id"): t.get("kind") for t in manifest.get("tasks", []) if isinstance(t, dict)}
    exposures = set((manifest.get("plan") or {}).get("exposures", []) or [])
    for task_id, kind in kinds.items():
        if kind in ("detector1", "image2") and isinstance(task_id, str) and ":" in task_id:
            exposures.add(task_id.partition(":")[2])
    by_length = sorted(exposures, key=len, reverse=True)

    roles: dict[tuple, list[dict]] = defaultdict(list)
    for product in manifest.get("products", []):
        roles[_role(product, kinds, by_length)].append(product)
    out = {}
    for role, items in roles.items():
        if len(items) == 1:
            out[role] = items[0]
        else:
            for item in items:
                out[(role[0], role[1], PurePosixPath(item["path"]).name)] = item
    return out


def _role(product: dict, kinds: dict, exposures: list[str]) -> tuple:
    task = str(product.get("task", ""))
    prefix, _, subject = task.partition(":")
    stage = kinds.get(task) or prefix or "?"
    name = PurePosixPath(product["path"]).name
    stem, dot, ext = name.partition(".")
    exposure = next((e for e in exposures if stem.startswith(e + "_")), None)
    if exposure:
        subject, rest = exposure, stem[len(exposure) + 1:]
    else:
        subject, rest = subject or stem, stem
    suffix = rest.rpartition("_")[2] + dot + ext
    return (stage, subject, suffix)


def role_label(role: tuple) -> str:
    return " ".join(str(part) for part in role if part)


def _ordered_roles(a: dict, b: dict) -> list[tuple]:
    order = {"detector1": 0, "image2": 1, "image3": 2}
    roles = list(a) + [r for r in b if r not in a]
    return sorted(roles, key=lambda r: (order.get(r[0], 3), r[0], r[1], r[2]))


# --------------------------------------------------------------------------- file comparisons


def _compare_files(role, label, b, n, base_root, new_root, tol, digests_only, same_format) -> ProductResult:
    kind = _kind(b["path"]) or _kind(n["path"])
    why = "content digests differ" if same_format else "the manifests use different content-digest formats"
    if digests_only or kind is None:
        note = (f"{why} (--digests-only)" if digests_only and kind
                else f"{why}; no tolerance applies to {PurePosixPath(n['path']).suffix or 'these'} files")
        return ProductResult(role, label, DIFFERENT, b, n, note=note)
    a_file, b_file = base_root / b["path"], new_root / n["path"]
    try:
        findings = compare_fits(a_file, b_file, tol) if kind == "fits" else compare_catalogs(a_file, b_file, tol)
    except UserError:
        raise
    except Exception as exc:  # an unreadable product: a difference, said in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ProductResult(role, label, DIFFERENT, b, n, note=f"cannot compare: {type(exc).__name__}: {first}")
    status = DIFFERENT if any(f.beyond for f in findings) else WITHIN
    result = ProductResult(role, label, status, b, n, findings)
    if status == WITHIN and not findings:
        result.note = ("differs only in what jwst's regression conventions ignore (the ASDF tree, or keywords "
                       "such as CAL_VER, CRDS_CTX)" if kind == "fits" else
                       "the same columns and values; differs only in volatile metadata or formatting")
    return result


def ignore_keywords() -> list[str]:
    """The jwst regression conventions' keywords plus the content digest's volatile cards."""
    from appliance import digest

    extra = set(digest.VOLATILE_PRIMARY_CARDS) | set(digest.VOLATILE_HDU_CARDS)
    return sorted(set(JWST_IGNORE_KEYWORDS) | extra)


def ignore_fields() -> list[str]:
    from appliance import digest

    return sorted({c for cols in digest.VOLATILE_TABLE_COLUMNS.values() for c in cols})


def _fitsdiff_class():
    try:
        from jwst.regtest.st_fitsdiff import STFITSDiff

        return STFITSDiff, True
    except ImportError:  # a jwst without its regtest helpers: astropy's FITSDiff, one tolerance
        from astropy.io.fits.diff import FITSDiff

        return FITSDiff, False


def compare_fits(a_path: Path, b_path: Path, tol: Tolerances) -> list[Finding]:
    """FITS against FITS with jwst's conventions; one :class:`Finding` per differing extension/header.

    The verdict is STFITSDiff's (per-extension tolerances); the statistics
    (values beyond tolerance, largest absolute and relative difference) are
    computed here for every image extension that differs at all.
    """
    import warnings

    import numpy as np
    from astropy.io import fits

    cls, st = _fitsdiff_class()
    kwargs = dict(ignore_hdus=list(IGNORE_HDUS), ignore_keywords=ignore_keywords(), ignore_fields=ignore_fields(),
                  rtol=tol.rtol, atol=tol.atol, numdiffs=5)
    if st:
        kwargs["extension_tolerances"] = tol.stfitsdiff()
    findings: list[Finding] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(a_path, memmap=False) as ha, fits.open(b_path, memmap=False) as hb:
            diff = cls(ha, hb, **kwargs)
            beyond_hdus = {}
            for entry in diff.diff_hdus:
                idx, hdu_diff = entry[0], entry[1]
                beyond_hdus[idx] = hdu_diff
            names_a = [h.name for h in ha]
            names_b = [h.name for h in hb]
            only_a = sorted(set(names_a) - set(names_b) - set(IGNORE_HDUS))
            only_b = sorted(set(names_b) - set(names_a) - set(IGNORE_HDUS))
            if only_a or only_b or (len(ha) != len(hb) and not (only_a or only_b)):
                text = "HDUs differ:" + (f" only in baseline {', '.join(only_a)}" if only_a else "") + \
                       (f" only in new {', '.join(only_b)}" if only_b else "") + \
                       ("" if only_a or only_b else f" {len(ha)} vs {len(hb)} HDUs")
                findings.append(Finding("HDUs", text, True))
            used_b = set()
            for ia, hdu_a in enumerate(ha):
                if hdu_a.name in IGNORE_HDUS:
                    continue
                ib = next((j for j, h in enumerate(hb) if j not in used_b and h.name == hdu_a.name
                           and h.ver == hdu_a.ver), None)
                if ib is None:
                    continue
                used_b.add(ib)
                hdu_b = hb[ib]
                name = hdu_a.name or f"HDU {ia}"
                hdu_diff = beyond_hdus.get(ia)
                if hdu_diff is not None:
                    findings.extend(_header_findings(name, hdu_diff))
                rtol, atol = tol.for_extension(hdu_a.name, ia)
                if hdu_a.is_image and hdu_b.is_image and hdu_a.data is not None and hdu_b.data is not None:
                    finding = _image_finding(name, np.asarray(hdu_a.data), np.asarray(hdu_b.data), rtol, atol)
                    if finding is not None:
                        # STFITSDiff decides; our count agrees with it unless its tolerances differ
                        finding.beyond = hdu_diff is not None and hdu_diff.diff_data is not None \
                            and not hdu_diff.diff_data.identical
                        findings.append(finding)
                elif hdu_diff is not None and hdu_diff.diff_data is not None and not hdu_diff.diff_data.identical:
                    findings.append(_table_finding(name, hdu_diff.diff_data))
                elif hdu_diff is not None and getattr(hdu_diff, "diff_dimensions", None):
                    findings.append(Finding(name, f"{name}: data dimensions differ", True))
            if not diff.identical and not any(f.beyond for f in findings):
                findings.append(Finding("file", "FITSDiff reports differences: "
                                        + " ".join(diff.report().split())[:300], True))
    return findings


def _header_findings(name: str, hdu_diff) -> list[Finding]:
    hd = getattr(hdu_diff, "diff_headers", None)
    if hd is None or hd.identical:
        return []
    parts = []
    for key, values in hd.diff_keyword_values.items():
        for pair in values:
            if pair is None:
                continue
            parts.append(f"{key} {_short(pair[0])} → {_short(pair[1])}")
    if hd.diff_keywords:
        only_a, only_b = hd.diff_keywords
        parts += [f"{k} only in baseline" for k in only_a] + [f"{k} only in new" for k in only_b]
    if hd.diff_keyword_count:
        parts.append(f"keyword counts {hd.diff_keyword_count[0]} vs {hd.diff_keyword_count[1]}")
    if not parts:
        parts.append("comments or card order differ")
    more = f" (+{len(parts) - 4} more)" if len(parts) > 4 else ""
    return [Finding(f"{name} header", f"{name} header: {', '.join(parts[:4])}{more}", True, count=len(parts))]


def _short(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _image_finding(name: str, a, b, rtol: float, atol: float) -> Finding | None:
    import numpy as np

    if a.shape != b.shape:
        return Finding(name, f"{name}: shape {a.shape} vs {b.shape}", True)
    total = int(a.size)
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        fa, fb = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
        nan_a, nan_b = np.isnan(fa), np.isnan(fb)
        both = ~nan_a & ~nan_b
        with np.errstate(invalid="ignore", over="ignore"):
            delta = np.abs(fa - fb)
            differ = (nan_a != nan_b) | (both & (delta != 0) & ~(np.isinf(fa) & (fa == fb)))
            # astropy's where_not_allclose(a, b): |a - b| > atol + rtol * |b|, b being the new file
            beyond = (nan_a != nan_b) | (both & ~np.isclose(fa, fb, rtol=rtol, atol=atol, equal_nan=True))
            finite = both & np.isfinite(delta)
            d = delta[finite]
            ref = np.abs(fb[finite])
            rel = d[ref > 0] / ref[ref > 0]
        n_differ = int(np.count_nonzero(differ))
        if n_differ == 0:
            return None
        max_abs = float(d.max()) if d.size and d.max() > 0 else None
        max_rel = float(rel.max()) if rel.size and rel.max() > 0 else None
        n_beyond = int(np.count_nonzero(beyond))
        n_nan = int(np.count_nonzero(nan_a != nan_b))
    else:  # integers (DQ flags, labels) are compared exactly; the size of a difference means nothing
        n_differ = n_beyond = int(np.count_nonzero(a != b))
        if n_differ == 0:
            return None
        max_abs = max_rel = None
        n_nan = 0
    stats = []
    if max_abs is not None:
        stats.append(f"max |Δ| {max_abs:.3g}")
    if max_rel is not None:
        stats.append(f"max rel {max_rel:.3g}")
    if n_nan:
        stats.append(f"{n_nan} NaN in one file only")
    what = "exact" if a.dtype.kind not in "fc" else f"rtol {rtol:g}, atol {atol:g}"
    text = (f"{name}: {n_beyond} of {total} values beyond tolerance ({what})" if n_beyond
            else f"{name}: {n_differ} of {total} values differ, all within tolerance ({what})")
    if stats:
        text += ", " + ", ".join(stats)
    return Finding(name, text, n_beyond > 0, n_beyond, total, max_abs, max_rel)


def _table_finding(name: str, table_diff) -> Finding:
    cols = sorted({str(v[0][0]) for v in getattr(table_diff, "diff_values", [])})
    total = getattr(table_diff, "diff_total", 0)
    extra = []
    if getattr(table_diff, "diff_column_count", None):
        extra.append(f"column counts {table_diff.diff_column_count[0]} vs {table_diff.diff_column_count[1]}")
    if getattr(table_diff, "diff_rows", None):
        extra.append(f"rows {table_diff.diff_rows[0]} vs {table_diff.diff_rows[1]}")
    if getattr(table_diff, "diff_column_names", None):
        extra.append("column names differ")
    text = f"{name}: {total} table values beyond tolerance" + (f" (columns {', '.join(cols[:6])})" if cols else "")
    if extra:
        text += "; " + "; ".join(extra)
    return Finding(name, text, True, count=total)


def compare_catalogs(a_path: Path, b_path: Path, tol: Tolerances) -> list[Finding]:
    """ECSV catalog against catalog, column by column (mixins such as SkyCoord split into their parts)."""
    import warnings

    import numpy as np
    from astropy.table import Table
    from astropy.table.serialize import represent_mixins_as_columns

    from appliance import digest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ta = represent_mixins_as_columns(Table.read(a_path, format="ascii.ecsv"))
        tb = represent_mixins_as_columns(Table.read(b_path, format="ascii.ecsv"))
    findings: list[Finding] = []
    only_a = [c for c in ta.colnames if c not in tb.colnames]
    only_b = [c for c in tb.colnames if c not in ta.colnames]
    if only_a or only_b:
        findings.append(Finding("columns", "columns differ:" + (f" only in baseline {', '.join(only_a)}" if only_a else "")
                                + (f" only in new {', '.join(only_b)}" if only_b else ""), True))
    if len(ta) != len(tb):
        findings.append(Finding("rows", f"{len(ta)} rows in the baseline, {len(tb)} in the new catalog", True))
        return findings
    for col in [c for c in ta.colnames if c in tb.colnames]:
        ca, cb = ta[col], tb[col]
        da = np.ma.filled(np.ma.asarray(ca), np.nan) if ca.dtype.kind == "f" else np.asarray(ca)
        db = np.ma.filled(np.ma.asarray(cb), np.nan) if cb.dtype.kind == "f" else np.asarray(cb)
        finding = None
        if da.dtype.kind in "fiu" and db.dtype.kind in "fiu" and da.shape == db.shape:
            if da.dtype.kind == "f" or db.dtype.kind == "f":
                finding = _image_finding(f"column {col}", da, db, tol.rtol, tol.atol)
            else:
                finding = _image_finding(f"column {col}", da, db, 0.0, 0.0)
        elif da.shape != db.shape or np.any(da != db):
            n = int(np.count_nonzero(da != db)) if da.shape == db.shape else len(da)
            finding = Finding(f"column {col}", f"column {col}: {n} of {len(da)} values differ", True, n, len(da))
        if finding is not None:
            findings.append(finding)
    volatile = set(digest.VOLATILE_ECSV_META)
    meta_a = {k: _canonical(v) for k, v in ta.meta.items() if k not in volatile}
    meta_b = {k: _canonical(v) for k, v in tb.meta.items() if k not in volatile}
    if meta_a != meta_b:
        keys = sorted(k for k in set(meta_a) | set(meta_b) if meta_a.get(k) != meta_b.get(k))
        findings.append(Finding("meta", f"catalog metadata differs ({', '.join(map(str, keys[:5]))}); "
                                        f"not a column, so not a difference", False))
    return findings


def _canonical(value):
    """Catalog metadata as comparable plain data (arrays become lists)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "unit") and hasattr(value, "value"):  # Quantity
        return [_canonical(value.value), str(value.unit)]
    if hasattr(value, "tolist"):
        try:
            return value.tolist()
        except Exception:  # noqa: BLE001 - objects whose tolist is not plain data
            return repr(value)
    return value


# --------------------------------------------------------------------------- around the products


def context_changes(base: dict, new: dict, pairs) -> list[Change]:
    """What changed around the products: recipe, parameters, environment, references, statuses, inputs."""
    out: list[Change] = []
    rb, rn = base.get("recipe", {}), new.get("recipe", {})
    if rb.get("sha256") != rn.get("sha256"):
        out.append(Change("recipe", f"recipe text changed (sha256 {str(rb.get('sha256'))[:12]}… → "
                                    f"{str(rn.get('sha256'))[:12]}…)"))
    out += _parameter_changes(base, new)
    eb, en = base.get("environment", {}) or {}, new.get("environment", {}) or {}
    for key in ("crds_context", "crds_mode", "use_step_pars"):
        if eb.get(key) != en.get(key):
            out.append(Change("CRDS", f"{key}: {eb.get(key)} → {en.get(key)}"))
    pb, pn = (eb.get("python") or {}).get("version"), (en.get("python") or {}).get("version")
    if pb != pn:
        out.append(Change("environment", f"Python {pb} → {pn}"))
    platb, platn = (eb.get("platform") or {}).get("platform"), (en.get("platform") or {}).get("platform")
    if platb != platn:
        out.append(Change("environment", f"platform {platb} → {platn}"))
    ib, inn = eb.get("image") or {}, en.get("image") or {}
    if (ib.get("id"), ib.get("digest")) != (inn.get("id"), inn.get("digest")):
        out.append(Change("environment", f"container image {_image(ib)} → {_image(inn)}"))
    out += _dict_changes("packages", eb.get("packages") or {}, en.get("packages") or {})
    out += _dict_changes("CRDS reference files", eb.get("crds_references") or {}, en.get("crds_references") or {},
                         short=True)
    if _digest_format(base) != _digest_format(new):
        out.append(Change("content digest", f"format {_digest_format(base)} → {_digest_format(new)}: "
                                            f"every product compared file by file"))
    out += _per_product_changes("reference files per product", "crds_refs", pairs)
    out += _per_product_changes("step statuses", "step_status", pairs)
    out += _input_changes(base, new)
    return out


def _image(info: dict) -> str:
    if not info:
        return "none"
    return str(info.get("digest") or info.get("id") or "unknown")[:19]


def _dict_changes(section: str, a: dict, b: dict, short: bool = False) -> list[Change]:
    out = []
    fmt = (lambda v: str(v)[:12] + "…") if short else str
    for key in sorted(set(a) | set(b)):
        if key not in b:
            out.append(Change(section, f"{key} {fmt(a[key])} removed"))
        elif key not in a:
            out.append(Change(section, f"{key} {fmt(b[key])} added"))
        elif a[key] != b[key]:
            out.append(Change(section, f"{key} {fmt(a[key])} → {fmt(b[key])}"))
    return out


def flatten_params(params: dict) -> dict[str, object]:
    """A task's params as ``step.parameter`` → value (other keys as they are)."""
    flat = {}
    for key, value in (params or {}).items():
        if key == "steps" and isinstance(value, dict):
            for step, pars in value.items():
                for name, v in (pars or {}).items():
                    flat[f"{step}.{name}"] = v
        else:
            flat[key] = value
    return flat


def _parameter_changes(base: dict, new: dict) -> list[Change]:
    tb = {t["id"]: t for t in base.get("tasks", []) if isinstance(t, dict) and "id" in t}
    tn = {t["id"]: t for t in new.get("tasks", []) if isinstance(t, dict) and "id" in t}
    grouped: dict[tuple, list[str]] = defaultdict(list)
    for task_id in [t for t in tb if t in tn]:
        fa, fb = flatten_params(tb[task_id].get("params")), flatten_params(tn[task_id].get("params"))
        kind = tn[task_id].get("kind") or task_id.partition(":")[0]
        for key in sorted(set(fa) | set(fb)):
            if key == "product_name":
                continue
            va, vb = fa.get(key, _DEFAULT), fb.get(key, _DEFAULT)
            if va != vb:
                grouped[(kind, key, _show(va), _show(vb))].append(task_id)
    out = []
    for (kind, key, va, vb), ids in grouped.items():
        where = f"{len(ids)} {kind} task{'s' if len(ids) != 1 else ''}"
        out.append(Change("step parameters", f"{kind} {key}: {va} → {vb} ({where})"))
    return out


class _Default:
    def __repr__(self) -> str:
        return "(default)"


_DEFAULT = _Default()


def _show(value) -> str:
    if value is _DEFAULT:
        return "(default)"
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _per_product_changes(section: str, key: str, pairs) -> list[Change]:
    grouped: dict[tuple, int] = defaultdict(int)
    for _, b, n in pairs:
        if b is None or n is None:
            continue
        a_map, b_map = b.get(key) or {}, n.get(key) or {}
        for k in sorted(set(a_map) | set(b_map)):
            if a_map.get(k) != b_map.get(k):
                grouped[(k, a_map.get(k, "(none)"), b_map.get(k, "(none)"))] += 1
    return [Change(section, f"{k}: {va} → {vb} in {count} product{'s' if count != 1 else ''}")
            for (k, va, vb), count in grouped.items()]


def _input_changes(base: dict, new: dict) -> list[Change]:
    ia = {i["name"]: i for i in base.get("inputs", [])}
    ib = {i["name"]: i for i in new.get("inputs", [])}
    out = []
    for name in sorted(set(ia) | set(ib)):
        if name not in ib:
            out.append(Change("inputs", f"{name} only in the baseline"))
        elif name not in ia:
            out.append(Change("inputs", f"{name} only in the new run"))
        elif ia[name]["sha256"] != ib[name]["sha256"]:
            out.append(Change("inputs", f"{name}: sha256 {ia[name]['sha256'][:12]}… → {ib[name]['sha256'][:12]}…"))
        elif ia[name].get("origin") != ib[name].get("origin"):
            out.append(Change("inputs", f"{name}: same bytes from another origin ({ib[name].get('origin')})"))
    return out


# --------------------------------------------------------------------------- reports


def _describe_run(manifest: dict, path: Path) -> str:
    recipe = manifest.get("recipe", {})
    name = PurePosixPath(str(recipe.get("path", "?"))).name
    env = manifest.get("environment", {}) or {}
    return f"{path}  (recipe {name}, jwst {env.get('jwst')}, {env.get('crds_context')}, finished {manifest.get('finished')})"


def _grouped_changes(result: Comparison) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for change in result.changes:
        groups[change.section].append(change.text)
    return groups


def render_text(result: Comparison, limit: int = 8) -> str:
    """The terminal summary."""
    lines = [f"baseline {_describe_run(result.baseline, result.baseline_path)}",
             f"new      {_describe_run(result.new, result.new_path)}",
             f"tolerances {result.tolerances.describe()}; ignored: HDU {', '.join(IGNORE_HDUS)}, "
             f"keywords {', '.join(ignore_keywords())}" + ("; digests only" if result.digests_only else ""),
             *(f"note     {note}" for note in result.notes),
             ""]
    tag = {DIFFERENT: "DIFFERENT", DISAPPEARED: "MISSING", APPEARED: "NEW", WITHIN: "WITHIN"}
    listed = [p for status in (DIFFERENT, DISAPPEARED, APPEARED, WITHIN) for p in result.products if p.status == status]
    if not listed:
        lines.append(f"all {len(result.products)} products identical (equal content digests)")
    for p in listed:
        lines.append(f"{tag[p.status]:<10}{p.label}   {p.path}")
        details = [p.note] if p.note else []
        details += [f.text for f in sorted(p.findings, key=lambda f: not f.beyond)]
        for text in details[:limit]:
            lines.append(f"          {text}")
        if len(details) > limit:
            lines.append(f"          ... {len(details) - limit} more")
    groups = _grouped_changes(result)
    if groups:
        lines += ["", "changes around the products:"]
        for section, items in groups.items():
            lines.append(f"  {section}:")
            for text in items[:limit * 2]:
                lines.append(f"    {text}")
            if len(items) > limit * 2:
                lines.append(f"    ... {len(items) - limit * 2} more")
    else:
        lines += ["", "no changes around the products (same recipe, parameters, packages, CRDS context and references)"]
    lines += ["", f"products: {len(result.products)} — {result.counts_line()}",
              f"result: {result.verdict.upper()}"]
    return "\n".join(printable(line) for line in lines)  # names from manifests cannot break or colour a line


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(result: Comparison) -> str:
    """A Markdown report, suitable for a pull-request comment."""
    verdict = {IDENTICAL: "identical", WITHIN: "within tolerance", DIFFERENT: "DIFFERENT"}[result.verdict]
    out = [f"## Regression comparison: {verdict}", "",
           f"- baseline: `{_describe_run(result.baseline, result.baseline_path)}`",
           f"- new: `{_describe_run(result.new, result.new_path)}`",
           f"- tolerances: {result.tolerances.describe()}; ignored: HDU `ASDF`, keywords "
           f"{', '.join(f'`{k}`' for k in ignore_keywords())}" + (" (digests only)" if result.digests_only else ""),
           *(f"- note: {_md_escape(note)}" for note in result.notes),
           "", "| result | products |", "|---|---:|"]
    for status in (IDENTICAL, WITHIN, DIFFERENT, DISAPPEARED, APPEARED):
        out.append(f"| {status} | {result.count(status)} |")
    groups = _grouped_changes(result)
    out += ["", "### What changed around the products", ""]
    if not groups:
        out.append("Nothing: same recipe, step parameters, packages, CRDS context and reference files.")
    for section, items in groups.items():
        if len(items) <= 10:
            out.append(f"- **{section}**: " + "; ".join(_md_escape(t) for t in items))
        else:
            out += [f"<details><summary><b>{section}</b>: {len(items)} changes</summary>", ""]
            out += [f"- {_md_escape(t)}" for t in items]
            out += ["", "</details>"]
    for status, title in ((DIFFERENT, "Different"), (DISAPPEARED, "Disappeared"), (APPEARED, "Appeared"),
                          (WITHIN, "Within tolerance")):
        items = [p for p in result.products if p.status == status]
        if not items:
            continue
        out += ["", f"### {title} ({len(items)})", "", "| product | path | what differs |", "|---|---|---|"]
        for p in items:
            out.append(f"| {_md_escape(p.label)} | `{p.path}` | {_md_escape(p.summary())} |")
        detailed = [p for p in items if len(p.findings) > 1]
        if detailed:
            out += ["", "<details><summary>per-extension details</summary>", ""]
            for p in detailed:
                out.append(f"**{_md_escape(p.label)}**")
                out += [f"- {_md_escape(f.text)}" for f in p.findings]
                out.append("")
            out.append("</details>")
    rb, rn = result.baseline.get("recipe", {}), result.new.get("recipe", {})
    if rb.get("sha256") != rn.get("sha256"):
        diff = difflib.unified_diff(rb.get("text", "").splitlines(), rn.get("text", "").splitlines(),
                                    "baseline recipe", "new recipe", lineterm="")
        out += ["", "<details><summary>recipe diff</summary>", "", "```diff", *list(diff)[:200], "```", "",
                "</details>"]
    return "\n".join(printable(line) for line in out) + "\n"


def render_junit(result: Comparison) -> str:
    """A JUnit XML report: one test case per product role, failures for differences."""
    import xml.etree.ElementTree as ET

    failures = sum(1 for p in result.products if p.status in FAILING)
    suite = ET.Element("testsuite", name="appliance.compare", tests=str(len(result.products) + 1),
                       failures=str(failures), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for name, value in (("baseline", str(result.baseline_path)), ("new", str(result.new_path)),
                        ("tolerances", result.tolerances.describe()), ("verdict", result.verdict)):
        ET.SubElement(props, "property", name=name, value=value)
    for p in result.products:
        case = ET.SubElement(suite, "testcase", classname=f"compare.{p.role[0]}", name=p.label)
        details = "\n".join(([p.note] if p.note else []) + [f.text for f in p.findings])
        if p.status in FAILING:
            failure = ET.SubElement(case, "failure", message=f"{p.status}: {p.summary() or p.path}"[:500],
                                    type=p.status.replace(" ", "_"))
            failure.text = f"{p.path}\n{details}"
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{p.status}: {p.path}" + (f"\n{details}" if details else "")
    env = ET.SubElement(suite, "testcase", classname="compare.context", name="changes around the products")
    out = ET.SubElement(env, "system-out")
    out.text = "\n".join(f"{c.section}: {c.text}" for c in result.changes) or "no changes"
    ET.indent(suite)
    text = ET.tostring(suite, encoding="unicode")  # control characters are not allowed in XML 1.0
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(printable(line) for line in text.splitlines()) + "\n"