"""Post-processing on the demo reduction (the session's ``demo_run``): checked against the simulation's truth."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

FILTERS = ("F770W", "F1000W", "F1500W")
MATCH_RADIUS_ARCSEC = 0.2


def stem(filt: str) -> str:
    return f"jw02732-o002_t001_miri_{filt.lower()}"


def truth(workdir: Path):
    from astropy.table import Table

    return Table.read(workdir / "uncal" / "truth.ecsv")


def test_every_postprocess_output_is_a_manifest_product(demo_run):
    workdir, manifest = demo_run
    products = {p["path"]: p for p in manifest["products"]}
    expected = {f"postprocess/{stem(f)}_{s}" for f in FILTERS for s in ("bsub.fits", "bkg.fits", "phot.ecsv", "preview.png")}
    expected |= {"postprocess/jw02732-o002_t001_miri_f770w-f1000w-f1500w_rgb.png", "postprocess/report.html"}
    assert expected <= set(products)
    assert {p.relative_to(workdir).as_posix() for p in (workdir / "postprocess").iterdir()} == expected  # no temporaries
    assert products["postprocess/report.html"]["task"] == "postprocess:report"
    assert products[f"postprocess/{stem('F770W')}_phot.ecsv"]["task"] == "postprocess:catalog:F770W"
    tasks = [t["id"] for t in manifest["tasks"]]
    assert tasks[-1] == "postprocess:report"
    assert all(p["content_digest"] for p in products.values())


@pytest.mark.parametrize("filt", FILTERS)
def test_background_recovers_the_simulated_level(demo_run, filt):
    from astropy.io import fits

    workdir, _ = demo_run
    header = fits.getheader(workdir / f"postprocess/{stem(filt)}_bkg.fits", 0)
    simulated = truth(workdir).meta["background_MJy_per_sr"][filt]
    # skymatch's per-exposure levels were subtracted by resample; the model plus them is the sky
    recovered = header["PP_BKG"] + header["PP_SKYPL"]
    print(f"{filt}: background {header['PP_BKG']:.4f} + skymatch {header['PP_SKYPL']:.4f} = {recovered:.4f} MJy/sr, "
          f"simulated {simulated}, ratio {recovered / simulated:.4f}")
    assert abs(recovered / simulated - 1) < 0.02
    bsub = fits.getdata(workdir / f"postprocess/{stem(filt)}_bsub.fits", "SCI")
    assert abs(np.nanmedian(bsub)) < 0.02 * simulated


@pytest.mark.parametrize("filt", FILTERS)
def test_catalog_recovers_the_injected_point_sources(demo_run, filt):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    workdir, _ = demo_run
    cat = Table.read(workdir / f"postprocess/{stem(filt)}_phot.ecsv")
    points = truth(workdir)
    points = points[points["kind"] == "point"]
    assert cat.meta["flux_unit"] == "Jy" and cat.meta["n_sources"] == len(cat) > 0
    # the S/N each injected source should reach: its aperture flux over the background-limited aperture error
    expected_snr = np.asarray(points[f"flux_{filt}"]) / cat.meta["apcorr"] / np.min(cat["aper_flux_err"])
    bright = expected_snr > 10
    sky = SkyCoord(points["ra"], points["dec"], unit="deg")
    idx, sep, _ = sky.match_to_catalog_sky(SkyCoord(cat["ra"], cat["dec"], unit="deg"))
    found = sep < MATCH_RADIUS_ARCSEC * u.arcsec
    completeness = (found & bright).sum() / bright.sum()
    rms = float(np.sqrt(np.mean(sep[found].arcsec ** 2)))
    ratio = float(np.median(np.asarray(cat["aper_total_flux"][idx[found]]) / np.asarray(points[f"flux_{filt}"][found])))
    print(f"{filt}: {len(cat)} sources; completeness {completeness:.3f} of {bright.sum()} point sources with S/N>10; "
          f"astrometric rms {rms * 1000:.1f} mas; median flux ratio {ratio:.4f}; aperture correction {cat.meta['apcorr']:.4f}")
    assert completeness >= 0.95
    assert rms < 0.05
    assert abs(ratio - 1) < 0.03
    assert np.isfinite(cat["aper_total_abmag"][idx[found]]).all()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_previews_are_pngs_of_the_expected_size(demo_run):
    workdir, _ = demo_run
    pngs = sorted((workdir / "postprocess").glob("*.png"))
    assert len(pngs) == 4
    for png in pngs:
        assert png_size(png) == (800, 800)


def test_report_lists_previews_statuses_and_catalogs(demo_run):
    workdir, _ = demo_run
    page = (workdir / "postprocess/report.html").read_text(encoding="utf-8")
    assert page.count('<img alt="') == 4
    for filt in FILTERS:
        assert f"{stem(filt)}_cat.ecsv" in page and f"{stem(filt)}_phot.ecsv" in page and f"{stem(filt)}_i2d.fits" in page
    assert "jw02732002001_02101_00001_mirimage_rate.fits" in page and "TWKREG" in page
    assert "jwst_9000.pmap" in page and "op = &quot;report&quot;" in page  # the recipe, escaped
    assert str(workdir) not in page


def chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


def test_report_renders_in_headless_chromium(demo_run, tmp_path):
    browser = chromium()
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    workdir, _ = demo_run
    page = (workdir / "postprocess/report.html").as_uri()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # each preview records the size the browser decoded it at once the page has loaded
    assert done.stdout.count('data-decoded="800x800"') == 4, done.stdout[:500]
    shot = tmp_path / "shot.png"
    done = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,1600", page],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    dark = (pixels.max(axis=2) < 0.2).mean()  # the previews' dark sky; the page itself is white
    assert dark > 0.05
