"""``background``: photutils Background2D on the mosaics (or the cal files), subtracted.

MIRI's thermal background dominates every mid-infrared image, and the MIRI
advice is to skip skymatch and model it afterwards: a sigma-clipped median in
boxes, median-filtered and interpolated, with the sources masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.errors import first_line
from appliance.files import writing
from appliance.postprocess.common import Image, OperationError, log, read_image


@dataclass
class Background:
    level: np.ndarray  # background model, NaN outside the data
    rms: np.ndarray
    source_mask: np.ndarray  # True on the masked sources

    def median(self, coverage: np.ndarray) -> tuple[float, float]:
        return float(np.nanmedian(self.level[~coverage])), float(np.nanmedian(self.rms[~coverage]))


def estimate(image: Image, *, box_size: int = 32, filter_size: int = 3, sigma: float = 3.0,
             mask_sources: bool = True) -> Background:
    """Background2D with a median estimator; with ``mask_sources`` a second pass masks the sources."""
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MedianBackground

    data, coverage = image.data, image.coverage
    if coverage.all():
        raise OperationError(f"{image.path.name}: the image holds no valid pixels")
    box = int(min(box_size, *data.shape))
    clip = SigmaClip(sigma=sigma, maxiters=10)

    def background2d(mask, filter_size):
        try:
            return Background2D(np.where(coverage, 0.0, data), box, mask=mask, coverage_mask=coverage,
                                filter_size=filter_size, sigma_clip=clip, bkg_estimator=MedianBackground(),
                                fill_value=np.nan)
        except ValueError as exc:  # every box excluded, box larger than the data, ...
            raise OperationError(f"{image.path.name}: Background2D with box_size = {box}: {first_line(exc)}") from None

    # The first pass, which only finds the sources, is not median-filtered: the filter flattens a
    # gradient in the outer boxes, and the residual there would be taken for sources.
    bkg = background2d(None, 1 if mask_sources else filter_size)
    mask = np.zeros(data.shape, bool)
    if mask_sources:
        mask = source_mask(image, bkg.background, bkg.background_rms)
        bkg = background2d(mask if mask.any() else None, filter_size)
    level = np.where(coverage, np.nan, bkg.background)
    rms = np.where(coverage, np.nan, bkg.background_rms)
    return Background(level, rms, mask & ~coverage)


def source_mask(image: Image, level: np.ndarray, rms: np.ndarray, nsigma: float = 2.0) -> np.ndarray:
    """Pixels of sources detected at ``nsigma`` on the PSF-smoothed image, dilated by about a FWHM."""
    from photutils.segmentation import detect_sources

    fwhm = image.fwhm_pixels()
    smoothed = smooth(np.where(image.coverage, 0.0, image.data - level), fwhm)
    segm = detect_sources(smoothed, nsigma * np.where(image.coverage, np.inf, rms), 5, mask=image.coverage)
    if segm is None:
        return np.zeros(image.data.shape, bool)
    return segm.make_source_mask(size=2 * int(np.ceil(fwhm)) + 1)


def smooth(data: np.ndarray, fwhm: float) -> np.ndarray:
    """Convolve with a normalised Gaussian of the PSF's FWHM (the matched filter for detection)."""
    from astropy.convolution import convolve
    from photutils.segmentation import make_2dgaussian_kernel

    size = 2 * int(np.ceil(1.5 * fwhm)) + 1
    return convolve(data, make_2dgaussian_kernel(fwhm, size=size), normalize_kernel=True, boundary="extend")


def pipeline_sky(path: Path) -> float:
    """Mean sky level the pipeline removed before resampling (HDRTAB BKGLEVEL), 0 if none.

    skymatch records a level per exposure and resample subtracts it, so the
    mosaic's background is the sky minus this; recorded so the absolute sky
    can be recovered.
    """
    from astropy.io import fits

    with fits.open(path) as hdul:
        if "HDRTAB" not in hdul or "BKGLEVEL" not in hdul["HDRTAB"].columns.names:
            return 0.0
        levels = np.asarray(hdul["HDRTAB"].data["BKGLEVEL"], dtype=float)
    levels = levels[np.isfinite(levels)]
    return float(levels.mean()) if levels.size else 0.0


def run(task, workdir: Path) -> None:
    p = task.params
    source = workdir / task.inputs[0]
    bsub_path, bkg_path = (workdir / o for o in task.outputs)
    image = read_image(source)
    bkg = estimate(image, box_size=p["box_size"], filter_size=p["filter_size"], sigma=p["sigma"],
                   mask_sources=p["mask_sources"])
    level, rms = bkg.median(image.coverage)
    removed = pipeline_sky(source)
    log.info("%s: background median %.6g %s, rms %.6g; %d source pixels masked; sky removed by the pipeline %.6g",
             source.name, level, image.bunit, rms, int(bkg.source_mask.sum()), removed)
    cards = [
        ("PP_OP", "background", "appliance post-processing operation"),
        ("PP_FROM", Path(task.inputs[0]).name, "input image"),
        ("PP_METH", "Background2D, MedianBackground", "photutils estimator"),
        ("PP_BOX", p["box_size"], "[pix] Background2D box size"),
        ("PP_FILT", p["filter_size"], "Background2D median filter size (boxes)"),
        ("PP_SIGMA", p["sigma"], "sigma-clipping threshold"),
        ("PP_MASK", p["mask_sources"], "sources masked before the final estimate"),
        ("PP_BKG", level, f"[{image.bunit}] median of the background model"),
        ("PP_RMS", rms, f"[{image.bunit}] median background rms"),
        ("PP_SKYPL", removed, f"[{image.bunit}] mean sky removed by skymatch"),
    ]
    _write_subtracted(source, bsub_path, image, bkg, cards)
    _write_model(bkg_path, image, bkg, cards)


def _write_subtracted(source: Path, target: Path, image: Image, bkg: Background, cards) -> None:
    """The input product with SCI minus the background; every other extension kept as it is."""
    from astropy.io import fits

    with fits.open(source) as hdul:
        sci = hdul["SCI"]
        sci.data = (sci.data - np.nan_to_num(bkg.level)).astype(sci.data.dtype)  # NaN stays NaN
        for key, value, comment in cards:
            hdul[0].header[key] = (value, comment)
        with writing(target) as tmp:
            hdul.writeto(tmp)


def _write_model(target: Path, image: Image, bkg: Background, cards) -> None:
    """BKG, BKG_RMS and SRCMASK images with the image's WCS."""
    from astropy.io import fits

    primary = fits.PrimaryHDU()
    for key in ("TELESCOP", "INSTRUME", "DETECTOR", "FILTER", "PROGRAM", "OBSERVTN", "EXP_TYPE"):
        if key in image.header:
            primary.header[key] = image.header[key]
    for key, value, comment in cards:
        primary.header[key] = (value, comment)
    wcs_header = image.wcs.to_header() if image.wcs is not None else fits.Header()
    hdus = [primary]
    for name, array in (("BKG", bkg.level.astype(np.float32)), ("BKG_RMS", bkg.rms.astype(np.float32)),
                        ("SRCMASK", bkg.source_mask.astype(np.uint8))):
        hdu = fits.ImageHDU(array, header=wcs_header.copy(), name=name)
        if name != "SRCMASK":
            hdu.header["BUNIT"] = image.bunit
        hdus.append(hdu)
    with writing(target) as tmp:
        fits.HDUList(hdus).writeto(tmp)
