"""The uncal (level-1b) ramps of a simulated observation, and its truth table.

Each exposure's sources are placed with the pipeline's own MIRI imaging WCS (jwst's
``assign_wcs.miri.imaging`` on the synthetic distortion and filter offsets), so the scene and
the WCS the pipeline later assigns agree exactly. The ramps are made with the detector model
of ``detector.py``, which the reference files hold too.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import writing
from . import detector as det
from .detector import SUBARRAYS, Subarray
from .params import Observation, SimParams, exposure_name, validate
from .references import reference_files, write_reference
from .savefile import save_model
from .scene import FILTER_INDEX, FILTERS, Filter, Source, make_sources, render

# A cycling dither pattern (arcsec along the detector axes): synthetic, not the flight table.
# Offsets mix whole and fractional pixels so the mosaic samples the PSF at several phases.
CYCLING = (
    (0.00, 0.00), (2.44, 1.39), (-1.27, 2.52), (-2.38, -1.16),
    (1.33, -2.47), (0.61, 0.83), (-0.72, -0.55), (2.05, -0.94),
)
EXPOSURE_GAP = 60.0  # s between exposures (slews, setup)
TDB_MINUS_UTC = 69.184 / 86400  # days; good enough for the simulated times


@dataclass(frozen=True)
class Pointing:
    ra_ref: float  # degrees: sky position of the aperture reference point
    dec_ref: float
    roll_ref: float  # degrees: position angle of V3 at the reference point
    dx: float  # arcsec: dither offset along the detector x axis
    dy: float


def dither_offsets(n: int) -> list[tuple[float, float]]:
    """The first ``n`` cycling positions; past 8 the cycle repeats shifted by a third of a pixel."""
    step = det.PIXEL_SCALE / 3
    return [
        (CYCLING[k % 8][0] + step * (k // 8), CYCLING[k % 8][1] + step * (k // 8)) for k in range(n)
    ]


def _reference_point(sub: Subarray) -> tuple[float, float, float, float]:
    """Subarray-centre pixel (0-based, subarray frame) and its (V2, V3): the aperture reference."""
    xc, yc = (sub.xsize - 1) / 2, (sub.ysize - 1) / 2
    v2, v3 = det.pixel_to_v2v3(xc + sub.xstart - 1, yc + sub.ystart - 1)
    return xc, yc, float(v2), float(v3)


class WcsMaker:
    """Exposure WCSs from jwst's MIRI imaging WCS code on the synthetic distortion.

    ``assign_wcs.miri.imaging`` is built once per filter (it reads the reference files); the
    pointing only enters its last transform, V2/V3 to sky, which is rebuilt per exposure with
    jwst's own ``v23tosky``.
    """

    def __init__(self, sub: Subarray, wcs_refs: dict[str, str]):
        from stdatamodels.jwst import datamodels

        self.sub, self.refs, self._steps = sub, wcs_refs, {}
        self.model = datamodels.ImageModel((sub.ysize, sub.xsize))
        m = self.model.meta
        m.instrument.name, m.instrument.detector = "MIRI", det.DETECTOR
        m.exposure.type = "MIR_IMAGE"
        m.subarray.name, m.subarray.xstart, m.subarray.ystart = sub.name, sub.xstart, sub.ystart
        m.subarray.xsize, m.subarray.ysize = sub.xsize, sub.ysize
        _, _, v2, v3 = _reference_point(sub)
        w = m.wcsinfo
        w.v2_ref, w.v3_ref, w.v3yangle, w.vparity = v2, v3, det.V3_YANGLE, det.VPARITY
        m.velocity_aberration.scale_factor = 1.0

    def _point(self, pointing: Pointing) -> None:
        w = self.model.meta.wcsinfo
        w.ra_ref, w.dec_ref, w.roll_ref = pointing.ra_ref, pointing.dec_ref, pointing.roll_ref

    def tel2sky(self, pointing: Pointing):
        """V2/V3 (arcsec) to RA/Dec (degrees) for this pointing."""
        from jwst.assign_wcs import pointing as jpointing

        self._point(pointing)
        return jpointing.v23tosky(self.model)

    def wcs(self, filt: str, pointing: Pointing):
        """The gwcs the pipeline's assign_wcs gives an exposure in ``filt`` at ``pointing``."""
        from gwcs import WCS
        from jwst.assign_wcs import miri

        if filt not in self._steps:
            self.model.meta.instrument.filter = filt
            self._point(pointing)
            self._steps[filt] = miri.imaging(self.model, self.refs)
        steps = [
            (frame, self.tel2sky(pointing) if getattr(frame, "name", frame) == "v2v3vacorr" else transform)
            for frame, transform in self._steps[filt]
        ]
        return WCS(steps)


