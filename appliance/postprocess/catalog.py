"""``catalog``: photutils segmentation and aperture photometry on the background-subtracted mosaic.

Sources are detected on the image smoothed with the filter's PSF (a matched
filter), deblended, and measured in a circular aperture whose size scales with
the PSF FWHM.  The aperture correction to total flux is measured on the image
itself, from isolated bright point-like sources (the ratio of the flux in the
aperture to that within 3 FWHM), so it follows the PSF the drizzled mosaic
really has.  Surface brightness in MJy/sr gives fluxes in Jy and AB magnitudes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from appliance.files import writing
from appliance.postprocess.common import Image, flux_scale, log, read_image

AB_ZERO_JY = 3631.0
TOTAL_RADIUS_FWHM = 3.0  # the curve of growth is normalised here
MIN_APCORR_SOURCES = 3
APERTURE_RADIUS_FWHM = 1.5  # circular-aperture radius in units of the filter's PSF FWHM
POINT_LIKE_FWHM = 2.0  # moment FWHM below this many PSF FWHM: point-like (drizzle and pixels broaden it)

COLUMNS = [  # name, unit ("flux" = the flux unit), description
    ("id", None, "segment label"),
    ("x", "pix", "windowed centroid, 0-based column"),
    ("y", "pix", "windowed centroid, 0-based row"),
    ("ra", "deg", "ICRS right ascension of the centroid"),
    ("dec", "deg", "ICRS declination of the centroid"),
    ("aper_flux", "flux", "flux in the circular aperture"),
    ("aper_flux_err", "flux", "its uncertainty (from the ERR array)"),
    ("aper_total_flux", "flux", "aperture flux times the aperture correction: total flux of a point source"),
    ("aper_total_flux_err", "flux", "its uncertainty"),
    ("aper_total_abmag", "mag", "AB magnitude of aper_total_flux"),
    ("aper_total_abmag_err", "mag", "its uncertainty"),
    ("segment_flux", "flux", "sum over the source's segment"),
    ("segment_flux_err", "flux", "its uncertainty"),
    ("kron_flux", "flux", "flux in the Kron aperture"),
    ("kron_flux_err", "flux", "its uncertainty"),
    ("snr", None, "aper_flux / aper_flux_err"),
    ("fwhm", "arcsec", "FWHM from the second moments"),
    ("point_like", None, "moment FWHM below twice the filter's PSF FWHM"),
    ("area", "pix", "segment area in pixels"),
]


def measure(image: Image, rms: np.ndarray, *, threshold: float = 3.0, npixels: int = 10, deblend: bool = True,
            aperture_radius: float = APERTURE_RADIUS_FWHM):
    """The source table of a background-subtracted image; ``rms`` is the background rms map."""
    import astropy.units as u
    from astropy.table import Table
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources

    from appliance.compat import source_property
    from appliance.postprocess.background import smooth

    scale, flux_unit = flux_scale(image)
    fwhm = image.fwhm_pixels()
    pixel_scale = image.pixel_scale_arcsec() or float("nan")
    radius = aperture_radius * fwhm
    meta = {
        "filter": image.filter,
        "image_unit": image.bunit,
        "flux_unit": flux_unit,
        "pixel_area_sr": image.pixel_area_sr(),
        "psf_fwhm_arcsec": round(fwhm * pixel_scale, 6),
        "aperture_radius_pix": round(radius, 6),
        "aperture_radius_arcsec": round(radius * pixel_scale, 6),
        "threshold_sigma": threshold,
        "npixels": npixels,
        "deblend": deblend,
        "background_rms": float(np.nanmedian(rms[~image.coverage])),
    }
    data = np.where(image.coverage, 0.0, image.data)
    smoothed = smooth(data, fwhm)
    segm = detect_sources(smoothed, threshold * np.where(image.coverage, np.inf, rms), npixels, mask=image.coverage)
    if segm is not None and deblend:
        segm = deblend_sources(smoothed, segm, npixels, progress_bar=False)
    if segm is None or segm.labels.size == 0:
        meta.update(n_sources=0, apcorr=float("nan"), apcorr_method="none",
                    warning=f"EMPTY: no sources detected above {threshold} sigma with {npixels} connected pixels")
        table = Table(names=[c[0] for c in COLUMNS], dtype=[_dtype(c[0]) for c in COLUMNS])
        return _describe(table, flux_unit, meta)
    error = None if image.error is None else np.where(image.coverage, 0.0, np.nan_to_num(image.error)) * scale
    cat = SourceCatalog(data * scale, segm, convolved_data=smoothed * scale, error=error, mask=image.coverage,
                        wcs=image.wcs)
    flux, flux_err = cat.circular_photometry(radius)
    total, _ = cat.circular_photometry(TOTAL_RADIUS_FWHM * fwhm)
    snr = flux / flux_err if error is not None else np.full(len(cat), np.nan)
    moments_fwhm = np.asarray(cat.fwhm.to_value(u.pix)) * pixel_scale
    point_like = moments_fwhm < POINT_LIKE_FWHM * fwhm * pixel_scale
    x, y = (np.asarray(source_property(cat, name)) for name in ("x_centroid_win", "y_centroid_win"))
    apcorr, method = aperture_correction(x, y, flux, total, snr, point_like, fwhm, radius)
    meta.update(n_sources=len(cat), apcorr=round(apcorr, 6), apcorr_method=method)
    if image.wcs is not None:
        sky = image.wcs.pixel_to_world(x, y)
        ra, dec = sky.ra.deg, sky.dec.deg
    else:
        ra = dec = np.full(len(cat), np.nan)
    kron, kron_err = cat.kron_flux, source_property(cat, "kron_flux_err")
    columns = {
        "id": np.asarray(cat.label), "x": x, "y": y, "ra": ra, "dec": dec,
        "aper_flux": flux, "aper_flux_err": flux_err,
        "aper_total_flux": flux * apcorr, "aper_total_flux_err": flux_err * apcorr,
        "segment_flux": cat.segment_flux, "segment_flux_err": source_property(cat, "segment_flux_err"),
        "kron_flux": kron, "kron_flux_err": kron_err,
        "snr": snr, "fwhm": moments_fwhm, "point_like": point_like,
        "area": np.asarray(cat.area.to_value(u.pix**2)),
    }
    columns["aper_total_abmag"], columns["aper_total_abmag_err"] = ab_magnitude(
        columns["aper_total_flux"], columns["aper_total_flux_err"], flux_unit)
    table = Table({name: _plain(columns[name]) for name, _, _ in COLUMNS})
    return _describe(table, flux_unit, meta)


def aperture_correction(x, y, flux, total, snr, point_like, fwhm: float, radius: float) -> tuple[float, str]:
    """Median total/aperture flux of isolated, bright, point-like sources; a Gaussian PSF's if too few."""
    n = len(flux)
    isolated = np.ones(n, bool)
    if n > 1:
        d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) + np.eye(n) * 1e9
        isolated = d.min(axis=1) > (TOTAL_RADIUS_FWHM * fwhm + radius)
    ratio = total / flux
    good = isolated & point_like & (snr > 50) & np.isfinite(ratio) & (ratio > 0.9) & (ratio < 3)
    if good.sum() >= MIN_APCORR_SOURCES:
        return float(np.median(ratio[good])), f"measured: median of {int(good.sum())} isolated point sources, " \
                                              f"aperture flux to {TOTAL_RADIUS_FWHM:g} FWHM"
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    ee = 1 - math.exp(-radius**2 / (2 * sigma**2))
    return 1 / ee, "gaussian: too few isolated bright point sources; encircled energy of a Gaussian PSF"


