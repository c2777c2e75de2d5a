"""Post-processing operations: registry and recipe checks, planning, and each operation on small synthetic images."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import UserError
from appliance.graph import Exposure, Task
from appliance.plan import build_plan
from appliance.postprocess import run_task
from appliance.postprocess.registry import OPERATIONS, REGISTRY, check_parameter, resolved_params
from appliance.recipe import parse_recipe

HEAD = 'schema = 1\n[recipe]\nname = "t"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_9000.pmap"\n[inputs.simulate]\nseed = 1\n'
FILTERS = ("F770W", "F1000W", "F1500W")
PIXEL_DEG = 0.1108 / 3600
PIXEL_SR = math.radians(PIXEL_DEG) ** 2
BKG = 2.5  # MJy/sr


def recipe(extra: str = "", tmp: Path = Path("/data"), head: str = HEAD):
    return parse_recipe(head + extra, tmp / "r.toml")


def error_of(extra: str, tmp: Path = Path("/data")) -> str:
    with pytest.raises(UserError) as info:
        recipe(extra, tmp)
    return str(info.value)


def exposures(filters=FILTERS, kind="uncal"):
    return [Exposure(f"jw02732002001_021{n:02d}_00001_mirimage", kind, f, "02732", "002") for n, f in enumerate(filters, 1)]


def ops(*names: str) -> str:
    return "".join(f'[[postprocess]]\nop = "{n}"\n' for n in names)


# ------------------------------------------------------------------ registry and recipe checks


def test_registry_declares_reads_writes_and_valid_defaults():
    assert set(REGISTRY) == set(OPERATIONS) == {"background", "catalog", "preview", "astrometric_catalog", "report"}
    for op in REGISTRY.values():
        assert op.reads and op.writes and op.summary
        assert OPERATIONS[op.name] == frozenset(op.params)
        for name, spec in op.params.items():
            assert spec.default is None or spec.accepts(spec.default), (op.name, name)


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, appliance.recipe, appliance.postprocess; print(sorted(m for m in ('photutils', 'matplotlib', 'jwst') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("table, expected", [
    ('op = "background"\nbox_size = "x"\n', 'postprocess[0].box_size: expected an integer between 4 and 4096, got string "x"'),
    ('op = "background"\nbox_size = 2\n', "postprocess[0].box_size: expected an integer between 4 and 4096, got integer 2"),
    ('op = "background"\nbox_size = 32.0\n', "postprocess[0].box_size: expected an integer between 4 and 4096, got float 32.0"),
    ('op = "background"\nsigma = 0\n', "postprocess[0].sigma: expected a number > 0, got integer 0"),
    ('op = "background"\nmask_sources = 1\n', "postprocess[0].mask_sources: expected a boolean, got integer 1"),
    ('op = "background"\ninput = "rate"\n', 'postprocess[0].input: expected one of "i2d", "cal", got string "rate"'),
    ('op = "catalog"\nnpixels = 0\n', "postprocess[0].npixels: expected an integer ≥ 1, got integer 0"),
    ('op = "catalog"\ndeblend = "yes"\n', 'postprocess[0].deblend: expected a boolean, got string "yes"'),
    ('op = "preview"\nstretch = "sqr"\n', 'postprocess[0].stretch: expected one of "asinh", "log", "sqrt", "linear", got string "sqr"'),
    ('op = "astrometric_catalog"\ntable = "refs.txt"\n',
     'postprocess[0].table: expected a string naming an .ecsv or .fits file, got string "refs.txt"'),
    ('op = "astrometric_catalog"\nmin_snr = -1.0\n', "postprocess[0].min_snr: expected a number > 0, got float -1.0"),
    ('op = "preview"\ncolour = true\n', "postprocess[0].colour: unknown parameter of preview; valid parameters: composite, input, stretch"),
    ('op = "photometry"\n', 'postprocess[0].op: unknown operation "photometry"; valid operations: '
                            "astrometric_catalog, background, catalog, preview, report"),
])
def test_bad_parameters_are_one_line_naming_the_key(table, expected):
    message = error_of("[[postprocess]]\n" + table)
    assert message == "/data/r.toml: " + expected
    assert "\n" not in message


def test_good_parameters_pass_and_defaults_fill_in():
    r = recipe('[[postprocess]]\nop = "background"\nbox_size = 64\nsigma = 3\n')
    assert r.postprocess[0].params == {"box_size": 64, "sigma": 3}
    assert resolved_params("background", r.postprocess[0].params) == {
        "box_size": 64, "filter_size": 3, "sigma": 3.0, "mask_sources": True, "input": "i2d"}
    assert check_parameter("catalog", "threshold", 2) is None


# ------------------------------------------------------------------ planning


def test_plan_one_task_per_operation_and_input_with_predicted_paths():
    plan = build_plan(recipe(ops("background", "catalog", "preview", "report")), exposures())
    post = {t.id: t for t in plan.tasks if t.kind == "postprocess"}
    assert list(post) == [
        "postprocess:background:F770W", "postprocess:background:F1000W", "postprocess:background:F1500W",
        "postprocess:catalog:F770W", "postprocess:catalog:F1000W", "postprocess:catalog:F1500W",
        "postprocess:preview:F770W", "postprocess:preview:F1000W", "postprocess:preview:F1500W",
        "postprocess:preview:rgb", "postprocess:report",
    ]
    bkg = post["postprocess:background:F770W"]
    assert bkg.inputs == ("stage3/jw02732-o002_t001_miri_f770w_i2d.fits",)
    assert bkg.outputs == ("postprocess/jw02732-o002_t001_miri_f770w_bsub.fits", "postprocess/jw02732-o002_t001_miri_f770w_bkg.fits")
    assert bkg.deps == ("image3:F770W",)
    assert bkg.params == {"op": "background", "box_size": 32, "filter_size": 3, "sigma": 3.0, "mask_sources": True, "input": "i2d"}
    cat = post["postprocess:catalog:F1000W"]
    assert cat.params["input"] == "background"  # the default when the recipe subtracts the background
    assert cat.inputs == ("postprocess/jw02732-o002_t001_miri_f1000w_bsub.fits", "postprocess/jw02732-o002_t001_miri_f1000w_bkg.fits")
    assert cat.deps == ("postprocess:background:F1000W",)
    assert cat.outputs == ("postprocess/jw02732-o002_t001_miri_f1000w_phot.ecsv",)
    rgb = post["postprocess:preview:rgb"]
    assert rgb.params["filters"] == ["F770W", "F1000W", "F1500W"]  # blue to red
    assert rgb.outputs == ("postprocess/jw02732-o002_t001_miri_f770w-f1000w-f1500w_rgb.png",)
    report = post["postprocess:report"]
    assert set(report.deps) == {t.id for t in plan.tasks} - {report.id}
    assert "postprocess/jw02732-o002_t001_miri_f770w_preview.png" in report.inputs
    assert report.outputs == ("postprocess/report.html",) and "recipe_text" in report.params


def test_plan_without_background_measures_the_mosaics_and_composites_only_three_filters():
    plan = build_plan(recipe(ops("catalog", "preview")), exposures(("F770W", "F1500W")))
    post = {t.id: t for t in plan.tasks if t.kind == "postprocess"}
    assert post["postprocess:catalog:F770W"].params["input"] == "i2d"
    assert post["postprocess:catalog:F770W"].inputs == ("stage3/jw02732-o002_t001_miri_f770w_i2d.fits",)
    assert post["postprocess:catalog:F770W"].deps == ("image3:F770W",)
    assert "postprocess:preview:rgb" not in post


def test_plan_background_on_cal_files_and_astrometric_catalog_of_the_sharpest_filter():
    r = recipe('[[postprocess]]\nop = "background"\ninput = "cal"\n[[postprocess]]\nop = "astrometric_catalog"\n')
    plan = build_plan(r, exposures())
    post = {t.id: t for t in plan.tasks if t.kind == "postprocess"}
    cal = post["postprocess:background:jw02732002001_02101_00001_mirimage"]
    assert cal.inputs == ("stage2/jw02732002001_02101_00001_mirimage_cal.fits",)
    assert cal.deps == ("image2:jw02732002001_02101_00001_mirimage",)
    assert cal.outputs[0] == "postprocess/jw02732002001_02101_00001_mirimage_bsub.fits"
    ref = post["postprocess:astrometric_catalog:F770W"]
    assert ref.params["filter"] == "F770W" and ref.params["input"] == "i2d"
    assert ref.outputs == ("postprocess/jw02732-o002_t001_miri_f770w_refcat.ecsv",)


@pytest.mark.parametrize("extra, expected", [
    ('[image3]\nskip = true\n' + ops("background"),
     "postprocess[0].op: background reads the stage-3 mosaics, but image3 does not run in this recipe (image3.skip = true)"),
    ('[image3]\nskip = true\n' + ops("preview"),
     "postprocess[0].op: preview reads the stage-3 mosaics, but image3 does not run in this recipe (image3.skip = true)"),
    ('[image2]\nskip = true\n[image3]\nskip = true\n[[postprocess]]\nop = "background"\ninput = "cal"\n',
     'postprocess[0].op: background with input = "cal" reads the stage-2 cal files, but image2 does not run in this recipe'),
    ('[[postprocess]]\nop = "catalog"\ninput = "background"\n',
     'postprocess[0].input: "background" needs a background operation on the mosaics (input = "i2d") in this recipe; '
     'add one or set input = "i2d"'),
    (ops("report", "catalog", "catalog"), "postprocess[2].op: catalog is already postprocess[1]; each operation may appear once"),
    ('[[postprocess]]\nop = "astrometric_catalog"\nfilter = "F2100W"\n',
     "postprocess[0].filter: no mosaic in F2100W; this reduction's filters: F770W, F1000W, F1500W"),
    ('[[postprocess]]\nop = "astrometric_catalog"\ntable = "nope.ecsv"\n',
     'postprocess[0].table: no such file: "nope.ecsv" (looked for /data/nope.ecsv)'),
])
def test_plan_errors_are_one_line_naming_the_operation(extra, expected):
    with pytest.raises(UserError) as info:
        build_plan(recipe(extra), exposures())
    assert str(info.value) == "/data/r.toml: " + expected


def test_check_recipe_catches_plan_errors_before_any_exposure_is_known():
    from appliance.postprocess.planner import check_recipe

    check_recipe(recipe(ops("background", "catalog", "preview", "astrometric_catalog", "report")))
    with pytest.raises(UserError, match=r"postprocess\[0\]\.op: catalog reads the stage-3 mosaics"):
        check_recipe(recipe("[image3]\nskip = true\n" + ops("catalog")))


def test_report_alone_reads_every_product():
    plan = build_plan(recipe(ops("report")), exposures(("F770W",)))
    report = plan.tasks[-1]
    assert report.id == "postprocess:report" and len(report.deps) == len(plan.tasks) - 1
    assert "stage3/jw02732-o002_t001_miri_f770w_i2d.fits" in report.inputs


# ------------------------------------------------------------------ synthetic images

FWHM_ARCSEC = {"F770W": 0.269, "F1000W": 0.328, "F1500W": 0.488}


def gaussian_sources(shape, sources, fwhm_pix):
    """Pixel-integrated Gaussians (flux in MJy/sr × pixel, i.e. per-pixel surface brightness sums)."""
    from scipy.special import erf

    image = np.zeros(shape)
    sigma = fwhm_pix / (2 * math.sqrt(2 * math.log(2)))
    ys, xs = np.arange(shape[0]), np.arange(shape[1])
    for x0, y0, total in sources:
        fx = 0.5 * (erf((xs + 0.5 - x0) / (math.sqrt(2) * sigma)) - erf((xs - 0.5 - x0) / (math.sqrt(2) * sigma)))
        fy = 0.5 * (erf((ys + 0.5 - y0) / (math.sqrt(2) * sigma)) - erf((ys - 0.5 - y0) / (math.sqrt(2) * sigma)))
        image += total * np.outer(fy, fx)
    return image


def write_mosaic(path: Path, *, filt="F770W", sources=(), shape=(160, 150), background=BKG, noise=0.05,
                 seed=0, crval=(339.015, 33.975), rotation_deg=20.0):
    """A small i2d-like product: SCI (MJy/sr) with a TAN WCS, ERR, WHT; NaN in one corner."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    fwhm_pix = FWHM_ARCSEC[filt] / 0.1108
    flux_sb = [(x, y, f / (1e6 * PIXEL_SR)) for x, y, f in sources]  # Jy -> MJy/sr summed over pixels
    sci = background + gaussian_sources(shape, flux_sb, fwhm_pix) + rng.normal(0, noise, shape)
    sci[:12, :12] = np.nan
    wht = np.where(np.isfinite(sci), 1.0, 0.0)
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    header = fits.Header()
    header.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=crval[0], CRVAL2=crval[1], CUNIT1="deg", CUNIT2="deg",
                  CRPIX1=shape[1] / 2, CRPIX2=shape[0] / 2, CDELT1=PIXEL_DEG, CDELT2=PIXEL_DEG,
                  PC1_1=-c, PC1_2=s, PC2_1=s, PC2_2=c, BUNIT="MJy/sr", PIXAR_SR=PIXEL_SR)
    primary = fits.PrimaryHDU()
    primary.header.update(TELESCOP="JWST", INSTRUME="MIRI", FILTER=filt, S_RESAMP="COMPLETE", S_SKYMAT="SKIPPED")
    hdus = fits.HDUList([primary, fits.ImageHDU(sci.astype(np.float32), header, name="SCI"),
                         fits.ImageHDU(np.full(shape, noise, np.float32), name="ERR"),
                         fits.ImageHDU(wht.astype(np.float32), name="WHT")])
    path.parent.mkdir(parents=True, exist_ok=True)
    hdus.writeto(path, overwrite=True)
    return path