def _v1_pointing(tel2sky) -> tuple[float, float, float]:
    """RA, Dec of the telescope V1 axis and the V3 position angle there."""
    ra1, dec1 = tel2sky(0.0, 0.0)
    ra2, dec2 = tel2sky(0.0, 60.0)
    d_ra = np.radians(ra2 - ra1)
    pa = np.degrees(
        np.arctan2(
            np.sin(d_ra) * np.cos(np.radians(dec2)),
            np.cos(np.radians(dec1)) * np.sin(np.radians(dec2))
            - np.sin(np.radians(dec1)) * np.cos(np.radians(dec2)) * np.cos(d_ra),
        )
    )
    return float(ra1) % 360, float(dec1), float(pa) % 360


def _positions(wcs, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel positions of (ra, dec) and d(pixel)/d(east, north arcsec) there, (n, 2, 2)."""
    to_pixel = wcs.backward_transform  # built once: gwcs rebuilds it on every world_to_pixel
    h = 0.5 / 3600
    dra = h / np.cos(np.radians(dec))
    x, y = to_pixel(ra, dec)
    xe, ye = to_pixel(ra + dra, dec)
    xw, yw = to_pixel(ra - dra, dec)
    xn, yn = to_pixel(ra, dec + h)
    xs, ys = to_pixel(ra, dec - h)
    jac = np.stack([np.stack([xe - xw, xn - xs], -1), np.stack([ye - yw, yn - ys], -1)], 1)  # 2h = 1"
    return np.asarray(x), np.asarray(y), jac


def _ramps(
    rng: np.random.Generator,
    sub: Subarray,
    rate: np.ndarray,
    p: SimParams,
) -> np.ndarray:
    """Raw uint16 ramps (nints, ngroups, ny, nx) for a count-rate image in DN/s (flat applied).

    Order of the detector effects mirrors the pipeline's corrections in reverse: photon and dark
    electrons accumulate (Poisson) with cosmic-ray hits; the linear level (bias + charge/gain)
    goes through the inverse linearity; read noise; the well saturates; the reset anomaly of
    the first groups and the EMI are added to the raw reads.
    """
    ny, nx = sub.ysize, sub.xsize
    tframe = sub.frame_time
    gain = det.gain(sub).astype(np.float64)
    e_per_frame = (rate + det.dark_rate(sub)) * gain * tframe
    bias, c2 = det.bias(sub), det.linearity_c2(sub).astype(np.float64)
    ceiling = det.saturation(sub) + det.SATURATION_MARGIN
    reset = det.reset_anomaly(sub)[: p.ngroups]
    readnoise = det.readnoise(sub)
    emi = det.emi_signal(sub, p.nints, p.ngroups, rng.uniform())
    area_cm2 = ny * nx * (25e-4) ** 2  # 25 µm pixels
    out = np.empty((p.nints, p.ngroups, ny, nx), np.uint16)
    for i in range(p.nints):
        charge = np.cumsum(rng.poisson(np.broadcast_to(e_per_frame, (p.ngroups, ny, nx))), axis=0, dtype=np.float64)
        n_cr = rng.poisson(p.cosmic_ray_rate * area_cm2 * (p.ngroups + 1) * tframe)
        for _ in range(n_cr):
            g, y, x = rng.integers(0, p.ngroups), rng.integers(0, ny), rng.integers(0, nx)
            q = np.exp(rng.uniform(np.log(1e3), np.log(2e4)))
            charge[g:, y, x] += q
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < ny and 0 <= xx < nx:
                    charge[g:, yy, xx] += 0.05 * q
        raw = det.linear_to_raw(bias + charge / gain, c2)
        raw += readnoise * rng.standard_normal(raw.shape)
        np.minimum(raw, ceiling, out=raw)
        raw[: len(reset)] += reset
        raw += emi[i]
        out[i] = np.clip(np.rint(raw), 0, 65535).astype(np.uint16)
    return out


def _mjd(isot: str) -> float:
    from astropy.time import Time

    return float(Time(isot, format="isot", scale="utc").mjd)


def _isot(mjd: float) -> str:
    from astropy.time import Time

    return Time(mjd, format="mjd", scale="utc").isot


def _fill_metadata(model, p: SimParams, sub: Subarray, filt: str, ifilt: int, k: int,
                   pointing: Pointing, start_mjd: float, wcs, v1: tuple[float, float, float]) -> None:
    m = model.meta
    tframe = sub.frame_time
    xc, yc, v2, v3 = _reference_point(sub)
    m.origin = "appliance.simulate"
    m.telescope = "JWST"
    act, expnum = f"{ifilt + 1:02d}", f"{k + 1:05d}"  # activity per filter, exposure per dither
    m.filename = f"{exposure_name(p, ifilt, k)}_uncal.fits"
    m.program.title = "SIMULATED MIRI imaging (appliance demo; synthetic data)"
    m.program.pi_name = "SIMULATED"
    m.program.category = "CAL"
    o = m.observation
    o.program_number, o.observation_number, o.visit_number = p.program, p.observation, p.visit
    o.visit_group, o.sequence_id, o.activity_id, o.exposure_number = "02", "1", act, expnum
    o.visit_id = f"{p.program}{p.observation}{p.visit}"
    o.obs_id = f"V{o.visit_id}P00000000{o.visit_group}{o.sequence_id}{act}"
    o.template = "MIRI Imaging"
    o.observation_label = "simulated"
    o.bkgdtarg = False
    start = _isot(start_mjd)
    o.date, o.time = start[:10], start[11:]
    o.date_beg = start
    m.visit.type = "PRIME_TARGETED_FIXED"
    m.visit.tsovisit = False
    m.visit.crowded_field = False
    m.visit.engineering_quality = "OK"
    m.visit.total_exposures = len(p.filters) * p.dithers
    t = m.target
    t.proposer_name = t.catalog_name = "SIMULATED-FIELD"
    t.type = "FIXED"
    t.ra, t.dec = p.ra, p.dec
    t.proposer_ra, t.proposer_dec = p.ra, p.dec
    t.source_type_apt = "EXTENDED"
    i = m.instrument
    i.name, i.detector, i.filter = "MIRI", det.DETECTOR, filt
    e = m.exposure
    e.type = "MIR_IMAGE"
    e.readpatt = det.READPATT
    e.nints, e.ngroups, e.nframes, e.groupgap = p.nints, p.ngroups, 1, 0
    e.nsamples, e.sample_time = 1, 10.0
    e.nresets_at_start, e.nresets_between_ints = 1, 1
    e.drop_frames1, e.drop_frames3 = 0, 0
    e.frame_time = e.group_time = tframe
    e.integration_time = p.ngroups * tframe
    e.exposure_time = e.effective_exposure_time = p.nints * p.ngroups * tframe
    e.measurement_time = p.nints * (p.ngroups - 1) * tframe
    duration = p.nints * (p.ngroups + 1) * tframe
    e.duration = e.elapsed_exposure_time = duration
    end_mjd = start_mjd + duration / 86400
    e.start_time = e.start_time_mjd = start_mjd
    e.end_time = e.end_time_mjd = end_mjd
    e.mid_time = e.mid_time_mjd = (start_mjd + end_mjd) / 2
    e.start_time_tdb, e.mid_time_tdb, e.end_time_tdb = (
        t_ + TDB_MINUS_UTC for t_ in (start_mjd, (start_mjd + end_mjd) / 2, end_mjd)
    )
    e.zero_frame = False
    e.data_problem = False
    o.date_end = _isot(end_mjd)
    s = m.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = sub.name, sub.xstart, sub.ystart, sub.xsize, sub.ysize
    s.fastaxis, s.slowaxis = 1, 2
    d = m.dither
    d.primary_type = "CYCLING"
    d.position_number = k + 1
    d.total_points = d.dither_points = p.dithers
    d.pattern_start = 1
    d.pattern_size = "SMALL"
    d.x_offset, d.y_offset = pointing.dx, pointing.dy
    m.aperture.name = m.aperture.pps_name = sub.aperture
    m.aperture.position_angle = pointing.roll_ref
    m.pointing.ra_v1, m.pointing.dec_v1, m.pointing.pa_v3 = v1
    w = m.wcsinfo
    w.v2_ref, w.v3_ref, w.v3yangle, w.vparity = v2, v3, det.V3_YANGLE, det.VPARITY
    w.ra_ref, w.dec_ref, w.roll_ref = pointing.ra_ref, pointing.dec_ref, pointing.roll_ref
    w.siaf_xref_sci, w.siaf_yref_sci = xc + 1, yc + 1
    # A FITS TAN approximation of the WCS for viewers (the pipeline builds its own).
    x0, y0 = xc, yc
    ra_c, dec_c = wcs(x0, y0)
    ra_x, dec_x = wcs(x0 + 1, y0)
    ra_y, dec_y = wcs(x0, y0 + 1)
    cosd = np.cos(np.radians(dec_c))
    w.wcsaxes = 2
    w.ctype1, w.ctype2, w.cunit1, w.cunit2 = "RA---TAN", "DEC--TAN", "deg", "deg"
    w.crpix1, w.crpix2 = x0 + 1, y0 + 1
    w.crval1, w.crval2 = float(ra_c), float(dec_c)
    w.cdelt1 = w.cdelt2 = 1.0
    w.pc1_1, w.pc1_2 = float((ra_x - ra_c) * cosd), float((ra_y - ra_c) * cosd)
    w.pc2_1, w.pc2_2 = float(dec_x - dec_c), float(dec_y - dec_c)
    m.velocity_aberration.scale_factor = 1.0
    m.velocity_aberration.ra_reference = pointing.ra_ref
    m.velocity_aberration.dec_reference = pointing.dec_ref
    # Integration times table (required by the pipeline since jwst 2.0).
    rows = []
    for n in range(p.nints):
        t0 = start_mjd + n * (p.ngroups + 1) * tframe / 86400
        t1 = t0 + p.ngroups * tframe / 86400
        tm = (t0 + t1) / 2
        rows.append((n + 1, t0, tm, t1, t0 + TDB_MINUS_UTC, tm + TDB_MINUS_UTC, t1 + TDB_MINUS_UTC))
    model.int_times = np.array(rows, dtype=[
        ("integration_number", "<i4"), ("int_start_MJD_UTC", "<f8"), ("int_mid_MJD_UTC", "<f8"),
        ("int_end_MJD_UTC", "<f8"), ("int_start_BJD_TDB", "<f8"), ("int_mid_BJD_TDB", "<f8"),
        ("int_end_BJD_TDB", "<f8"),
    ])


def _write_truth(path: Path, sources: list[Source], radec: list[tuple[float, float]], p: SimParams) -> None:
    import astropy.units as u
    from astropy.table import Table

    table = Table()
    table["id"] = [s.id for s in sources]
    table["ra"] = np.array([r for r, _ in radec]) * u.deg
    table["dec"] = np.array([d for _, d in radec]) * u.deg
    table["kind"] = [s.kind for s in sources]
    for name in p.filters:
        table[f"flux_{name}"] = np.array([s.flux(FILTERS[name]) for s in sources]) * u.Jy
    table["r_eff"] = np.array([s.r_eff for s in sources]) * u.arcsec
    table["axis_ratio"] = [s.axis_ratio for s in sources]
    table["pa"] = np.array([s.pa for s in sources]) * u.deg
    for col, desc in (
        ("id", "source number"), ("kind", "point (Gaussian PSF) or extended (exponential disk, PSF-convolved)"),
        ("r_eff", "half-light radius of extended sources"), ("axis_ratio", "minor/major axis"),
        ("pa", "major axis, east of north"),
    ):
        table[col].description = desc
    for name in p.filters:
        table[f"flux_{name}"].description = f"total flux density in {name} (what the catalog's aper_total_flux measures)"
    table.meta = {
        "description": "Truth of the simulated MIRI imaging observation (synthetic data)",
        "seed": p.seed,
        "subarray": p.subarray,
        "background_DN_per_s": {n: FILTERS[n].background for n in p.filters},
        "background_MJy_per_sr": {n: round(FILTERS[n].background * FILTERS[n].photmjsr, 6) for n in p.filters},
        "photmjsr": {n: FILTERS[n].photmjsr for n in p.filters},
        "psf_fwhm_arcsec": {n: FILTERS[n].fwhm for n in p.filters},
        "units": "flux in Jy; background before the flat in DN/s per pixel (rate images) and MJy/sr (cal images)",
    }
    with writing(path) as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)


def simulate(out_dir: Path, p: SimParams) -> Observation:
    """Write the uncal files and truth.ecsv of one simulated observation."""
    from stdatamodels.jwst import datamodels

    validate(p)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sub = SUBARRAYS[p.subarray]
    offsets = dither_offsets(p.dithers)
    with tempfile.TemporaryDirectory() as tmp:
        wcs_refs = {
            r.reftype: str(write_reference(r, Path(tmp)))
            for r in reference_files()
            if r.reftype in ("distortion", "filteroffset")
        }
        base = Pointing(p.ra, p.dec, p.pa_v3, 0.0, 0.0)
        maker = WcsMaker(sub, wcs_refs)
        ref_wcs = maker.wcs(p.filters[0], base)
        xc, yc, _, _ = _reference_point(sub)
        max_off = max(np.hypot(dx, dy) for dx, dy in offsets) / det.PIXEL_SCALE
        half = min(sub.xsize, sub.ysize) / 2 - max_off - 15
        rng = np.random.default_rng((p.seed, 1_000_000))
        sources = make_sources(rng, (xc, yc), half, p.n_point_sources, p.n_extended_sources)
        radec = [tuple(float(v) for v in ref_wcs(s.x, s.y)) for s in sources]

        pointings = []
        for dx, dy in offsets:
            ra, dec = ref_wcs(xc - dx / det.PIXEL_SCALE, yc - dy / det.PIXEL_SCALE)
            pointings.append(Pointing(float(ra), float(dec), p.pa_v3, dx, dy))

        files = []
        mjd = _mjd(p.date)
        for ifilt, name in enumerate(p.filters):
            filt: Filter = FILTERS[name]
            flat = np.where(det.response(sub) > 0, det.flat(sub, FILTER_INDEX[name]), 0.0)
            for k, pointing in enumerate(pointings):
                rng = np.random.default_rng((p.seed, FILTER_INDEX[name], k))
                wcs = maker.wcs(name, pointing)
                xs, ys, jacs = _positions(wcs, *np.array(radec).T)
                placed = list(zip(sources, xs, ys, jacs))
                rate = (filt.background + render((sub.ysize, sub.xsize), filt, placed)) * flat
                model = datamodels.Level1bModel(data=_ramps(rng, sub, rate, p))
                _fill_metadata(model, p, sub, name, ifilt, k, pointing, mjd, wcs,
                               _v1_pointing(maker.tel2sky(pointing)))
                path = out_dir / model.meta.filename
                save_model(model, path)
                files.append(path)
                mjd += (model.meta.exposure.duration + EXPOSURE_GAP) / 86400
    truth = out_dir / "truth.ecsv"
    _write_truth(truth, sources, radec, p)
    return Observation(sorted(files), truth)
