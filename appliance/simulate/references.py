"""The synthetic reference files: one per reference type and configuration, from the detector model.

``reference_files()`` lists every file with its reference type and the parameter values it
matches (the rmaps are written from the same list); ``write_reference()`` makes one. Every file
says in its metadata that it is synthetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import detector as det
from .detector import SUBARRAYS, Subarray
from .savefile import FILE_DATE, save_asdf_tree, save_model
from .scene import EE_FRACTIONS, FILTER_INDEX, FILTERS, PIXEL_AREA_ARCSEC2, PIXEL_AREA_SR
from .scene import background_annulus, encircled_energy_radii

USEAFTER = "2022-01-01T00:00:00"  # before any simulated observation
AUTHOR = "appliance.simulate (synthetic)"
PEDIGREE = "SIMULATION"
ORIGIN = "appliance.simulate"

# Parameters each reference type is selected on (besides the USEAFTER date).
PARKEYS = {
    "mask": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "saturation": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "gain": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "readnoise": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "linearity": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "dark": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME", "META.EXPOSURE.READPATT"),
    "reset": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME", "META.EXPOSURE.READPATT"),
    "rscd": ("META.INSTRUMENT.DETECTOR",),
    "emicorr": ("META.INSTRUMENT.DETECTOR",),
    "flat": ("META.INSTRUMENT.DETECTOR", "META.INSTRUMENT.FILTER", "META.SUBARRAY.NAME"),
    "photom": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "area": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "distortion": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "filteroffset": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "apcorr": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "abvegaoffset": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "pars-emicorrstep": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
}

# Reference types the MIRI imaging stages request that do not apply to them (N/A in the imap).
NOT_APPLICABLE = (
    "bkg", "camera", "chromcorr", "collimator", "dflat", "disperser", "fflat", "fore", "fpa", "ifufore",
    "ifupost", "ifuslicer", "ipc", "msa", "ote", "refpix", "regions", "sflat", "sirskernel",
    "specwcs", "superbias", "wavelengthrange",
    "persat", "trapdensity", "trappars",  # persistence asks for them before jwst 3.0 (#10091 rewrote it)
)
# Step-parameter types (known to crds) without a synthetic file: the code defaults apply.
PARS_NOT_APPLICABLE = (
    "pars-assignmtwcsstep", "pars-assignwcsstep", "pars-backgroundstep", "pars-chargemigrationstep",
    "pars-cleanflickernoisestep", "pars-darkcurrentstep", "pars-pictureframestep",
    "pars-detector1pipeline", "pars-dqinitstep", "pars-firstframestep", "pars-flatfieldstep",
    "pars-gainscalestep", "pars-groupscalestep", "pars-image2pipeline", "pars-image3pipeline",
    "pars-ipcstep", "pars-jumpstep", "pars-lastframestep", "pars-linearitystep",
    "pars-outlierdetectionstep", "pars-persistencestep", "pars-photomstep", "pars-rampfitstep",
    "pars-refpixstep", "pars-resamplestep", "pars-resetstep", "pars-rscdstep",
    "pars-saturationstep", "pars-skymatchstep", "pars-sourcecatalogstep", "pars-superbiasstep",
    "pars-tweakregstep",
)
IMAGING = ("MIRIMAGE", "MIR_IMAGE")


@dataclass(frozen=True)
class RefFile:
    """One reference file: its type, CRDS-style name, the parkey values it matches, its maker."""

    reftype: str
    name: str
    match: tuple[str, ...]
    make: Callable[[], object]  # returns a datamodel, or a dict (a plain ASDF tree)


def _common(model, description: str, sub: Subarray | None = None) -> None:
    m = model.meta
    m.author = AUTHOR
    m.pedigree = PEDIGREE
    m.description = f"SYNTHETIC, for simulated data only: {description}"
    m.useafter = USEAFTER
    m.origin = ORIGIN
    m.telescope = "JWST"
    m.instrument.name = "MIRI"
    m.instrument.detector = det.DETECTOR
    try:
        m.exposure.type = "MIR_IMAGE"
    except AttributeError:  # schemas without exposure metadata (e.g. RSCD)
        pass
    if sub is not None:
        try:
            s = m.subarray
        except AttributeError:  # e.g. the pixel-area schema: always full frame
            return
        s.name, s.xstart, s.ystart, s.xsize, s.ysize = sub.name, sub.xstart, sub.ystart, sub.xsize, sub.ysize
        s.fastaxis, s.slowaxis = 1, 2


def _readout(model, ngroups: int, nints: int) -> None:
    e = model.meta.exposure
    e.readpatt = det.READPATT
    e.nframes, e.groupgap, e.ngroups, e.nints = 1, 0, ngroups, nints


def _mask(sub):
    from stdatamodels.jwst import datamodels

    m = datamodels.MaskModel(dq=det.mask(sub))
    _common(m, "bad pixels: very hot, dead, reference columns", sub)
    return m


def _saturation(sub):
    from stdatamodels.jwst import datamodels

    m = datamodels.SaturationModel(data=det.saturation(sub))
    _common(m, "raw saturation threshold (DN)", sub)
    return m


def _gain(sub):
    from stdatamodels.jwst import datamodels

    m = datamodels.GainModel(data=det.gain(sub))
    _common(m, "gain (e-/DN)", sub)
    m.meta.bunit_data = "electron/DN"
    return m


def _readnoise(sub):
    from stdatamodels.jwst import datamodels

    m = datamodels.ReadnoiseModel(data=det.readnoise(sub))
    _common(m, "read noise of one read (DN)", sub)
    m.meta.bunit_data = "DN"
    return m


def _linearity(sub):
    from stdatamodels.jwst import datamodels

    c2 = det.linearity_c2(sub)
    coeffs = np.stack([np.zeros_like(c2), np.ones_like(c2), c2]).astype(np.float32)
    m = datamodels.LinearityModel(coeffs=coeffs, dq=np.zeros(c2.shape, np.uint32))
    _common(m, "linearity: L = D + c2 D^2", sub)
    return m


def _dark(sub):
    from stdatamodels.jwst import datamodels

    data = det.dark_groups(sub, sub.dark_ngroups)[None].astype(np.float32)
    dq = np.zeros((1, 1, sub.ysize, sub.xsize), np.uint32)
    m = datamodels.DarkMIRIModel(data=data, dq=dq)
    _common(m, "dark current, linear in time (DN)", sub)
    _readout(m, sub.dark_ngroups, 1)
    m.meta.exposure.average_dark_current = float(det.DARK_RATE * det.GAIN)
    return m


def _reset(sub):
    from stdatamodels.jwst import datamodels

    data = det.reset_anomaly(sub)[None].astype(np.float32)
    m = datamodels.ResetModel(data=data, dq=np.zeros((sub.ysize, sub.xsize), np.uint32))
    _common(m, "reset anomaly of the first groups (DN)", sub)
    _readout(m, det.RESET_NGROUPS, 1)
    return m


def _rscd():
    from stdatamodels.jwst import datamodels

    from appliance.compat import table_columns

    dtypes = {"subarray": "S17", "readpatt": "S12", "group_skip1": "<i4", "group_skip": "<i4"}
    names = table_columns(datamodels.RSCDModel(), "rscd_group_skip_table")  # group_skip1: stdatamodels >= 5
    rows = [tuple({"subarray": s, "readpatt": r, "group_skip1": 1, "group_skip": 2}[n] for n in names)
            for s in SUBARRAYS for r in ("FAST", det.READPATT)]
    table = np.array(rows, dtype=[(n, dtypes[n]) for n in names])
    m = datamodels.RSCDModel(rscd_group_skip_table=table)
    _common(m, "RSCD initial groups to flag (the effect itself is not simulated)")
    return m


def _emicorr():
    from stdatamodels.jwst import datamodels

    m = datamodels.EmiModel()
    m.frequencies = {det.EMI_NAME: {"frequency": det.EMI_FREQUENCY, "phase_amplitudes": det.emi_waveform()}}
    m.subarray_cases = {
        sub.emi_name: {
            "rowclocks": sub.rowclocks,
            "frameclocks": sub.frameclocks,
            "freqs": {"FAST": [det.EMI_NAME], "SLOW": {det.DETECTOR: [det.EMI_NAME]}},
        }
        for sub in SUBARRAYS.values()
    }
    _common(m, f"EMI reference waveform (unit sine at {det.EMI_FREQUENCY} Hz)")
    return m


def _flat(sub, filt):
    from stdatamodels.jwst import datamodels

    m = datamodels.FlatModel(data=det.flat(sub, FILTER_INDEX[filt]))
    _common(m, f"flat field {filt}", sub)
    m.meta.instrument.filter = filt
    return m


def _photom():
    from stdatamodels.jwst import datamodels

    rows = [(f, s, FILTERS[f].photmjsr, 0.02 * FILTERS[f].photmjsr) for f in FILTERS for s in SUBARRAYS]
    table = np.array(rows, dtype=[("filter", "S12"), ("subarray", "S17"), ("photmjsr", "<f4"), ("uncertainty", "<f4")])
    m = datamodels.MirImgPhotomModel(phot_table=table)
    _common(m, "flux calibration (MJy/sr per DN/s)")
    m.meta.photometry.pixelarea_steradians = PIXEL_AREA_SR
    m.meta.photometry.pixelarea_arcsecsq = PIXEL_AREA_ARCSEC2
    return m


def _area():
    from stdatamodels.jwst import datamodels

    m = datamodels.PixelAreaModel(data=np.ones((det.FULL_NY, det.FULL_NX), np.float32))
    _common(m, "relative pixel area (uniform: affine distortion)", SUBARRAYS["FULL"])
    m.meta.photometry.pixelarea_steradians = PIXEL_AREA_SR
    m.meta.photometry.pixelarea_arcsecsq = PIXEL_AREA_ARCSEC2
    return m


def distortion_transform():
    """Full-frame 0-based pixels to (V2, V3) arcsec: the DISTORTION reference's model."""
    from astropy.modeling import models

    mat = det.v2v3_matrix()
    return (models.Shift(-det.X_REF) & models.Shift(-det.Y_REF)) | models.AffineTransformation2D(
        matrix=mat, translation=[det.V2_REF, det.V3_REF]
    )