def grid_sources(n=4, shape=(160, 150), flux=3e-4):
    """Well separated point sources on a grid (x, y, flux in Jy)."""
    xs = np.linspace(30, shape[1] - 30, n)
    ys = np.linspace(30, shape[0] - 30, n)
    return [(x + 0.3 * i, y - 0.2 * j, flux * (1 + 0.5 * ((i + j) % 3))) for i, x in enumerate(xs) for j, y in enumerate(ys)]


def task(op: str, inputs, outputs, tid=None, **params):
    full = {"op": op, **resolved_params(op, params), **params}
    return Task(tid or f"postprocess:{op}:x", "postprocess", full, tuple(inputs), tuple(outputs))


def run(t: Task, workdir: Path) -> Path:
    log = workdir / "logs" / (t.id.replace(":", "_") + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    run_task(t, workdir, log)
    return log


def background_task(stem="m", inputs=None):
    return task("background", inputs or [f"stage3/{stem}_i2d.fits"],
                [f"postprocess/{stem}_bsub.fits", f"postprocess/{stem}_bkg.fits"])


def catalog_task(stem="m", **params):
    return task("catalog", [f"postprocess/{stem}_bsub.fits", f"postprocess/{stem}_bkg.fits"],
                [f"postprocess/{stem}_phot.ecsv"], filter="F770W", input="background", **params)


def test_background_recovers_a_flat_level_and_keeps_the_product_whole(tmp_path):
    from astropy.io import fits

    write_mosaic(tmp_path / "stage3/m_i2d.fits", sources=grid_sources())
    run(background_task(), tmp_path)
    with fits.open(tmp_path / "postprocess/m_bkg.fits") as model:
        h = model[0].header
        assert abs(h["PP_BKG"] / BKG - 1) < 0.005
        assert h["PP_BOX"] == 32 and h["PP_MASK"] is True and h["PP_SKYPL"] == 0.0
        assert model["SRCMASK"].data.sum() > 16 * 10  # the sources were masked
        assert np.isnan(model["BKG"].data[0, 0])  # no data, no model
    with fits.open(tmp_path / "postprocess/m_bsub.fits") as bsub, fits.open(tmp_path / "stage3/m_i2d.fits") as raw:
        assert [h.name for h in bsub] == [h.name for h in raw]
        assert bsub[0].header["FILTER"] == "F770W" and bsub[0].header["PP_OP"] == "background"
        diff = raw["SCI"].data - bsub["SCI"].data
        assert np.nanmedian(diff) == pytest.approx(BKG, rel=0.005)
        assert np.isnan(bsub["SCI"].data[0, 0])
        np.testing.assert_array_equal(bsub["ERR"].data, raw["ERR"].data)
    assert not list((tmp_path / "postprocess").glob("*.part"))


def test_background_follows_a_gradient(tmp_path):
    from astropy.io import fits

    path = write_mosaic(tmp_path / "stage3/m_i2d.fits", noise=0.02, shape=(160, 160))
    with fits.open(path, mode="update") as hdul:
        hdul["SCI"].data += np.linspace(0, 1.6, 160)[None, :].astype(np.float32)  # 0.01 per pixel
    run(background_task(), tmp_path)
    bsub = fits.getdata(tmp_path / "postprocess/m_bsub.fits", "SCI")
    model = fits.getdata(tmp_path / "postprocess/m_bkg.fits", "BKG")
    assert abs(np.nanmedian(bsub[:, 60:100])) < 0.02
    # between the box centres the model rises with the sky (the 3x3 median filter flattens the outer boxes)
    assert np.nanmedian(model[:, 112] - model[:, 48]) == pytest.approx(0.64, rel=0.05)


def test_catalog_recovers_sources_positions_and_fluxes(tmp_path):
    from astropy.coordinates import SkyCoord
    from astropy.table import Table
    from astropy.wcs import WCS
    from astropy.io import fits

    truth = grid_sources()
    write_mosaic(tmp_path / "stage3/m_i2d.fits", sources=truth)
    run(background_task(), tmp_path)
    run(catalog_task(), tmp_path)
    cat = Table.read(tmp_path / "postprocess/m_phot.ecsv")
    assert len(cat) == len(truth) and cat.meta["n_sources"] == len(truth)
    assert cat.meta["flux_unit"] == "Jy" and str(cat["aper_total_flux"].unit) == "Jy"
    assert cat.meta["apcorr_method"].startswith("measured")
    wcs = WCS(fits.getheader(tmp_path / "stage3/m_i2d.fits", "SCI"))
    true_sky = wcs.pixel_to_world([t[0] for t in truth], [t[1] for t in truth])
    idx, sep, _ = true_sky.match_to_catalog_sky(SkyCoord(cat["ra"], cat["dec"], unit="deg"))
    assert sep.arcsec.max() < 0.02
    ratio = np.asarray(cat["aper_total_flux"][idx]) / np.array([t[2] for t in truth])
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    expected_mag = -2.5 * np.log10(np.asarray(cat["aper_total_flux"]) / 3631)
    np.testing.assert_allclose(cat["aper_total_abmag"], expected_mag)
    assert cat["point_like"].all()


def test_catalog_of_an_empty_mosaic_is_a_flagged_empty_table(tmp_path):
    from astropy.table import Table

    write_mosaic(tmp_path / "stage3/m_i2d.fits", sources=())
    run(background_task(), tmp_path)
    log = run(catalog_task(threshold=5.0), tmp_path)
    cat = Table.read(tmp_path / "postprocess/m_phot.ecsv")
    assert len(cat) == 0 and cat.meta["n_sources"] == 0
    assert cat.meta["warning"].startswith("EMPTY: no sources detected above 5.0 sigma")
    assert "aper_total_flux" in cat.colnames
    assert "EMPTY" in log.read_text()


def test_catalog_on_a_raw_mosaic_subtracts_the_background_itself(tmp_path):
    from astropy.table import Table

    write_mosaic(tmp_path / "stage3/m_i2d.fits", sources=grid_sources())
    t = task("catalog", ["stage3/m_i2d.fits"], ["postprocess/m_phot.ecsv"], filter="F770W", input="i2d")
    run(t, tmp_path)
    cat = Table.read(tmp_path / "postprocess/m_phot.ecsv")
    assert len(cat) == 16
    assert np.median(cat["aper_total_flux"]) < 1e-3  # not inflated by 2.5 MJy/sr of background


def test_a_failing_operation_raises_one_line_and_logs_it(tmp_path):
    from astropy.io import fits

    (tmp_path / "stage3").mkdir()
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(tmp_path / "stage3/m_i2d.fits")
    with pytest.raises(Exception) as info:
        run(background_task(), tmp_path)
    assert str(info.value) == "m_i2d.fits: no SCI extension"
    assert "no SCI extension" in (tmp_path / "logs/postprocess_background_x.log").read_text()
    assert not (tmp_path / "postprocess/m_bsub.fits").exists()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("stretch", ["asinh", "log"])
def test_preview_is_a_png_of_the_expected_size(tmp_path, stretch):
    import matplotlib.image

    write_mosaic(tmp_path / "stage3/m_i2d.fits", sources=grid_sources())
    t = task("preview", ["stage3/m_i2d.fits"], ["postprocess/m_preview.png"], filter="F770W", input="i2d", stretch=stretch)
    run(t, tmp_path)
    out = tmp_path / "postprocess/m_preview.png"
    assert png_size(out) == (800, 800)
    pixels = matplotlib.image.imread(out)
    assert pixels.shape == (800, 800, 4) and pixels[..., :3].std() > 0.05
    first = out.read_bytes()
    run(t, tmp_path)
    assert out.read_bytes() == first  # same data, same bytes


def test_composite_of_three_filters_on_different_grids(tmp_path):
    import matplotlib.image

    inputs = []
    for i, filt in enumerate(FILTERS):
        write_mosaic(tmp_path / f"stage3/{filt}_i2d.fits", filt=filt, sources=grid_sources(), seed=i,
                     crval=(339.015 + 1e-5 * i, 33.975), rotation_deg=20 + i)
        inputs.append(f"stage3/{filt}_i2d.fits")
    t = task("preview", inputs, ["postprocess/rgb.png"], "postprocess:preview:rgb", filter="rgb", filters=list(FILTERS),
             input="i2d")
    run(t, tmp_path)
    assert png_size(tmp_path / "postprocess/rgb.png") == (800, 800)
    rgb = matplotlib.image.imread(tmp_path / "postprocess/rgb.png")[..., :3]
    assert (rgb.max(axis=2) > 0.9).sum() > 100  # bright sources in colour


def test_astrometric_catalog_from_a_mosaic_and_from_a_user_table(tmp_path):
    from astropy.coordinates import SkyCoord
    from astropy.table import QTable, Table
    import astropy.units as u

    write_mosaic(tmp_path / "stage3/m_i2d.fits", sources=grid_sources())
    run(task("astrometric_catalog", ["stage3/m_i2d.fits"], ["postprocess/m_refcat.ecsv"], filter="F770W", input="i2d"), tmp_path)
    ref = Table.read(tmp_path / "postprocess/m_refcat.ecsv")
    assert len(ref) == 16 and {"RA", "DEC"} <= set(ref.colnames) and ref.meta["n_sources"] == 16
    assert "abs_refcat" in ref.meta["usage"]

    user = QTable({"sky_centroid": SkyCoord([339.01, 339.02] * u.deg, [33.97, 33.98] * u.deg), "flux": [1.0, 2.0]})
    user.write(tmp_path / "nircam.fits")
    params = {"table": "nircam.fits", "table_path": str(tmp_path / "nircam.fits"), "table_sha256": "0" * 64}
    run(task("astrometric_catalog", [], ["postprocess/nircam_refcat.ecsv"], **params), tmp_path)
    ref = Table.read(tmp_path / "postprocess/nircam_refcat.ecsv")
    np.testing.assert_allclose(ref["RA"], [339.01, 339.02])
    np.testing.assert_allclose(ref["DEC"], [33.97, 33.98])

    Table({"x": [1.0]}).write(tmp_path / "bad.ecsv")
    params = {"table": "bad.ecsv", "table_path": str(tmp_path / "bad.ecsv"), "table_sha256": "0" * 64}
    with pytest.raises(Exception, match=r"bad.ecsv: no RA/DEC \(or sky_centroid\) columns; found x$"):
        run(task("astrometric_catalog", [], ["postprocess/bad_refcat.ecsv"], **params), tmp_path)


def test_plan_reads_a_user_table_relative_to_the_recipe(tmp_path):
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "cat.ecsv").write_text("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: ra, datatype: float64}\n"
                                                "# - {name: dec, datatype: float64}\n# schema: astropy-2.0\nra dec\n1.0 2.0\n")
    r = recipe('[[postprocess]]\nop = "astrometric_catalog"\ntable = "refs/cat.ecsv"\n', tmp_path)
    ref = build_plan(r, exposures()).tasks[-1]
    assert ref.id == "postprocess:astrometric_catalog:table" and ref.inputs == () and ref.deps == ()
    assert ref.params["table_path"] == str(tmp_path / "refs" / "cat.ecsv") and len(ref.params["table_sha256"]) == 64
    assert ref.outputs == ("postprocess/cat_refcat.ecsv",)


