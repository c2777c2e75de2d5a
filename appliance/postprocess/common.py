"""What the operations share: reading an image product and the task's log (writes go through appliance.files).

Kept free of photutils and matplotlib; each operation imports those itself.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("appliance.postprocess")

#: MIRI imager PSF FWHM in arcsec per filter (JWST User Documentation, MIRI
#: imaging PSF); the detection kernel and the apertures scale with it.
MIRI_PSF_FWHM = {
    "F560W": 0.207, "F770W": 0.269, "F1000W": 0.328, "F1130W": 0.375, "F1280W": 0.420,
    "F1500W": 0.488, "F1800W": 0.591, "F2100W": 0.674, "F2550W": 0.803,
}
DEFAULT_FWHM_PIX = 2.5  # for filters outside the table


class OperationError(Exception):
    """An operation cannot do its work; the message is one line for the user."""


@dataclass
class Image:
    """One image product as the operations need it (FITS only: no jwst import)."""

    path: Path
    data: np.ndarray  # float64; NaN where there is no data
    error: np.ndarray | None
    coverage: np.ndarray  # True where there is no data (NaN or zero weight)
    header: object  # primary header
    sci_header: object
    wcs: object  # astropy.wcs.WCS (celestial) or None

    @property
    def filter(self) -> str:
        return str(self.header.get("FILTER", "")).strip().upper()

    @property
    def bunit(self) -> str:
        return str(self.sci_header.get("BUNIT", "")).strip()

    def pixel_area_sr(self) -> float | None:
        """From the WCS (what resample made the pixels), else PIXAR_SR."""
        if self.wcs is not None:
            import astropy.units as u

            return float(self.wcs.proj_plane_pixel_area().to_value(u.sr))
        value = self.sci_header.get("PIXAR_SR") or self.header.get("PIXAR_SR")
        return float(value) if value else None

    def pixel_scale_arcsec(self) -> float | None:
        area = self.pixel_area_sr()
        return None if area is None else float(np.sqrt(area) * 206264.80624709636)

    def fwhm_pixels(self) -> float:
        """The filter's PSF FWHM in pixels of this image."""
        fwhm = MIRI_PSF_FWHM.get(self.filter)
        scale = self.pixel_scale_arcsec()
        if fwhm is None or not scale:
            log.info("no PSF FWHM known for filter %r: using %.1f pixels", self.filter, DEFAULT_FWHM_PIX)
            return DEFAULT_FWHM_PIX
        return fwhm / scale


def read_image(path: Path) -> Image:
    """SCI (and ERR, WHT) of a jwst image product, with its celestial WCS from the SCI header."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    try:
        with fits.open(path) as hdul:
            names = {h.name for h in hdul}
            if "SCI" not in names:
                raise OperationError(f"{path.name}: no SCI extension")
            sci = hdul["SCI"]
            data = np.array(sci.data, dtype=float)
            if data.ndim != 2:
                raise OperationError(f"{path.name}: SCI is {data.ndim}-D, expected a 2-D image")
            error = np.array(hdul["ERR"].data, dtype=float) if "ERR" in names else None
            coverage = ~np.isfinite(data)
            if "WHT" in names:
                coverage |= ~(np.asarray(hdul["WHT"].data) > 0)
            if "DQ" in names:
                coverage |= (np.asarray(hdul["DQ"].data) & 1).astype(bool)  # DO_NOT_USE
            header, sci_header = hdul[0].header.copy(), sci.header.copy()
    except OSError as exc:
        raise OperationError(f"{path.name}: not a readable FITS file ({exc})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(sci_header).celestial
    if not wcs.has_celestial:
        wcs = None
    data[coverage] = np.nan
    return Image(path, data, error, coverage, header, sci_header, wcs)


def flux_scale(image: Image) -> tuple[float, str]:
    """Factor turning a sum of pixel values into a flux, and its unit.

    Surface brightness in MJy/sr (cal, i2d) becomes Jy, the unit of jwst's
    catalogs and of the simulation's truth; any other unit is kept as it is
    (summed over pixels), and then no AB magnitude can be given.
    """
    unit = image.bunit
    area = image.pixel_area_sr()
    if unit.replace(" ", "").lower() in ("mjy/sr", "mjysr-1", "mjy/steradian") and area:
        return 1e6 * area, "Jy"
    return 1.0, unit or "unknown"


@contextmanager
def task_log(path: Path, task):
    """Send this task's log lines and warnings to ``path``; a failure leaves its traceback there."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    saved = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log.info("task %s: %s", task.id, {k: v for k, v in task.params.items() if k != "recipe_text"})
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for w in {(str(w.message), w.category.__name__) for w in caught}:
                    log.warning("%s: %s", w[1], w[0])
    except OperationError as exc:
        log.error("%s", exc)
        raise
    except Exception:
        log.error("%s", traceback.format_exc())
        raise
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
        handler.close()
