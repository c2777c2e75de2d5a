"""Content digests: identical content → identical digest, any real change → a new one.

``test_measured_volatile_items`` is the measurement behind the ``VOLATILE_*``
constants of ``appliance.digest``: it writes the same jwst products twice from
two processes (different hash seeds, over a second apart) and checks that what
differs is exactly what the constants list.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from appliance import digest
from appliance.digest import (
    UNORDERED_ASDF_PATHS,
    VOLATILE_ASDF_HDU_CARDS,
    VOLATILE_ASDF_PATHS,
    VOLATILE_ECSV_META,
    VOLATILE_HDU_CARDS,
    VOLATILE_PRIMARY_CARDS,
    VOLATILE_TABLE_COLUMNS,
    canonical_json,
    content_digest,
)
from appliance.errors import WorkFailed


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# jwst datamodels written by stdatamodels
# --------------------------------------------------------------------------


def image_model(data=None):
    from stdatamodels.jwst.datamodels import ImageModel

    if data is None:
        data = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    model = ImageModel(data=data, dq=np.zeros(data.shape, dtype=np.uint32), err=np.ones(data.shape, dtype=np.float32))
    model.meta.instrument.name = "MIRI"
    model.meta.instrument.detector = "MIRIMAGE"
    model.meta.instrument.filter = "F770W"
    model.meta.exposure.type = "MIR_IMAGE"
    model.meta.observation.date = "2023-07-01"
    model.meta.cal_step.dq_init = "COMPLETE"
    return model


def test_two_saves_a_second_apart_give_the_same_digest(tmp_path):
    a, b = tmp_path / "a" / "x_cal.fits", tmp_path / "b" / "x_cal.fits"
    a.parent.mkdir(), b.parent.mkdir()
    image_model().save(a)
    time.sleep(1.0)
    image_model().save(b)
    assert fits.getval(a, "DATE") != fits.getval(b, "DATE")
    assert sha(a) != sha(b)
    assert content_digest(a) == content_digest(b)
    assert content_digest(a).startswith("sha256:") and len(content_digest(a)) == 7 + 64


def test_one_changed_pixel_changes_the_digest(tmp_path):
    a, b = tmp_path / "a" / "x_cal.fits", tmp_path / "b" / "x_cal.fits"
    a.parent.mkdir(), b.parent.mkdir()
    image_model().save(a)
    changed = image_model()
    changed.data[10, 20] += 1e-3
    changed.save(b)
    assert content_digest(a) != content_digest(b)


def test_a_changed_dq_flag_or_header_value_changes_the_digest(tmp_path):
    base = tmp_path / "base" / "x_cal.fits"
    base.parent.mkdir()
    image_model().save(base)
    for name, change in {
        "dq": lambda m: m.dq.__setitem__((0, 0), 4),
        "filter": lambda m: setattr(m.meta.instrument, "filter", "F1000W"),
        "status": lambda m: setattr(m.meta.cal_step, "dq_init", "SKIPPED"),
    }.items():
        path = tmp_path / name / "x_cal.fits"
        path.parent.mkdir()
        model = image_model()
        change(model)
        model.save(path)
        assert content_digest(path) != content_digest(base), name


def test_standalone_asdf_saves_a_second_apart_give_the_same_digest(tmp_path):
    a, b = tmp_path / "a" / "x.asdf", tmp_path / "b" / "x.asdf"
    a.parent.mkdir(), b.parent.mkdir()
    image_model().save(a)
    time.sleep(1.0)
    image_model().save(b)
    assert sha(a) != sha(b)
    assert content_digest(a) == content_digest(b)
    changed = image_model()
    changed.data[0, 0] = -1
    changed.save(b)
    assert content_digest(a) != content_digest(b)


# --------------------------------------------------------------------------
# Hand-made FITS files: each volatile item on its own
# --------------------------------------------------------------------------


def asdf_hdu(tree: dict) -> fits.BinTableHDU:
    """An ``ASDF`` HDU built the way stdatamodels builds it."""
    import asdf

    buffer = io.BytesIO()
    asdf.AsdfFile(tree).write_to(buffer)
    data = np.frombuffer(buffer.getvalue(), dtype=np.uint8)[None, :]
    column = fits.Column(array=data, format=f"{data.shape[1]}B", name="ASDF_METADATA")
    return fits.BinTableHDU.from_columns([column], name="ASDF")


def base_tree(**changes) -> dict:
    tree = {
        "meta": {"date": "2026-01-01T00:00:00.000", "filename": "x_i2d.fits", "instrument": {"name": "MIRI"}},
        "_fits_hash": "0" * 64,
        "cal_logs": {"resample": ["2026-01-01T00:00:00.000 - started", "done in 1.0 s"]},
        "data": {"note": "HDU-linked arrays are described, not stored, in the tree"},
        "coeffs": np.arange(6, dtype=np.float64),
    }
    for key, value in changes.items():
        node, *rest = key.split("__")
        if rest:
            tree[node] = {**tree[node], rest[0]: value}
        else:
            tree[node] = value
    return tree


def write_fits(path: Path, *, date="2026-01-01T00:00:00.000", sci=None, tree=None, hdrtab=None, checksum=False):
    primary = fits.PrimaryHDU()
    primary.header["DATE"] = (date, "UTC date file created")
    primary.header["FILENAME"] = path.name
    primary.header["R_DARK"] = "crds://jwst_mirimage_dark_0001.fits"
    primary.header["S_DQINIT"] = "COMPLETE"
    hdus = [primary, fits.ImageHDU(np.arange(12, dtype=">f4").reshape(3, 4) if sci is None else sci, name="SCI")]
    if hdrtab is not None:
        hdus.append(fits.BinTableHDU(hdrtab, name="HDRTAB"))
    hdus.append(asdf_hdu(base_tree() if tree is None else tree))
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, checksum=checksum)
    return path


def hdrtab(dates=("2026-01-01T00:00:00.001", "2026-01-01T00:00:00.002"), expstart=(60000.0, 60000.1)):
    from astropy.table import Table

    return Table({"DATE": list(dates), "FILENAME": ["a_cal.fits", "b_cal.fits"], "EXPSTART": list(expstart)})


def test_primary_date_and_asdf_volatile_entries_are_ignored(tmp_path):
    a = write_fits(tmp_path / "a.fits")
    b = write_fits(
        tmp_path / "b.fits",
        date="2027-12-31T23:59:59.999",
        tree=base_tree(
            meta__date="2027-12-31T23:59:59.999",
            _fits_hash="f" * 64,
            # a longer log moves the blocks and widens the HDU: NAXIS1/TFORM1 change
            cal_logs={"resample": ["x" * 500], "outlier_detection": ["y"]},
        ),
    )
    # FILENAME differs between a.fits and b.fits: give both the same
    for p in (a, b):
        with fits.open(p, mode="update") as h:
            h[0].header["FILENAME"] = "x_i2d.fits"
    assert fits.getval(a, "NAXIS1", extname="ASDF") != fits.getval(b, "NAXIS1", extname="ASDF")
    assert content_digest(a) == content_digest(b)


@pytest.mark.parametrize(
    "change",
    [
        {"meta__filename": "y_i2d.fits"},
        {"meta__instrument": {"name": "NIRCAM"}},
        {"coeffs": np.arange(6, dtype=np.float64) + 1e-12},  # an ASDF block's bytes
        {"coeffs": np.arange(6, dtype=np.float32)},
        {"data": {"note": "changed"}},
        {"new_entry": 1},
    ],
    ids=["meta.filename", "meta.instrument", "block-bytes", "block-dtype", "data-node", "new-entry"],
)
def test_any_other_tree_change_changes_the_digest(tmp_path, change):
    a = write_fits(tmp_path / "a" / "x.fits")
    b = write_fits(tmp_path / "b" / "x.fits", tree=base_tree(**change))
    assert content_digest(a) != content_digest(b)


def test_history_extensions_are_compared_as_a_set():
    ext = [{"extension_uri": f"asdf://example/{n}", "software": {"name": n}} for n in ("core", "gwcs", "units")]
    tree = lambda order: {"history": {"extensions": [ext[i] for i in order], "entries": ["a", "b"]}}
    canon = lambda t: canonical_json(digest.canonical_asdf_tree(t))
    assert canon(tree([0, 1, 2])) == canon(tree([2, 0, 1]))
    assert canon(tree([0, 1, 2])) != canon(tree([0, 1]))
    # other lists keep their order
    assert canon({"history": {"entries": ["a", "b"]}}) != canon({"history": {"entries": ["b", "a"]}})
    assert canon({"meta": {"list": [1, 2]}}) != canon({"meta": {"list": [2, 1]}})


def test_volatile_paths_match_only_at_their_place():
    canon = lambda t: canonical_json(digest.canonical_asdf_tree(t))
    # meta.date is volatile; a "date" elsewhere is content
    assert canon({"meta": {"date": 1}}) == canon({"meta": {"date": 2}})
    assert canon({"meta": {"observation": {"date": 1}}}) != canon({"meta": {"observation": {"date": 2}}})
    assert canon({"date": 1}) != canon({"date": 2})


def test_hdrtab_date_column_is_ignored_but_other_columns_count(tmp_path):
    a = write_fits(tmp_path / "a" / "x.fits", hdrtab=hdrtab())
    b = write_fits(tmp_path / "b" / "x.fits", hdrtab=hdrtab(dates=("2030-01-01T00:00:00.001", "2030-01-01T00:00:00.002")))
    c = write_fits(tmp_path / "c" / "x.fits", hdrtab=hdrtab(expstart=(60000.0, 60000.2)))
    assert sha(a) != sha(b)
    assert content_digest(a) == content_digest(b)
    assert content_digest(a) != content_digest(c)


def test_hdrtab_date_column_is_ignored_in_a_standalone_asdf_file(tmp_path):
    """``model.save("x.asdf")`` stores hdrtab as a structured array in an ASDF block."""
    import asdf

    def write(name, dates, expstart=(60000.0, 60000.1), key="hdrtab"):
        table = np.zeros(2, dtype=[("DATE", "S23"), ("FILENAME", "S10"), ("EXPSTART", ">f8")])
        table["DATE"], table["FILENAME"], table["EXPSTART"] = dates, [b"a_cal.fits", b"b_cal.fits"], expstart
        path = tmp_path / name
        asdf.AsdfFile({key: table, "data": np.ones(3)}).write_to(path)
        return path

    now, later = (b"2026-01-01T00:00:00.001",) * 2, (b"2030-01-01T00:00:00.001",) * 2
    base = content_digest(write("a.asdf", now))
    assert content_digest(write("b.asdf", later)) == base
    assert content_digest(write("c.asdf", now, expstart=(1.0, 2.0))) != base
    # the same table under another name is content
    assert content_digest(write("d.asdf", now, key="other")) != content_digest(write("e.asdf", later, key="other"))


def test_date_column_of_other_tables_counts(tmp_path):
    from astropy.table import Table

    def write(path, date):
        t = fits.BinTableHDU(Table({"DATE": [date], "X": [1]}), name="OTHER")
        path.parent.mkdir(parents=True)
        fits.HDUList([fits.PrimaryHDU(), t]).writeto(path)
        return path

    assert content_digest(write(tmp_path / "a/x.fits", "2026")) != content_digest(write(tmp_path / "b/x.fits", "2027"))


def test_checksum_cards_are_ignored(tmp_path):
    a = write_fits(tmp_path / "a" / "x.fits", checksum=True)
    b = write_fits(tmp_path / "b" / "x.fits", date="2030-01-01T00:00:00.000", checksum=True)
    assert fits.getval(a, "CHECKSUM") != fits.getval(b, "CHECKSUM")
    assert content_digest(a) == content_digest(b)


def test_primary_date_is_volatile_only_in_the_primary_header(tmp_path):
    def write(path, date):
        ext = fits.ImageHDU(np.zeros(3, dtype=">f4"), name="SCI")
        ext.header["DATE"] = date
        path.parent.mkdir(parents=True)
        fits.HDUList([fits.PrimaryHDU(), ext]).writeto(path)
        return path

    assert content_digest(write(tmp_path / "a/x.fits", "2026")) != content_digest(write(tmp_path / "b/x.fits", "2027"))


def test_scaled_and_integer_images_are_digested_as_stored(tmp_path):
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    fits.HDUList([fits.PrimaryHDU(np.arange(10, dtype=np.uint16))]).writeto(a)
    fits.HDUList([fits.PrimaryHDU(np.arange(10, dtype=np.int16))]).writeto(b)  # same values, other type
    assert content_digest(a) != content_digest(b)


def test_a_broken_fits_product_is_a_failed_product(tmp_path):
    path = tmp_path / "x.fits"
    path.write_bytes(b"not a FITS file at all")
    with pytest.raises(WorkFailed, match="x.fits"):
        content_digest(path)


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_truncated_fits_data_fail(tmp_path):
    path = write_fits(tmp_path / "x.fits", sci=np.zeros((200, 200), dtype=">f4"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(WorkFailed):
        content_digest(path)


# --------------------------------------------------------------------------
# ECSV catalogs
# --------------------------------------------------------------------------

ECSV_OMAP = """\
# %ECSV 1.0
# ---
# datatype:
# - {name: label, datatype: int32}
# - {name: flux, unit: Jy, datatype: float64}
# meta: !!omap
# - {date: 'DATE'}
# - version: {astropy: 8.0.2, photutils: 3.0.0}
# - aperture_params:
#     radii: [1.0, 2.0]
# schema: astropy-2.0
label flux
1 0.5
2 FLUX
"""

ECSV_OMAP_BLOCK = ECSV_OMAP.replace("# - {date: 'DATE'}", "# - date: 'DATE'")

ECSV_MAPPING = """\
# %ECSV 1.0
# ---
# datatype:
# - {name: label, datatype: int32}
# - {name: flux, datatype: float64}
# meta:
#   date: DATE
#   version: {photutils: 3.0.0}
# schema: astropy-2.0
label flux
1 0.5
2 FLUX
"""


@pytest.mark.parametrize("template", [ECSV_OMAP, ECSV_OMAP_BLOCK, ECSV_MAPPING], ids=["omap-flow", "omap-block", "mapping"])
def test_ecsv_date_is_ignored_and_everything_else_counts(tmp_path, template):
    def write(name, date="2026-11-24 13:26:31 UTC", flux="0.25", text=None):
        path = tmp_path / name
        path.write_text((text or template).replace("DATE", date).replace("FLUX", flux))
        return path

    base = content_digest(write("a.ecsv"))
    assert content_digest(write("b.ecsv", date="2027-01-01 00:00:00 UTC")) == base
    assert content_digest(write("c.ecsv", flux="0.26")) != base
    # software versions are environment (the manifest records them), not content
    assert content_digest(write("d.ecsv", text=template.replace("photutils: 3.0.0", "photutils: 3.0.1"))) == base
    assert content_digest(write("f.ecsv", text=template.replace("datatype: int32", "datatype: int64"))) != base
    assert content_digest(write("e.ecsv", text=template.replace("label flux", "label  flux"))) != base


def test_ecsv_written_by_photutils_a_second_apart(tmp_path):
    from photutils.segmentation import SourceCatalog, detect_sources

    image = np.zeros((20, 20))
    image[5:8, 5:8] = 10
    image[12:15, 12:15] = 5
    segm = detect_sources(image, 1, 3)
    a, b, c = tmp_path / "a.ecsv", tmp_path / "b.ecsv", tmp_path / "c.ecsv"
    SourceCatalog(image, segm).to_table().write(a)
    time.sleep(1.05)  # photutils' date has one-second resolution
    SourceCatalog(image, segm).to_table().write(b)
    image[6, 6] = 11
    SourceCatalog(image, segm).to_table().write(c)
    assert sha(a) != sha(b)
    assert content_digest(a) == content_digest(b) != content_digest(c)


def test_a_file_that_is_not_ecsv_is_hashed_as_bytes(tmp_path):
    path = tmp_path / "x.ecsv"
    path.write_text("# just a comment\n1 2\n")
    assert content_digest(path) == "sha256:" + sha(path)


# --------------------------------------------------------------------------
# Everything else is bytes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["asn.json", "preview.png", "run.log", "x.fits.gz"])
def test_other_kinds_are_the_sha256_of_their_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(json.dumps({"asn_id": "o002", "products": []}).encode())
    assert digest.canonical_kind(path) is None
    assert content_digest(path) == "sha256:" + sha(path)


def test_the_rules_are_recorded_as_data():
    rules = digest.describe()
    assert rules["format"] == digest.DIGEST_FORMAT
    assert rules["volatile_asdf_paths"] == ["_fits_hash", "cal_logs", "meta.date"]
    assert rules["volatile_table_columns"] == {"HDRTAB": ["DATE"]}
    json.dumps(rules)


def test_volatile_items_are_exactly_the_measured_ones():
    """Changing these constants means re-measuring (test_measured_volatile_items) and bumping DIGEST_FORMAT."""
    assert VOLATILE_PRIMARY_CARDS == {"DATE"}
    assert VOLATILE_ASDF_HDU_CARDS == {"NAXIS1", "TFORM1"}
    assert VOLATILE_HDU_CARDS == {"CHECKSUM", "DATASUM"}
    assert VOLATILE_ASDF_PATHS == {("meta", "date"), ("_fits_hash",), ("cal_logs",)}
    assert UNORDERED_ASDF_PATHS == {("history", "extensions")}
    assert VOLATILE_TABLE_COLUMNS == {"HDRTAB": {"DATE"}}
    assert VOLATILE_ECSV_META == {"date", "version"}


# --------------------------------------------------------------------------
# The measurement: the same real jwst products written twice
# --------------------------------------------------------------------------

GENERATE = textwrap.dedent(
    '''
    """Write a real jwst mosaic (ResampleStep of two exposures), its .asdf form and a catalog."""
    import sys
    from pathlib import Path

    import numpy as np
    from astropy import coordinates as coord
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf, wcs
    from stdatamodels.jwst.datamodels import ImageModel

    from jwst.datamodels import ModelLibrary
    from jwst.resample import ResampleStep


    def exposure(i):
        shape = (48, 48)
        im = ImageModel(data=np.random.default_rng(i).normal(5, 1, shape).astype(np.float32))
        im.err = np.full(shape, 0.1, dtype=np.float32)
        im.dq = np.zeros(shape, dtype=np.uint32)
        for name in ("var_rnoise", "var_poisson", "var_flat"):
            setattr(im, name, np.full(shape, 0.01, dtype=np.float32))
        im.meta.bunit_data = im.meta.bunit_err = "MJy/sr"
        im.meta.instrument = {"name": "MIRI", "detector": "MIRIMAGE", "filter": "F770W"}
        im.meta.observation = {"date": "2023-01-01", "time": "17:00:00", "program_number": "02732",
                               "observation_number": "002", "visit_number": "001", "visit_group": "01",
                               "sequence_id": "1", "activity_id": "01", "exposure_number": str(i + 1)}
        im.meta.exposure = {"type": "MIR_IMAGE", "exposure_time": 10.0, "measurement_time": 10.0,
                            "duration": 10.0, "start_time": 60000.0 + i / 100, "mid_time": 60000.0005 + i / 100,
                            "end_time": 60000.001 + i / 100, "effective_exposure_time": 10.0}
        im.meta.subarray = {"name": "SUB64", "xstart": 1, "ystart": 1, "xsize": 48, "ysize": 48,
                            "fastaxis": 1, "slowaxis": 2}
        crval = (100.0 + i * 2e-4, 40.0)
        det2sky = ((models.Shift(-23.5) & models.Shift(-23.5)) | models.AffineTransformation2D(np.diag([-3e-5, 3e-5]))
                   | models.Pix2Sky_TAN() | models.RotateNative2Celestial(*crval, 180))
        w = wcs.WCS([(cf.Frame2D(name="detector", axes_names=("x", "y")), det2sky),
                     (cf.CelestialFrame(reference_frame=coord.ICRS(), name="world"), None)])
        w.bounding_box = ((-0.5, 47.5), (-0.5, 47.5))
        w.array_shape = shape
        im.meta.wcs = w
        im.meta.wcsinfo = {"ra_ref": crval[0], "dec_ref": crval[1], "roll_ref": 0.0, "v2_ref": 0.0, "v3_ref": 0.0,
                           "v3yangle": 0.0, "vparity": -1, "ctype1": "RA---TAN", "ctype2": "DEC--TAN",
                           "crval1": crval[0], "crval2": crval[1],
                           "s_region": "POLYGON ICRS " + " ".join(f"{a:.9f} {d:.9f}" for a, d in w.footprint())}
        im.meta.photometry = {"pixelarea_steradians": 2.1e-14, "pixelarea_arcsecsq": 0.0121}
        im.meta.filename = f"e{i}_cal.fits"
        return im


    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    mosaic = ResampleStep.call(ModelLibrary([exposure(0), exposure(1)], on_disk=False),
                               output_dir=str(out), save_results=True, output_file="mosaic")
    mosaic.save(out / "mosaic.asdf")

    from photutils.segmentation import SourceCatalog, detect_sources

    data = np.nan_to_num(mosaic.data)
    data[20:24, 20:24] += 50.0  # one bright source
    SourceCatalog(data, detect_sources(data, 20.0, 3)).to_table().write(out / "mosaic_cat.ecsv")
    '''
)


def _tree(fileobj) -> dict:
    import asdf.util

    return asdf.util.load_yaml(fileobj, tagged=True)


def _tree_differences(a, b, path=()) -> set[str]:
    """Dotted paths where two tagged trees differ; ``"<path> (order)"`` for a reordered list."""
    here = ".".join(map(str, path))
    if getattr(a, "_tag", None) != getattr(b, "_tag", None) or type(a) is not type(b):
        return {here}
    if isinstance(a, dict):
        out = set()
        for key in set(a) | set(b):
            if key not in a or key not in b:
                out.add(".".join(map(str, path + (key,))))
            else:
                out |= _tree_differences(a[key], b[key], path + (key,))
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return {here}
        out = set()
        for i, (x, y) in enumerate(zip(a, b)):
            out |= _tree_differences(x, y, path + (i,))
        if out and sorted(map(canonical_json, map(digest.canonical_asdf_tree, a))) == sorted(
            map(canonical_json, map(digest.canonical_asdf_tree, b))
        ):
            return {f"{here} (order)"}
        return out
    return set() if a == b else {here}


def _fits_differences(a: Path, b: Path) -> set[str]:
    """Everything that differs between two FITS files: ``HDU:KEYWORD``, ``HDU.column``, ``HDU:data``, ``ASDF:tree.path``."""
    out = set()
    with fits.open(a) as ha, fits.open(b) as hb:
        assert [h.name for h in ha] == [h.name for h in hb]
        for x, y in zip(ha, hb):
            for key in {c.keyword for c in x.header.cards} | {c.keyword for c in y.header.cards}:
                if [c.image for c in x.header.cards if c.keyword == key] != [c.image for c in y.header.cards if c.keyword == key]:
                    out.add(f"{x.name}:{key}")
            if x.name == "ASDF":
                ta, tb = _tree(io.BytesIO(x.data.tobytes())), _tree(io.BytesIO(y.data.tobytes()))
                out |= {f"ASDF:{p}" for p in _tree_differences(ta, tb)}
            elif isinstance(x, fits.BinTableHDU):
                out |= {f"{x.name}.{n}" for n in x.columns.names if not np.array_equal(x.data[n], y.data[n])}
            elif x.data is None or y.data is None:
                if (x.data is None) != (y.data is None):
                    out.add(f"{x.name}:data")
            elif not np.array_equal(x.data, y.data, equal_nan=np.issubdtype(x.data.dtype, np.inexact)):
                out.add(f"{x.name}:data")
    return out


def _allowed_tree_path(p: str) -> bool:
    if p.endswith(" (order)"):
        return tuple(p.removesuffix(" (order)").split(".")) in UNORDERED_ASDF_PATHS
    parts = tuple(p.split("."))
    return any(parts[: len(v)] == v for v in VOLATILE_ASDF_PATHS)


def _allowed_fits_item(item: str) -> bool:
    if item.startswith("ASDF:") and not item[5:].isupper():
        return _allowed_tree_path(item[5:])
    hdu, _, rest = item.partition(":")
    if rest:
        if rest in VOLATILE_HDU_CARDS:
            return True
        if hdu == "PRIMARY":
            return rest in VOLATILE_PRIMARY_CARDS
        if hdu == "ASDF":
            return rest in VOLATILE_ASDF_HDU_CARDS
        return False
    hdu, _, column = item.partition(".")
    return column in VOLATILE_TABLE_COLUMNS.get(hdu, set())


def test_measured_volatile_items(tmp_path):
    """Write the same products twice (separate processes one after the other, other hash seeds, >1 s apart) and compare them.

    Whatever differs must be listed in appliance.digest's constants, and the
    items that differ on every write must indeed differ (they are not listed
    for nothing).  The extension order and the ASDF HDU's width vary only
    sometimes, so they are allowed but not required here.
    """
    script = tmp_path / "generate.py"
    script.write_text(GENERATE)
    env = {
        **os.environ,
        "STPIPE_DISABLE_CRDS_STEPPARS": "True",
        "CRDS_PATH": str(tmp_path / "crds"),
        "CRDS_SERVER_URL": "http://127.0.0.1:9",  # nothing may be fetched
        "CRDS_CONTEXT": "jwst_0000.pmap",
    }
    # One after the other: run concurrently on a loaded machine, the two catalogs
    # were once written within the same second, so their (1 s resolution) dates agreed.
    runs = []
    for seed in ("1", "2"):
        out = tmp_path / f"run{seed}"
        proc = subprocess.run([sys.executable, str(script), str(out)], env={**env, "PYTHONHASHSEED": seed},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:]
        runs.append(out)
        time.sleep(1.2)
    one, two = runs

    names = sorted(p.name for p in one.iterdir())
    assert names == ["mosaic.asdf", "mosaic_cat.ecsv", "mosaic_resamplestep.fits"]
    assert names == sorted(p.name for p in two.iterdir())
    for name in names:
        assert sha(one / name) != sha(two / name), f"{name}: expected the bytes to differ between runs"
        assert content_digest(one / name) == content_digest(two / name), name

    # FITS mosaic: primary DATE, HDRTAB.DATE, and in the ASDF tree meta.date, _fits_hash, cal_logs
    found = _fits_differences(one / "mosaic_resamplestep.fits", two / "mosaic_resamplestep.fits")
    unexpected = {item for item in found if not _allowed_fits_item(item)}
    assert not unexpected, f"volatile but not listed in appliance.digest: {sorted(unexpected)}"
    always = {"PRIMARY:DATE", "HDRTAB.DATE", "ASDF:meta.date", "ASDF:_fits_hash"}
    assert always <= found, f"listed as volatile but did not change: {sorted(always - found)}"
    assert any(item.startswith("ASDF:cal_logs") for item in found), sorted(found)
    with fits.open(one / "mosaic_resamplestep.fits") as h:
        assert "CHECKSUM" not in h[0].header  # jwst writes none: VOLATILE_HDU_CARDS is precaution
        assert {"SCI", "ERR", "CON", "WHT", "HDRTAB", "ASDF"} <= {x.name for x in h}

    # the standalone ASDF file: the same tree entries, and hdrtab (with its DATE column) is a block
    with open(one / "mosaic.asdf", "rb") as fa, open(two / "mosaic.asdf", "rb") as fb:
        ta, tb = _tree(fa), _tree(fb)
        found = _tree_differences(ta, tb)
        assert all(_allowed_tree_path(p) for p in found), sorted(found)
        assert "meta.date" in found and any(p.startswith("cal_logs.") for p in found), sorted(found)
        tables: dict = {}
        digest.canonical_asdf_tree(ta, tables)
        fa.seek(0), fb.seek(0)
        raw_a, raw_b = list(digest._asdf_blocks(fa)), list(digest._asdf_blocks(fb))
        differing = {i for i, (x, y) in enumerate(zip(raw_a, raw_b)) if x != y}
        assert differing and differing <= set(tables), (differing, set(tables))
        fa.seek(0), fb.seek(0)
        assert list(digest._asdf_blocks(fa, tables)) == list(digest._asdf_blocks(fb, tables))

    # the catalog: only its meta date line
    lines_a = (one / "mosaic_cat.ecsv").read_text().splitlines()
    lines_b = (two / "mosaic_cat.ecsv").read_text().splitlines()
    changed = [x for x, y in zip(lines_a, lines_b) if x != y]
    assert len(lines_a) == len(lines_b) and len(changed) == 1, changed
    assert any(f"{key}:" in changed[0] for key in VOLATILE_ECSV_META), changed


def test_html_digest_leaves_out_the_environment_region_only(tmp_path):
    a, b, c = tmp_path / "a.html", tmp_path / "b.html", tmp_path / "c.html"
    a.write_text("<p>mosaic</p><!-- appliance:environment --><td>Python 3.11.7</td><!-- /appliance:environment -->")
    b.write_text("<p>mosaic</p><!-- appliance:environment --><td>Python 3.11.2</td><!-- /appliance:environment -->")
    c.write_text("<p>Mosaic</p><!-- appliance:environment --><td>Python 3.11.7</td><!-- /appliance:environment -->")
    assert digest.canonical_kind(a) == "html"
    assert digest.content_digest(a) == digest.content_digest(b) != digest.content_digest(c)
    assert "environment" in digest.describe()["volatile_html_regions"]
