"""``run.py regress`` (appliance.regress) and the science figures it reports (appliance.compare.science).

The report is checked on two real host runs that differ (another jump threshold);
the test marked ``container`` runs the demo in the images of two jwst releases.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from appliance import regress
from appliance.compare import compare
from appliance.compare.model import Tolerances
from appliance.compare.science import catalog_stats, image_stats
from appliance.errors import UserError
from conftest import run_cli
from test_compare import small_jump_run, small_run  # noqa: F401  (session fixtures)
from test_container import container_demo, docker_client, image, release_images  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def test_image_figures(tmp_path):
    a = np.ones((10, 10), np.float32)
    b = a.copy()
    b[0, :] = 1.1  # 10 % of the pixels 10 % brighter
    b[1, 0] = np.nan
    for name, data in (("a", a), ("b", b)):
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI")]).writeto(tmp_path / f"{name}.fits")
    stats = image_stats(tmp_path / "a.fits", tmp_path / "b.fits", Tolerances())
    assert stats.pixels == 99 and stats.median_ratio == pytest.approx(1.0)
    assert stats.p99_ratio == pytest.approx(1.1, rel=1e-6) and stats.p1_ratio == pytest.approx(1.0)
    assert stats.beyond_fraction == pytest.approx(10 / 99)
    assert "SCI new/baseline median 1 (1st-99th percentile 1-1.1), 10.1% of pixels beyond tolerance" == stats.text()
    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "none.fits")
    assert image_stats(tmp_path / "a.fits", tmp_path / "none.fits", Tolerances()) is None


def test_catalog_figures(tmp_path):
    ra = 100 + np.arange(5) * 1e-3
    Table({"ra": ra, "dec": np.full(5, 40.0), "aper_total_flux": np.arange(1, 6.0)}).write(tmp_path / "a.ecsv")
    # 4 of the sources again, 36 mas to the north and 2 % brighter; one source is gone, one new far away
    Table({"ra": np.r_[ra[:4], 101.0], "dec": np.r_[np.full(4, 40.0 + 1e-5), 40.0],
           "aper_total_flux": np.r_[np.arange(1, 5.0) * 1.02, 9.0]}).write(tmp_path / "b.ecsv")
    stats = catalog_stats(tmp_path / "a.ecsv", tmp_path / "b.ecsv")
    assert (stats.baseline_sources, stats.new_sources, stats.matched) == (5, 5, 4)
    assert stats.median_flux_ratio == pytest.approx(1.02) and stats.median_offset_mas == pytest.approx(36.0, rel=1e-3)
    assert stats.flux_column == "aper_total_flux"
    assert stats.text().startswith('4 of 5 baseline sources matched (5 in the new catalog) within 0.25"')


def test_sides_are_two_named_releases_or_images(tmp_path):
    sides = regress.plan_sides(tmp_path, ["3.0.0"], ["jwst-appliance:2.0.1"])
    assert [(s.label, s.release, s.image) for s in sides] == [("3.0.0", "3.0.0", None),
                                                              ("jwst-appliance_2.0.1", None, "jwst-appliance:2.0.1")]
    assert sides[1].workdir == tmp_path / "jwst-appliance_2.0.1"
    with pytest.raises(UserError, match="expected two sides"):
        regress.plan_sides(tmp_path, ["3.0.0"], [])
    with pytest.raises(UserError, match="both sides are 2.0.1"):
        regress.plan_sides(tmp_path, ["2.0.1", "2.0.1"], [])
    with pytest.raises(UserError, match="not a supported jwst release"):
        regress.plan_sides(tmp_path, ["3.0.0", "../../x"], [])
    with pytest.raises(UserError, match="expected an image name"):
        regress.plan_sides(tmp_path, ["3.0.0"], ["x; rm -rf /"])


def test_regress_without_two_sides_is_exit_2_and_writes_nothing(tmp_path):
    done = run_cli("regress", "recipes/demo.toml", "--release", "3.0.0", "--workdir", str(tmp_path / "r"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "expected two sides" in done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.e2e
def test_the_report_names_parameter_changes_and_science_figures(small_run, small_jump_run, tmp_path):
    """Two real runs that differ: the report a scientist reads, in Markdown, HTML and JUnit."""
    comparison = compare(small_run[0], small_jump_run)
    figures = regress.science(comparison)
    markdown = regress.render_markdown(comparison, figures, "Regression of recipe small")
    page = regress.render_html(comparison, figures, "Regression of recipe small")
    assert markdown.startswith("# Regression of recipe small: jwst 3.0.0 (jwst_9000.pmap) vs jwst 3.0.0")
    section = markdown.split("## Effective step parameters that changed", 1)[1].split("##", 1)[0]
    assert "detector1 jump.rejection_threshold: 4.0 → 3.0 (2 detector1 tasks)" in section
    assert "| detector1 jw02732002001_02101_00001_mirimage rate.fits | different | SCI new/baseline median" in markdown
    assert "% of pixels beyond tolerance" in markdown and "baseline sources matched" in markdown
    assert "<h2>Effective step parameters that changed</h2>" in page and "jump.rejection_threshold" in page
    for _, heading in regress.SECTIONS:
        assert f"## {heading}" in markdown


@pytest.mark.container
@pytest.mark.e2e
def test_regress_between_two_releases_in_their_images(release_images, container_demo, tmp_path):
    """The demo in the 3.0.0 image (shared with test_container) and in the 2.0.1 image: the 2.0.1 run
    verifies, and the report names the real defaults that changed between the releases."""
    workdir = container_demo.parent
    done = run_cli("regress", "recipes/demo.toml", "--release", "3.0.0", "--release", "2.0.1",
                   "--workdir", str(workdir))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # the releases' products differ
    assert "result: DIFFERENT" in done.stdout
    verified = run_cli("verify", str(workdir / "2.0.1"))
    assert verified.returncode == 0, verified.stdout
    manifest = json.loads((workdir / "2.0.1" / "manifest.json").read_text())
    assert manifest["environment"]["jwst"] == "2.0.1"
    markdown = (workdir / "regress.md").read_text()
    assert markdown.startswith("# Regression of recipe demo: jwst 3.0.0 (jwst_9000.pmap) vs jwst 2.0.1 (jwst_9000.pmap)")
    section = markdown.split("## Effective step parameters that changed", 1)[1].split("##", 1)[0]
    # jwst 3.0.0 rewrote persistence (#10091): its parameters differ from 2.0.1's
    assert "persistence." in section
    assert "baseline sources matched" in markdown and "SCI new/baseline median" in markdown
    assert int(ET.parse(workdir / "regress.xml").getroot().get("failures")) >= 1
    assert "<h1>Regression of recipe demo" in (workdir / "regress.html").read_text()
    print(section)  # the real parameter changes, for the closing note (pytest -s)


@pytest.mark.container
@pytest.mark.e2e
def test_the_demo_runs_and_verifies_in_the_1_x_image(release_images, tmp_path):
    """jwst 1.20.0 with the dependencies of October 2025 runs the appliance's code and the demo."""
    recipe = tmp_path / "demo-1.20.0.toml"
    recipe.write_text((ROOT / "recipes" / "demo.toml").read_text().replace('jwst = "3.0.0"', 'jwst = "1.20.0"', 1))
    done = run_cli("docker", "run", str(recipe), "--release", "1.20.0", "--workdir", str(tmp_path / "w"))
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["environment"]["jwst"] == "1.20.0"
    assert manifest["environment"]["packages"]["photutils"].startswith("2.")
    verified = run_cli("verify", str(tmp_path / "w"))
    assert verified.returncode == 0, verified.stdout


@pytest.mark.container
def test_check_in_an_older_image_lists_the_parameters_it_lacks(release_images, docker_client, tmp_path):
    """A recipe written for 3.0.0 (refpix.siglimit exists only there), checked in the 2.0.1 image."""
    recipe = tmp_path / "new.toml"
    recipe.write_text((ROOT / "recipes" / "demo.toml").read_text() + "\n[detector1.steps.refpix]\nsiglimit = 3.0\n")
    tmp_path.chmod(0o755)
    recipe.chmod(0o644)
    image = release_images["2.0.1"]
    container = docker_client.containers.run(image.id, ["check", "/recipes/new.toml", "--workdir", "/tmp/w"],
                                             volumes={str(tmp_path): {"bind": "/recipes", "mode": "ro"}},
                                             network_mode="none", detach=True)
    try:
        code = container.wait()["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    assert code == 2, out + err
    assert "unknown  detector1.steps.refpix.siglimit: not a parameter of refpix in jwst 2.0.1" in out
    assert "unknown to jwst 2.0.1" in err
