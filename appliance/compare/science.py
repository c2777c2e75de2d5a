"""What a difference means to a scientist: SCI ratios of two images, sources matched between two catalogs.

``compare`` says whether two products agree within tolerance; between two jwst
releases they usually do not, and "3012 values beyond tolerance" says little.
These figures say how much: for an image, the median and the 1st/99th
percentiles of new/baseline over the pixels finite and non-zero on both sides,
and the fraction of pixels beyond tolerance; for a catalog, how many sources
match within :data:`MATCH_RADIUS_ARCSEC`, their median flux ratio and their
median astrometric offset.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.compare.model import Tolerances

#: Sources closer than this on the sky are the same source (about 2 MIRI imager pixels).
MATCH_RADIUS_ARCSEC = 0.25


#: Flux columns, in order of preference: jwst's source_catalog, then the appliance's own photutils catalog.
FLUX_COLUMNS = ("aper_total_flux", "isophotal_flux", "segment_flux")


@dataclass(frozen=True)
class ImageStats:
    """new/baseline of the SCI array."""

    pixels: int  # finite and non-zero on both sides
    median_ratio: float
    p1_ratio: float
    p99_ratio: float
    beyond_fraction: float  # of the pixels finite on both sides, beyond rtol/atol

    def text(self) -> str:
        return (f"SCI new/baseline median {self.median_ratio:.6g} (1st-99th percentile {self.p1_ratio:.6g}-"
                f"{self.p99_ratio:.6g}), {100 * self.beyond_fraction:.3g}% of pixels beyond tolerance")


@dataclass(frozen=True)
class CatalogStats:
    """Sources of two catalogs matched on the sky."""

    baseline_sources: int
    new_sources: int
    matched: int
    flux_column: str | None
    median_flux_ratio: float
    median_offset_mas: float

    def text(self) -> str:
        flux = (f"median {self.flux_column} ratio {self.median_flux_ratio:.6g}" if self.flux_column
                else "no flux column to compare")
        return (f"{self.matched} of {self.baseline_sources} baseline sources matched ({self.new_sources} in the "
                f"new catalog) within {MATCH_RADIUS_ARCSEC:g}\"; {flux}; median offset {self.median_offset_mas:.3g} mas")


def image_stats(baseline: Path, new: Path, tol: Tolerances) -> ImageStats | None:
    """The SCI figures of two FITS products, or None when either has no 2-D (or deeper) float SCI array."""
    from astropy.io import fits

    with fits.open(baseline) as ha, fits.open(new) as hb:
        if "SCI" not in ha or "SCI" not in hb:
            return None
        a, b = ha["SCI"].data, hb["SCI"].data
        if a is None or b is None or a.shape != b.shape or a.dtype.kind != "f" or a.ndim < 2:
            return None
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    if not finite.any():
        return ImageStats(0, float("nan"), float("nan"), float("nan"), 0.0)
    rtol, atol = tol.for_extension("SCI", 1)
    beyond = np.abs(b[finite] - a[finite]) > atol + rtol * np.abs(a[finite])
    usable = finite & (a != 0) & (b != 0)
    ratio = b[usable] / a[usable]
    if ratio.size == 0:
        return ImageStats(0, float("nan"), float("nan"), float("nan"), float(beyond.mean()))
    p1, median, p99 = np.percentile(ratio, [1, 50, 99])
    return ImageStats(int(ratio.size), float(median), float(p1), float(p99), float(beyond.mean()))


def _positions_and_flux(table):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if "sky_centroid" in table.colnames:
        sky = table["sky_centroid"]
        sky = sky if isinstance(sky, SkyCoord) else None
    elif "ra" in table.colnames and "dec" in table.colnames:
        sky = SkyCoord(np.asarray(table["ra"], float) * u.deg, np.asarray(table["dec"], float) * u.deg)
    else:
        sky = None
    column = next((c for c in FLUX_COLUMNS if c in table.colnames), None)
    flux = None if column is None else np.ma.filled(np.ma.asarray(table[column], dtype=float), np.nan)
    return sky, column, flux


def catalog_stats(baseline: Path, new: Path) -> CatalogStats | None:
    """The matched-source figures of two ECSV catalogs, or None when either has no sky positions."""
    from astropy import units as u
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ta, tb = Table.read(baseline, format="ascii.ecsv"), Table.read(new, format="ascii.ecsv")
    sa, column, fa = _positions_and_flux(ta)
    sb, column_b, fb = _positions_and_flux(tb)
    if sa is None or sb is None:
        return None
    if column != column_b:
        column = None
    if len(sa) == 0 or len(sb) == 0:
        return CatalogStats(len(sa), len(sb), 0, column, float("nan"), float("nan"))
    index, separation, _ = sa.match_to_catalog_sky(sb)
    close = separation < MATCH_RADIUS_ARCSEC * u.arcsec
    offset = float(np.median(separation[close].to_value(u.mas))) if close.any() else float("nan")
    ratio = float("nan")
    if column is not None and close.any():
        r = fb[index[close]] / fa[close]
        r = r[np.isfinite(r)]
        ratio = float(np.median(r)) if r.size else float("nan")
    return CatalogStats(len(sa), len(sb), int(close.sum()), column, ratio, offset)


def product_stats(baseline: Path, new: Path, tol: Tolerances) -> ImageStats | CatalogStats | None:
    """The figures that fit the product's kind (FITS image or ECSV catalog), or None."""
    from appliance.compare.diffs import tolerance_kind

    kind = tolerance_kind(str(new))
    try:
        if kind == "fits":
            return image_stats(baseline, new, tol)
        if kind == "ecsv":
            return catalog_stats(baseline, new)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None