def ab_magnitude(flux, flux_err, unit: str):
    """AB magnitudes of fluxes in Jy; NaN for non-positive fluxes or other units."""
    flux, flux_err = np.asarray(flux, float), np.asarray(flux_err, float)
    if unit != "Jy":
        return np.full(flux.shape, np.nan), np.full(flux.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = flux > 0
        mag = np.where(positive, -2.5 * np.log10(np.where(positive, flux, 1.0) / AB_ZERO_JY), np.nan)
        err = np.where(positive, 2.5 / np.log(10) * flux_err / np.where(positive, flux, 1.0), np.nan)
    return mag, err


def _plain(values) -> np.ndarray:
    values = getattr(values, "value", values)
    return np.asarray(values)


def _dtype(name: str):
    return {"id": np.int64, "point_like": bool}.get(name, np.float64)


def _describe(table, flux_unit: str, meta: dict):
    import astropy.units as u

    for name, unit, description in COLUMNS:
        col = table[name]
        col.description = description
        if unit == "flux":
            col.unit = u.Unit(flux_unit, parse_strict="silent")
        elif unit:
            col.unit = u.Unit(unit)
        if col.dtype.kind == "f":
            col.info.format = ".7g" if name not in ("ra", "dec") else ".9f"
    table.meta.update(meta)
    return table


def load_rms(workdir: Path, task, image: Image) -> np.ndarray:
    """The background rms map: the background operation's, or estimated here on the raw mosaic."""
    from astropy.io import fits

    if len(task.inputs) > 1:  # (bsub, bkg) from the background operation
        return np.asarray(fits.getdata(workdir / task.inputs[1], "BKG_RMS"), dtype=float)
    from appliance.postprocess.background import estimate

    bkg = estimate(image)
    image.data = image.data - bkg.level  # the raw mosaic still holds the background
    log.info("%s: not background-subtracted; subtracted a Background2D estimate (defaults) first", image.path.name)
    return bkg.rms


def run(task, workdir: Path) -> None:
    p = task.params
    image = read_image(workdir / task.inputs[0])
    rms = load_rms(workdir, task, image)
    table = measure(image, rms, threshold=p["threshold"], npixels=p["npixels"], deblend=p["deblend"])
    table.meta["image"] = task.inputs[0]
    if table.meta["n_sources"] == 0:
        log.warning("%s: %s", task.inputs[0], table.meta["warning"])
    else:
        log.info("%s: %d sources; aperture correction %.4f (%s)", task.inputs[0], table.meta["n_sources"],
                 table.meta["apcorr"], table.meta["apcorr_method"])
    target = workdir / task.outputs[0]
    with writing(target) as tmp:
        table.write(tmp, format="ascii.ecsv")