def _distortion():
    from stdatamodels.jwst import datamodels

    m = datamodels.DistortionModel()
    m.model = distortion_transform()
    _common(m, "pixel to V2/V3: shift and affine transform, no optical distortion")
    m.meta.input_units = "pixel"
    m.meta.output_units = "arcsec"
    return m


def _filteroffset():
    from stdatamodels.jwst import datamodels

    m = datamodels.FilteroffsetModel()
    m.filters = [
        {"filter": f.name, "column_offset": f.col_offset, "row_offset": f.row_offset} for f in FILTERS.values()
    ]
    _common(m, "filter-dependent boresight offsets (pixels)")
    m.meta.input_units = "pixel"
    return m


def _apcorr():
    from stdatamodels.jwst import datamodels

    rows = []
    for f in FILTERS.values():
        radii = encircled_energy_radii(f)
        skyin, skyout = background_annulus(f)
        for s in SUBARRAYS:
            for ee, r in zip(EE_FRACTIONS, radii):
                rows.append((f.name, s, ee, r, 1.0 / ee, skyin, skyout))
    dtype = [("filter", "S12"), ("subarray", "S17"), ("eefraction", "<f4"), ("radius", "<f4"),
             ("apcorr", "<f4"), ("skyin", "<f4"), ("skyout", "<f4")]
    m = datamodels.MirImgApcorrModel(apcorr_table=np.array(rows, dtype=dtype))
    _common(m, "aperture corrections for the Gaussian PSF on resampled mosaics")
    return m


