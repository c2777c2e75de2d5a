"""FITS and catalog products compared the way jwst's regression tests compare them (STFITSDiff, rtol/atol)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from appliance.compare.model import DIFFERENT, IGNORE_HDUS, JWST_IGNORE_KEYWORDS, WITHIN, Finding, ProductResult, Tolerances
from appliance.digest import canonical_kind
from appliance.errors import UserError

def tolerance_kind(path: str) -> str | None:
    """``"fits"`` or ``"ecsv"`` for products compared within tolerance; None for those compared by digest alone."""
    kind = canonical_kind(path)
    return kind if kind in ("fits", "ecsv") else None


def compare_files(role, label, b, n, base_root, new_root, tol, digests_only, same_format) -> ProductResult:
    kind = tolerance_kind(b.path) or tolerance_kind(n.path)
    why = "content digests differ" if same_format else "the manifests use different content-digest formats"
    if digests_only or kind is None:
        note = (f"{why} (--digests-only)" if digests_only and kind
                else f"{why}; no tolerance applies to {PurePosixPath(n.path).suffix or 'these'} files")
        return ProductResult(role, label, DIFFERENT, b, n, note=note)
    a_file, b_file = base_root / b.path, new_root / n.path
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
