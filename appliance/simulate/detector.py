"""The MIRI imager detector model shared by the reference files and the exposures.

Every array here is made once, deterministically, on the full 1024 x 1032 frame and cut for a
subarray. The reference-file writer (``references.py``) and the exposure maker (``exposures.py``)
both read these same arrays, so each calibration step of the pipeline undoes exactly what the
simulation did. Nothing in this module imports jwst or stdatamodels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DETECTOR = "MIRIMAGE"
READPATT = "FASTR1"
FULL_NY, FULL_NX = 1024, 1032  # rows, columns of the MIRI imager detector
DETECTOR_SEED = 9000  # fixed: the detector (and so the CRDS cache) does not depend on the observation seed
PIXEL_CLOCK = 10e-6  # s per pixel clock (FAST readout, one sample per pixel)

# Mean detector properties (DN = data numbers of the raw ramps).
GAIN = 5.5  # e-/DN
GAIN_SCATTER = 0.02  # relative pixel-to-pixel
READ_NOISE = 5.0  # DN per read (per frame; FASTR1 has one frame per group)
BIAS = 10000.0  # DN pedestal of a freshly reset pixel (not calibrated: removed by the slope fit)
BIAS_SCATTER = 200.0  # DN
DARK_RATE = 0.2  # DN/s typical dark current
HOT_FRACTION = 2e-4  # fraction of pixels with a hot (high) dark current
HOT_MASKED = 300.0  # DN/s: hot pixels above this are flagged HOT + DO_NOT_USE in the mask
DEAD_FRACTION = 1e-4  # fraction of pixels without response (DEAD + DO_NOT_USE)
LIN_C2 = 1.5e-6  # 1/DN: linearity correction L = D + c2 * D**2 (about 9 % at saturation)
LIN_C2_SCATTER = 0.05  # relative
SATURATION = 58000.0  # DN (raw): the saturation reference threshold
SATURATION_SCATTER = 300.0  # DN
SATURATION_MARGIN = 1500.0  # DN: raw ramps stop this far above the threshold (the physical well)
RESET_AMPLITUDE = 25.0  # DN: reset anomaly in the first group, decaying over the first groups
RESET_DECAY = 0.8  # groups (e-folding)
RESET_NGROUPS = 3  # groups of the reset reference (the anomaly beyond is taken as zero)
EMI_FREQUENCY = 218.52  # Hz: one of MIRI's "218 Hz" interferences (390.625 Hz is in step with SUB256 frames)
EMI_NAME = "Hz218a"
EMI_AMPLITUDE = 1.5  # DN
EMI_NBINS = 128  # samples of the reference waveform over one period (SUB256 reads only 256 phases)
FLAT_SCATTER = 0.015  # relative pixel-to-pixel response
FLAT_VIGNETTING = 0.04  # relative drop of the response at the frame corners
REFERENCE_COLUMNS = 4  # full-frame columns 1-4 and 1029-1032 are reference pixels (no light)

# DQ bits (stdatamodels.jwst.datamodels.dqflags.pixel; checked by the tests).
DO_NOT_USE = 1
DEAD = 1024
HOT = 2048
REFERENCE_PIXEL = 2147483648


@dataclass(frozen=True)
class Subarray:
    """A readout window: 1-based start and size on the full frame, and its FAST-mode timing."""

    name: str
    xstart: int
    ystart: int
    xsize: int
    ysize: int
    rowclocks: int  # pixel clocks per row (emicorr's timing model)
    frameclocks: int  # pixel clocks of a reset frame
    dark_ngroups: int  # groups of the dark reference; stcal extrapolates the (linear) dark beyond

    @property
    def slices(self) -> tuple[slice, slice]:
        """Numpy slices (rows, columns) of this window in a full-frame array."""
        y0, x0 = self.ystart - 1, self.xstart - 1
        return slice(y0, y0 + self.ysize), slice(x0, x0 + self.xsize)

    @property
    def frame_time(self) -> float:
        """Seconds per frame: rows times row clocks plus the skipped rows (7 clocks each)."""
        return self.frame_clocks * PIXEL_CLOCK

    @property
    def frame_clocks(self) -> float:
        return self.ysize * self.rowclocks + (FULL_NY - self.ysize) * 7.0

    @property
    def aperture(self) -> str:
        return f"MIRIM_{self.name}"

    @property
    def emi_name(self) -> str:
        """The subarray case name in the EMI reference (full frame carries the readout speed)."""
        return "FULL_FAST" if self.name == "FULL" else self.name


SUBARRAYS = {
    "SUB256": Subarray("SUB256", 413, 51, 256, 256, 96, 29952, 20),
    "FULL": Subarray("FULL", 1, 1, FULL_NX, FULL_NY, 271, 277504, 10),
}


def _rng(stream: int) -> np.random.Generator:
    return np.random.default_rng((DETECTOR_SEED, stream))


def _cut(full: np.ndarray, sub: Subarray) -> np.ndarray:
    return np.ascontiguousarray(full[(..., *sub.slices)])


@lru_cache(maxsize=1)
def _pixel_classes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean full-frame maps: hot pixels, dead pixels, reference-pixel columns."""
    rng = _rng(1)
    u = rng.random((FULL_NY, FULL_NX))
    hot = u < HOT_FRACTION
    dead = (u >= HOT_FRACTION) & (u < HOT_FRACTION + DEAD_FRACTION)
    ref = np.zeros((FULL_NY, FULL_NX), bool)
    ref[:, :REFERENCE_COLUMNS] = True
    ref[:, -REFERENCE_COLUMNS:] = True
    return hot & ~ref, dead & ~ref, ref


