"""``astrometric_catalog``: a custom absolute reference catalog for tweakreg's ``abs_refcat``.

Gaia has few mid-infrared counterparts in a MIRI field, so the reference
workflow aligns to a catalog of its own: the compact, high-S/N sources of one
filter's mosaic (the shortest wavelength: the sharpest PSF), or a table the
user brings (e.g. from NIRCam or HST).  The result is an ECSV with ``RA`` and
``DEC`` columns, the form stcal's tweakreg reads, to be named in a second
image3 pass: ``[image3.steps.tweakreg] abs_refcat = "<path>"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.files import writing
from appliance.postprocess.common import OperationError, log, read_image


def from_mosaic(workdir: Path, task):
    from astropy.table import Table

    from appliance.postprocess.catalog import load_rms, measure

    p = task.params
    image = read_image(workdir / task.inputs[0])
    rms = load_rms(workdir, task, image)
    sources = measure(image, rms)
    keep = np.zeros(len(sources), bool)
    if len(sources):
        keep = np.asarray(sources["point_like"]) & (np.asarray(sources["snr"]) >= p["min_snr"])
    kept = sources[keep]
    table = Table({"RA": np.asarray(kept["ra"], float), "DEC": np.asarray(kept["dec"], float),
                   "flux": np.asarray(kept["aper_total_flux"], float), "snr": np.asarray(kept["snr"], float)})
    table["RA"].unit = table["DEC"].unit = "deg"
    table["flux"].unit = sources["aper_total_flux"].unit
    table.meta.update(source=task.inputs[0], filter=p["filter"], min_snr=p["min_snr"], n_sources=len(table),
                      epoch_mjd=image.header.get("EXPMID") or image.sci_header.get("MJD-AVG"))
    return table


def from_table(task):
    from astropy.table import Table

    p = task.params
    path = Path(p["table_path"])
    try:
        given = Table.read(path)
    except Exception as exc:  # unreadable or not a table: the user's file, so say which
        raise OperationError(f"postprocess astrometric_catalog: {path.name}: not a readable ECSV/FITS table ({exc})") from None
    names = {c.lower(): c for c in given.colnames}
    if "ra" in names and "dec" in names:
        ra, dec = given[names["ra"]], given[names["dec"]]
    elif "sky_centroid" in names:
        sky = given[names["sky_centroid"]]
        ra, dec = sky.ra.deg, sky.dec.deg
    else:
        raise OperationError(f"postprocess astrometric_catalog: {path.name}: no RA/DEC (or sky_centroid) columns; "
                             f"found {', '.join(given.colnames)}")
    table = Table({"RA": _degrees(ra), "DEC": _degrees(dec)})
    table["RA"].unit = table["DEC"].unit = "deg"
    table.meta.update(source=p["table"], sha256=p["table_sha256"], n_sources=len(table))
    return table


def _degrees(column) -> np.ndarray:
    """A coordinate column in degrees (its unit respected when it has one)."""
    import astropy.units as u

    if getattr(column, "unit", None) is not None:
        return np.asarray(u.Quantity(column).to_value(u.deg), float)
    return np.asarray(column, float)


def run(task, workdir: Path) -> None:
    table = from_table(task) if task.params.get("table") else from_mosaic(workdir, task)
    if len(table) == 0:
        table.meta["warning"] = "EMPTY: no sources qualify; tweakreg cannot align to this catalog"
        log.warning("%s", table.meta["warning"])
    else:
        log.info("%d reference sources from %s", len(table), table.meta["source"])
    target = workdir / task.outputs[0]
    table.meta["usage"] = f'[image3.steps.tweakreg] abs_refcat = "<workdir>/{task.outputs[0]}" in a second image3 pass'
    with writing(target) as tmp:
        table.write(tmp, format="ascii.ecsv")