def test_report_is_self_contained_and_location_free(tmp_path):
    write_mosaic(tmp_path / "stage3/m_i2d.fits", sources=grid_sources())
    run(background_task(), tmp_path)
    run(catalog_task(), tmp_path)
    run(task("preview", ["postprocess/m_bsub.fits"], ["postprocess/m_preview.png"], filter="F770W", input="background"), tmp_path)
    params = {"op": "report", "recipe_name": "t<1>", "recipe_description": "d", "recipe_file": "r.toml",
              "recipe_text": 'name = "<b>"\n'}
    t = Task("postprocess:report", "postprocess", params, (), ("postprocess/report.html",))
    run(t, tmp_path)
    page = (tmp_path / "postprocess/report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<img ") == 1 and 'src="data:image/png;base64,' in page
    assert "t&lt;1&gt;" in page and "name = &quot;&lt;b&gt;&quot;" in page  # escaped
    assert "m_phot.ecsv" in page and ">16<" in page  # the catalog and its size
    assert "RESAMP" in page and "COMPLETE" in page  # step statuses from S_* keywords
    assert "photutils" in page and "jwst" in page
    assert str(tmp_path) not in page and "http" not in page  # no absolute paths, nothing fetched
    first = page
    run(t, tmp_path)
    assert (tmp_path / "postprocess/report.html").read_text() == first


# ------------------------------------------------------------------ the command line: one line, exit 2, no traceback


@pytest.mark.parametrize("extra, expected", [
    ('[[postprocess]]\nop = "background"\nbox_size = "x"\n',
     'postprocess[0].box_size: expected an integer between 4 and 4096, got string "x"'),
    ('[[postprocess]]\nop = "backgruond"\n', 'postprocess[0].op: unknown operation "backgruond" (did you mean background?)'),
    ('[image3]\nskip = true\n[[postprocess]]\nop = "catalog"\n',
     "postprocess[0].op: catalog reads the stage-3 mosaics, but image3 does not run in this recipe (image3.skip = true)"),
])
def test_cli_reports_bad_postprocessing_in_one_line(tmp_path, extra, expected):
    from conftest import run_cli

    path = tmp_path / "r.toml"
    path.write_text(HEAD + extra)
    done = run_cli("check", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{path}: {expected}" in done.stderr