@lru_cache(maxsize=1)
def _full_maps() -> dict[str, np.ndarray]:
    rng = _rng(2)
    shape = (FULL_NY, FULL_NX)
    hot, dead, ref = _pixel_classes()
    gain = GAIN * (1 + GAIN_SCATTER * rng.standard_normal(shape))
    bias = BIAS + BIAS_SCATTER * rng.standard_normal(shape)
    dark = DARK_RATE * np.exp(0.3 * rng.standard_normal(shape))
    dark[hot] = np.exp(rng.uniform(np.log(20.0), np.log(3e4), hot.sum()))
    dark[ref] = 0.0  # reference pixels: no photodiode, no dark current
    c2 = LIN_C2 * (1 + LIN_C2_SCATTER * rng.standard_normal(shape))
    sat = SATURATION + SATURATION_SCATTER * rng.standard_normal(shape)
    reset0 = RESET_AMPLITUDE * (1 + 0.2 * rng.standard_normal(shape))
    readnoise = READ_NOISE * (1 + 0.05 * rng.standard_normal(shape))
    pixflat = 1 + FLAT_SCATTER * rng.standard_normal(shape)
    return {
        "gain": gain.astype(np.float32),
        "bias": bias,
        "dark": dark.astype(np.float32),
        "c2": c2.astype(np.float32),
        "saturation": sat.astype(np.float32),
        "reset0": reset0.astype(np.float32),
        "readnoise": readnoise.astype(np.float32),
        "pixflat": pixflat,
    }


def gain(sub: Subarray) -> np.ndarray:
    """Gain in e-/DN (GAIN reference)."""
    return _cut(_full_maps()["gain"], sub)


def readnoise(sub: Subarray) -> np.ndarray:
    """Read noise of one read in DN (READNOISE reference)."""
    return _cut(_full_maps()["readnoise"], sub)


def bias(sub: Subarray) -> np.ndarray:
    """Reset level in DN; no reference file: the slope fit ignores it."""
    return _cut(_full_maps()["bias"], sub)


def dark_rate(sub: Subarray) -> np.ndarray:
    """Dark current in DN/s (linearised), hot pixels included."""
    return _cut(_full_maps()["dark"], sub)


def dark_groups(sub: Subarray, ngroups: int) -> np.ndarray:
    """Accumulated dark in DN at each group read, (ngroups, ny, nx) float32 (DARK reference).

    The dark is linear in time, so stcal's extrapolation beyond the reference's groups is exact.
    """
    t = sub.frame_time * np.arange(1, ngroups + 1, dtype=np.float32)
    return t[:, None, None] * dark_rate(sub)[None]


def linearity_c2(sub: Subarray) -> np.ndarray:
    """Quadratic linearity coefficient in 1/DN (LINEARITY reference: coeffs [0, 1, c2])."""
    return _cut(_full_maps()["c2"], sub)


def saturation(sub: Subarray) -> np.ndarray:
    """Raw saturation threshold in DN (SATURATION reference)."""
    return _cut(_full_maps()["saturation"], sub)


def reset_anomaly(sub: Subarray) -> np.ndarray:
    """Raw reset anomaly in DN of the first RESET_NGROUPS groups, (groups, ny, nx) float32."""
    decay = np.exp(-np.arange(RESET_NGROUPS) / RESET_DECAY).astype(np.float32)
    return decay[:, None, None] * _cut(_full_maps()["reset0"], sub)[None]


