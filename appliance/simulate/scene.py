"""The simulated sky: filters, PSF, background, point and extended sources, and their rendering.

Fluxes are in Jy; detector count rates in DN/s. The photometric calibration (PHOTMJSR, pixel
area) links the two, and the photom and apcorr reference files are written from the same
numbers, so the stage-3 catalog's total fluxes can be compared with the truth directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import erf

import numpy as np

from .detector import PIXEL_SCALE
ARCSEC_RAD = np.pi / 180 / 3600
PIXEL_AREA_ARCSEC2 = PIXEL_SCALE**2
PIXEL_AREA_SR = PIXEL_AREA_ARCSEC2 * ARCSEC_RAD**2


@dataclass(frozen=True)
class Filter:
    """One imager filter: what the simulation and the synthetic calibration agree on."""

    name: str
    wavelength: float  # µm, pivot
    fwhm: float  # arcsec, PSF full width at half maximum (measured MIRI values)
    background: float  # DN/s per pixel before the flat (zodiacal + telescope thermal emission)
    photmjsr: float  # MJy/sr per DN/s (synthetic, not the flight calibration)
    col_offset: float  # pixels, filter-dependent boresight shift (FILTEROFFSET reference)
    row_offset: float

    @property
    def sigma_pix(self) -> float:
        """Gaussian PSF sigma in detector pixels."""
        return self.fwhm / (2 * np.sqrt(2 * np.log(2))) / PIXEL_SCALE

    @property
    def jy_per_dn_s(self) -> float:
        """Flux in Jy of a source giving 1 DN/s in total on the detector."""
        return self.photmjsr * 1e6 * PIXEL_AREA_SR

    @property
    def vega_zero_point(self) -> float:
        """Approximate flux of Vega in Jy (Rayleigh-Jeans from 280 Jy at 3.6 µm)."""
        return 280.0 * (3.6 / self.wavelength) ** 2


FILTERS = {
    f.name: f
    for f in (
        Filter("F560W", 5.635, 0.207, 4.0, 0.60, 0.06, -0.04),
        Filter("F770W", 7.639, 0.269, 10.0, 0.25, 0.08, 0.12),
        Filter("F1000W", 9.953, 0.328, 18.0, 0.45, -0.11, 0.05),
        Filter("F1130W", 11.309, 0.375, 12.0, 1.30, -0.05, -0.09),
        Filter("F1280W", 12.810, 0.420, 30.0, 0.45, 0.13, -0.02),
        Filter("F1500W", 15.064, 0.488, 50.0, 0.35, -0.07, 0.14),
        Filter("F1800W", 17.984, 0.591, 70.0, 0.55, 0.02, 0.10),
        Filter("F2100W", 20.795, 0.674, 150.0, 0.40, -0.12, -0.06),
        Filter("F2550W", 25.365, 0.803, 250.0, 1.20, 0.09, 0.03),
    )
}
FILTER_INDEX = {name: i for i, name in enumerate(FILTERS)}

# Aperture-correction geometry (APCORR reference): the encircled-energy fractions the catalog uses.
EE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


# Extra blur (variance, pixels^2 per axis) of a point source measured on a resampled mosaic,
# beyond the optical PSF: detector pixel integration (1/12), drizzle's redistribution of each
# pixel onto the output grid at a random sub-pixel phase (1/6), and the aperture photometry's
# piecewise-constant pixels (1/12).
MOSAIC_EXTRA_VARIANCE = 1.0 / 3.0


def mosaic_sigma(f: Filter) -> float:
    """Gaussian sigma (native pixels) of a point source as the stage-3 catalog sees it."""
    return float(np.sqrt(f.sigma_pix**2 + MOSAIC_EXTRA_VARIANCE))


def encircled_energy_radii(f: Filter, fractions=EE_FRACTIONS) -> np.ndarray:
    """Radii (native pixels) enclosing the given energy fractions of the mosaic PSF."""
    return mosaic_sigma(f) * np.sqrt(-2 * np.log(1 - np.asarray(fractions)))


def background_annulus(f: Filter) -> tuple[float, float]:
    """Local-background annulus radii (native pixels), clear of the PSF core."""
    inner = float(np.ceil(max(6.0, 5 * mosaic_sigma(f))))
    return inner, inner + 5.0


@dataclass(frozen=True)
class Source:
    """One source. Shape parameters apply to extended sources (exponential disks)."""

    id: int
    x: float  # detector pixel on the reference pointing (0-based, subarray frame)
    y: float
    kind: str  # "point" or "extended"
    flux10: float  # Jy at 10 µm
    alpha: float  # spectral index: flux ∝ (wavelength / 10 µm) ** alpha
    r_eff: float = 0.0  # arcsec, half-light radius
    axis_ratio: float = 1.0
    pa: float = 0.0  # degrees east of north, major axis

    def flux(self, f: Filter) -> float:
        return self.flux10 * (f.wavelength / 10.0) ** self.alpha


def make_sources(
    rng: np.random.Generator,
    center: tuple[float, float],
    half_size: float,
    n_point: int,
    n_extended: int,
) -> list[Source]:
    """Draw point sources (one bright, saturating) and exponential disks (one blended pair).

    Positions are detector pixels of the reference pointing, inside a square of ``half_size``
    around ``center`` that every dither covers; point sources keep 2.5" from each other and 4"
    from disks, so each is isolated; the disk pair overlaps to exercise deblending.
    """
    cx, cy = center
    min_pp, min_pe = 2.5 / PIXEL_SCALE, 4.0 / PIXEL_SCALE
    placed: list[tuple[float, float, str]] = []

    def draw(kind: str, near: tuple[float, float] | None = None, sep: float = 0.0) -> tuple[float, float]:
        for _ in range(10000):
            if near is None:
                x, y = cx + rng.uniform(-half_size, half_size), cy + rng.uniform(-half_size, half_size)
            else:
                ang = rng.uniform(0, 2 * np.pi)
                x, y = near[0] + sep * np.cos(ang), near[1] + sep * np.sin(ang)
                if max(abs(x - cx), abs(y - cy)) > half_size:
                    continue
            ok = True
            for px, py, pk in placed:
                d = np.hypot(x - px, y - py)
                need = min_pp if (kind == "point" and pk == "point") else min_pe
                if near is not None and (px, py) == near:
                    continue
                if d < need:
                    ok = False
                    break
            if ok:
                placed.append((x, y, kind))
                return x, y
        raise RuntimeError("could not place the simulated sources: too many for the field")

    sources: list[Source] = []
    # Extended sources first (they need the most room): a blended pair, then isolated disks.
    for i in range(n_extended):
        if i == 1:
            x, y = draw("extended", near=placed[0][:2], sep=rng.uniform(1.3, 1.7) / PIXEL_SCALE)
        else:
            x, y = draw("extended")
        sources.append(
            Source(
                0, x, y, "extended",
                flux10=float(np.exp(rng.uniform(np.log(2e-4), np.log(1e-3)))),
                alpha=float(rng.uniform(0.0, 1.5)),
                r_eff=float(rng.uniform(0.4, 1.0)),
                axis_ratio=float(rng.uniform(0.4, 0.9)),
                pa=float(rng.uniform(0, 180)),
            )
        )
    for i in range(n_point):
        x, y = draw("point")
        if i == 0:  # bright star: its core saturates within the ramp in F770W
            flux10, alpha = 8e-3, -2.0
        else:
            flux10 = float(np.exp(rng.uniform(np.log(8e-5), np.log(1e-3))))
            alpha = float(rng.uniform(-1.0, 1.0))
        sources.append(Source(0, x, y, "point", flux10, alpha))
    sources.sort(key=lambda s: (s.kind != "point", s.y, s.x))
    return [replace(s, id=i + 1) for i, s in enumerate(sources)]


def _pixel_integrated_gaussian(x0: float, sigma: float, n: int, start: int) -> np.ndarray:
    edges = np.arange(start, start + n + 1) - 0.5 - x0
    cdf = np.array([0.5 * (1 + erf(e / (np.sqrt(2) * sigma))) for e in edges])
    return np.diff(cdf)


def render(
    shape: tuple[int, int],
    f: Filter,
    positions: list[tuple[Source, float, float, np.ndarray]],
    oversample: int = 3,
) -> np.ndarray:
    """Source count rate image in DN/s (before the flat) for one exposure.

    ``positions`` holds (source, x, y, J) with the source's pixel position in this exposure and
    J the 2x2 Jacobian d(pixel)/d(east, north arcsec) there. Point sources are Gaussians
    integrated exactly over pixels; disks are drawn on an oversampled grid, convolved with the
    PSF and binned.
    """
    from scipy.ndimage import gaussian_filter

    ny, nx = shape
    image = np.zeros(shape)
    sig = f.sigma_pix
    for src, x0, y0, jac in positions:
        total = src.flux(f) / f.jy_per_dn_s
        if src.kind == "point":
            h = int(np.ceil(7 * sig)) + 1
        else:
            h = int(np.ceil(5.5 * src.r_eff / PIXEL_SCALE / np.sqrt(src.axis_ratio) + 5 * sig)) + 2
        ix0, iy0 = int(np.floor(x0)) - h, int(np.floor(y0)) - h
        n = 2 * h + 2
        if ix0 + n <= 0 or iy0 + n <= 0 or ix0 >= nx or iy0 >= ny:
            continue
        if src.kind == "point":
            stamp = np.outer(
                _pixel_integrated_gaussian(y0, sig, n, iy0), _pixel_integrated_gaussian(x0, sig, n, ix0)
            ) * total
        else:
            sub = (np.arange(n * oversample) + 0.5) / oversample - 0.5
            gx = ix0 + sub - x0
            gy = iy0 + sub - y0
            dx, dy = np.meshgrid(gx, gy)
            inv = np.linalg.inv(jac)  # pixel offsets -> (east, north) arcsec
            east = inv[0, 0] * dx + inv[0, 1] * dy
            north = inv[1, 0] * dx + inv[1, 1] * dy
            pa = np.radians(src.pa)
            major = east * np.sin(pa) + north * np.cos(pa)
            minor = east * np.cos(pa) - north * np.sin(pa)
            r = np.hypot(major, minor / src.axis_ratio)
            fine = np.exp(-1.678 * r / src.r_eff)
            fine /= fine.sum()
            fine = gaussian_filter(fine, sig * oversample, mode="constant", truncate=6.0)
            stamp = fine.reshape(n, oversample, n, oversample).sum(axis=(1, 3)) * total
        ys, xs = slice(max(iy0, 0), min(iy0 + n, ny)), slice(max(ix0, 0), min(ix0 + n, nx))
        image[ys, xs] += stamp[ys.start - iy0 : ys.stop - iy0, xs.start - ix0 : xs.stop - ix0]
    return image