def _abvegaoffset():
    from astropy.table import Table
    from stdatamodels.jwst import datamodels

    m = datamodels.ABVegaOffsetModel()
    names = list(FILTERS)
    m.abvega_offset = Table(
        {"filter": names, "abvega_offset": [2.5 * np.log10(3631.0 / FILTERS[n].vega_zero_point) for n in names]}
    )
    _common(m, "AB minus Vega magnitude offsets (Rayleigh-Jeans Vega)")
    return m


def _pars(step_class: str, name: str, reftype: str, parameters: dict) -> Callable[[], dict]:
    def make() -> dict:
        return {
            "class": step_class,
            "name": name,
            "parameters": parameters,
            "meta": {
                "author": AUTHOR,
                "date": FILE_DATE[:19],
                "description": f"SYNTHETIC, for simulated data only: parameters for {step_class}",
                "instrument": {"name": "MIRI", "detector": det.DETECTOR},
                "exposure": {"type": "MIR_IMAGE"},
                "origin": ORIGIN,
                "pedigree": PEDIGREE,
                "reftype": reftype,
                "telescope": "JWST",
                "useafter": USEAFTER,
            },
        }

    return make


def reference_files() -> list[RefFile]:
    """Every synthetic reference file, in a fixed order; serial numbers count from 9001 per type."""
    out: list[RefFile] = []
    serial: dict[str, int] = {}

    def add(reftype: str, ext: str, match: tuple[str, ...], make: Callable[[], object]) -> None:
        serial[reftype] = serial.get(reftype, 9000) + 1
        out.append(RefFile(reftype, f"jwst_miri_{reftype}_{serial[reftype]:04d}.{ext}", match, make))

    for reftype, maker in (
        ("mask", _mask), ("saturation", _saturation), ("gain", _gain),
        ("readnoise", _readnoise), ("linearity", _linearity),
    ):
        for sub in SUBARRAYS.values():
            add(reftype, "fits", (det.DETECTOR, sub.name), lambda m=maker, s=sub: m(s))
    for reftype, maker in (("dark", _dark), ("reset", _reset)):
        for sub in SUBARRAYS.values():
            add(reftype, "fits", (det.DETECTOR, sub.name, det.READPATT), lambda m=maker, s=sub: m(s))
    add("rscd", "fits", (det.DETECTOR,), _rscd)
    add("emicorr", "asdf", (det.DETECTOR,), _emicorr)
    for filt in FILTERS:
        for sub in SUBARRAYS.values():
            add("flat", "fits", (det.DETECTOR, filt, sub.name), lambda s=sub, f=filt: _flat(s, f))
    add("photom", "fits", IMAGING, _photom)
    add("area", "fits", IMAGING, _area)
    add("distortion", "asdf", IMAGING, _distortion)
    add("filteroffset", "asdf", IMAGING, _filteroffset)
    add("apcorr", "fits", IMAGING, _apcorr)
    add("abvegaoffset", "asdf", IMAGING, _abvegaoffset)
    add(
        "pars-emicorrstep", "asdf", IMAGING,
        _pars("jwst.emicorr.emicorr_step.EmiCorrStep", "emicorr", "pars-emicorrstep", {"skip": False}),
    )
    return out


def write_reference(ref: RefFile, directory: Path) -> Path:
    """Write one reference file into ``directory``."""
    obj = ref.make()
    path = Path(directory) / ref.name
    if isinstance(obj, dict):
        return save_asdf_tree(obj, path)
    obj.meta.reftype = ref.reftype
    # Models create empty dq/err arrays on their own: leave all-zero ones out of the file where
    # the pipeline makes the same default on reading (not for linearity and reset, whose dq has
    # fewer dimensions than their data).
    for name in ("dq", "err"):
        if name == "dq" and ref.reftype not in ("flat", "saturation", "dark"):
            continue
        if obj.hasattr(name) and not np.any(getattr(obj, name)):
            delattr(obj, name)
    return save_model(obj, path)