def mask(sub: Subarray) -> np.ndarray:
    """Bad-pixel DQ (MASK reference): very hot and dead pixels, reference columns (full frame)."""
    hot, dead, ref = (_cut(a, sub) for a in _pixel_classes())
    dq = np.zeros(hot.shape, np.uint32)
    veryhot = hot & (dark_rate(sub) > HOT_MASKED)
    dq[veryhot] |= HOT | DO_NOT_USE
    dq[dead] |= DEAD | DO_NOT_USE
    dq[ref] |= REFERENCE_PIXEL  # usable by the full-frame refpix step; the flat excludes them later
    return dq


def response(sub: Subarray) -> np.ndarray:
    """1 where a pixel sees light, 0 for dead pixels and reference columns."""
    _, dead, ref = (_cut(a, sub) for a in _pixel_classes())
    return (~(dead | ref)).astype(np.float64)


@lru_cache(maxsize=16)
def _full_flat(filter_index: int) -> np.ndarray:
    """Full-frame flat of one filter: pixel response times a vignetting that shifts with filter."""
    y, x = np.mgrid[0:FULL_NY, 0:FULL_NX]
    cx = FULL_NX / 2 + 40.0 * np.cos(filter_index)
    cy = FULL_NY / 2 + 40.0 * np.sin(filter_index)
    r2 = ((x - cx) ** 2 + (y - cy) ** 2) / ((FULL_NX / 2) ** 2 + (FULL_NY / 2) ** 2)
    flat = _full_maps()["pixflat"] * (1 - FLAT_VIGNETTING * r2)
    _, _, ref = _pixel_classes()
    flat /= np.median(flat[~ref])
    flat[ref] = np.nan  # flat_field flags NaN as NO_FLAT_FIELD + DO_NOT_USE
    return flat.astype(np.float32)


def flat(sub: Subarray, filter_index: int) -> np.ndarray:
    """Relative response (FLAT reference) of a filter, median 1 over the light-sensitive frame.

    NaN on the reference columns, which see no light.
    """
    return _cut(_full_flat(filter_index), sub)


def linear_to_raw(lin: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Invert the linearity correction L = D + c2 D**2: the raw DN a linear level reads as."""
    return 2.0 * lin / (1.0 + np.sqrt(1.0 + 4.0 * c2 * lin))


def raw_to_linear(raw: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """The pipeline's linearity correction, for tests."""
    return raw + c2 * raw * raw


def emi_waveform() -> np.ndarray:
    """Unit-amplitude EMI waveform over one period (the EMICORR reference's phase amplitudes)."""
    return np.sin(2 * np.pi * np.arange(EMI_NBINS) / EMI_NBINS).astype(np.float32)


def emi_signal(sub: Subarray, nints: int, ngroups: int, phase0: float) -> np.ndarray:
    """EMI in DN at each read, (nints, ngroups, ny, nx), with emicorr's model of read times.

    Four output channels read columns in parallel; a row takes ``rowclocks`` pixel clocks, a
    frame ``frame_clocks``, and FASTR1 adds a reset frame between integrations.
    """
    ny, nx = sub.ysize, sub.xsize
    period = 1.0 / EMI_FREQUENCY / PIXEL_CLOCK
    row_t = np.arange(ny)[:, None] * sub.rowclocks + (np.arange(nx) // 4)[None, :]
    group_t = np.arange(ngroups) * sub.frame_clocks
    int_t = np.arange(nints) * (ngroups * sub.frame_clocks + sub.frameclocks)
    t = int_t[:, None, None, None] + group_t[None, :, None, None] + row_t[None, None]
    return EMI_AMPLITUDE * np.sin(2 * np.pi * (t / period + phase0))


# Focal-plane geometry (the synthetic DISTORTION reference): affine, no optical distortion.
PIXEL_SCALE = 0.1108  # arcsec per pixel, both axes
X_REF, Y_REF = 515.5, 511.5  # 0-based full-frame pixel of the MIRIM_FULL reference point
V2_REF, V3_REF = -453.559, -373.814  # arcsec: where that pixel lies in the telescope frame
V3_YANGLE = 4.83544  # degrees: angle of the ideal y axis from V3
VPARITY = -1


def v2v3_matrix() -> np.ndarray:
    """2x2 matrix from (x, y) pixel offsets to (V2, V3) arcsec (SIAF ideal-to-V2V3 convention)."""
    c, s = np.cos(np.radians(V3_YANGLE)), np.sin(np.radians(V3_YANGLE))
    return PIXEL_SCALE * np.array([[VPARITY * c, s], [-VPARITY * s, c]])


def pixel_to_v2v3(x, y):
    """Full-frame 0-based pixel to (V2, V3) in arcsec."""
    m = v2v3_matrix()
    dx, dy = np.asarray(x) - X_REF, np.asarray(y) - Y_REF
    return V2_REF + m[0, 0] * dx + m[0, 1] * dy, V3_REF + m[1, 0] * dx + m[1, 1] * dy
