"""``run.py compare``: pairing by role, digests, FITSDiff with tolerances, catalogs, context, reports, errors."""

from __future__ import annotations

import copy
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from appliance import compare as cmp
from appliance.errors import UserError
from appliance.manifest import build_manifest, load_manifest, product_record, write_manifest
from conftest import ROOT, run_cli

RECIPE = 'schema = 1\n[recipe]\nname = "t"\n'
EXPOSURE = "jw02732002001_02101_00001_mirimage"
PRODUCT = "jw02732-o002_t001_miri_f770w"


def write_rate(path: Path, sci: np.ndarray | None = None, *, status: str = "COMPLETE",
               dark: str = "crds://jwst_miri_dark_9001.fits", date: str = "2026-01-01T00:00:00") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    primary = fits.PrimaryHDU()
    primary.header["DATE"] = date
    primary.header["CAL_VER"] = "3.0.0"
    primary.header["R_DARK"] = dark
    primary.header["S_JUMP"] = status
    if sci is None:
        sci = np.linspace(1.0, 100.0, 64 * 64, dtype=">f4").reshape(64, 64)
    dq = np.zeros((64, 64), dtype=">u4")
    fits.HDUList([primary, fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(np.sqrt(np.abs(sci)), name="ERR"),
                  fits.ImageHDU(dq, name="DQ")]).writeto(path, overwrite=True)
    return path


def write_catalog(path: Path, flux=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = Table()
    t["label"] = np.arange(1, 6, dtype=np.int32)
    t["xcentroid"] = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    t["aper_total_flux"] = np.array([1.0, 2.0, 3.0, 4.0, 5.0]) if flux is None else np.asarray(flux)
    t.meta["date"] = "2026-01-01T00:00:00"
    t.meta["aperture_params"] = {"bkg_aperture_inner_radius": np.float64(5.0)}
    t.write(path, format="ascii.ecsv", overwrite=True)
    return path


def make_run(root: Path, *, params=None, rate=None, catalog=None, status="COMPLETE",
             dark="crds://jwst_miri_dark_9001.fits", packages=None, drop=(), date="2026-01-01T00:00:00",
             recipe=RECIPE) -> Path:
    """A small workdir with a rate file, an association, a catalog and its manifest."""
    root.mkdir(parents=True, exist_ok=True)
    rate_path = write_rate(root / "stage1" / f"{EXPOSURE}_rate.fits", rate, status=status, dark=dark, date=date)
    asn = root / "stage1" / f"{EXPOSURE}_image2_asn.json"
    asn.write_text(json.dumps({"products": [{"name": EXPOSURE}]}))
    cat = write_catalog(root / "stage3" / f"{PRODUCT}_cat.ecsv", catalog)
    products = [product_record(rate_path, root, f"detector1:{EXPOSURE}"),
                product_record(asn, root, f"image2:{EXPOSURE}"),
                product_record(cat, root, "image3:F770W")]
    products = [p for p in products if p["path"] not in drop]
    tasks = [{"id": f"detector1:{EXPOSURE}", "kind": "detector1", "params": {"steps": params or {}},
              "inputs": [], "outputs": []},
             {"id": f"image2:{EXPOSURE}", "kind": "image2", "params": {"steps": {}, "product_name": EXPOSURE},
              "inputs": [], "outputs": []},
             {"id": "image3:F770W", "kind": "image3", "params": {"steps": {}, "product_name": PRODUCT},
              "inputs": [], "outputs": []}]
    env = {"python": {"version": "3.11.7"}, "platform": {"platform": "Linux"}, "jwst": "3.0.0",
           "packages": packages or {"jwst": "3.0.0", "numpy": "2.4.0"}, "crds_context": "jwst_9000.pmap",
           "crds_references": {"jwst_miri_dark_9001.fits": "ab" * 32}, "image": None}
    manifest = build_manifest(recipe_text=recipe, recipe_path="recipes/t.toml", environment=env, inputs=[],
                              products=products, tasks=tasks, started="s", finished="f",
                              extra={"plan": {"stages": ["detector1"], "exposures": [EXPOSURE]}})
    write_manifest(root, manifest)
    return root


def statuses(result) -> dict:
    return {p.label: p.status for p in result.products}


# ----------------------------------------------------------------------------- unit


def test_identical_runs_compare_identical(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", date="2026-06-01T12:00:00")  # another write time: same content digest
    result = cmp.compare(a, b)
    assert set(statuses(result).values()) == {cmp.IDENTICAL}
    assert result.exit_code() == 0 and result.verdict == cmp.IDENTICAL
    assert result.changes == []
    assert "all 3 products identical" in cmp.render_text(result)


def test_products_are_paired_by_role_not_file_name(tmp_path):
    roles = cmp.product_roles(load_manifest(make_run(tmp_path / "a")))
    assert set(roles) == {("detector1", EXPOSURE, "rate.fits"), ("image2", EXPOSURE, "asn.json"),
                          ("image3", "F770W", "cat.ecsv")}
    # the same product in another directory still meets its counterpart
    b = make_run(tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    (b / "moved").mkdir()
    shutil.move(b / "stage3" / f"{PRODUCT}_cat.ecsv", b / "moved" / f"{PRODUCT}_cat.ecsv")
    m["products"][2]["path"] = f"moved/{PRODUCT}_cat.ecsv"
    (b / "manifest.json").write_text(json.dumps(m))
    result = cmp.compare(tmp_path / "a", b)
    assert set(statuses(result).values()) == {cmp.IDENTICAL}


def test_tiny_perturbation_within_rtol_is_within_tolerance(tmp_path):
    a = make_run(tmp_path / "a")
    sci = np.linspace(1.0, 100.0, 64 * 64, dtype=">f4").reshape(64, 64) * np.float32(1 + 2e-6)
    b = make_run(tmp_path / "b", rate=sci)
    result = cmp.compare(a, b)
    rate = next(p for p in result.products if p.role[2] == "rate.fits")
    assert rate.status == cmp.WITHIN
    sci_finding = next(f for f in rate.findings if f.where == "SCI")
    assert not sci_finding.beyond and sci_finding.count == 0
    assert 1e-7 < sci_finding.max_rel < 1e-5
    assert result.exit_code() == 0 and result.verdict == cmp.WITHIN
    assert "within tolerance" in cmp.render_text(result)


def test_a_larger_perturbation_is_different_with_counts_and_largest_differences(tmp_path):
    a = make_run(tmp_path / "a")
    sci = np.linspace(1.0, 100.0, 64 * 64, dtype=">f4").reshape(64, 64)
    sci[:2, :] *= 1.01  # 128 pixels by 1 %
    b = make_run(tmp_path / "b", rate=sci)
    result = cmp.compare(a, b)
    rate = next(p for p in result.products if p.role[2] == "rate.fits")
    assert rate.status == cmp.DIFFERENT
    sci_finding = next(f for f in rate.findings if f.where == "SCI")
    assert sci_finding.beyond and sci_finding.count == 128 and sci_finding.total == 4096
    assert sci_finding.max_rel == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert "SCI: 128 of 4096 values beyond tolerance" in cmp.render_text(result)
    assert result.exit_code() == 1
    # ... and a per-extension tolerance, as jwst's STFITSDiff takes them, accepts it
    loose = cmp.parse_extension_tolerances(["SCI=0.02", "err=0.02,0"], 1e-5, 1e-7)
    assert cmp.compare(a, b, tolerances=loose).exit_code() == 0


def test_the_global_tolerance_is_settable(tmp_path):
    a = make_run(tmp_path / "a")
    sci = np.linspace(1.0, 100.0, 64 * 64, dtype=">f4").reshape(64, 64) * np.float32(1.001)
    b = make_run(tmp_path / "b", rate=sci)
    assert cmp.compare(a, b).exit_code() == 1
    assert cmp.compare(a, b, tolerances=cmp.Tolerances(rtol=1e-2)).exit_code() == 0


def test_header_and_dq_differences_are_named(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", status="SKIPPED", dark="crds://jwst_miri_dark_9002.fits")
    result = cmp.compare(a, b)
    rate = next(p for p in result.products if p.role[2] == "rate.fits")
    assert rate.status == cmp.DIFFERENT
    text = " ".join(f.text for f in rate.findings)
    assert "S_JUMP 'COMPLETE' → 'SKIPPED'" in text and "R_DARK" in text
    sections = {c.section: c.text for c in result.changes}
    assert sections["step statuses"] == "S_JUMP: COMPLETE → SKIPPED in 1 product"
    assert "R_DARK: crds://jwst_miri_dark_9001.fits → crds://jwst_miri_dark_9002.fits" in \
        sections["reference files per product"]


def test_ignored_keywords_alone_are_within_tolerance(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    with fits.open(b / "stage1" / f"{EXPOSURE}_rate.fits", mode="update") as hdul:
        hdul[0].header["CAL_VER"] = "3.0.1"  # jwst's regression tests ignore it; the digest does not
    m = json.loads((b / "manifest.json").read_text())
    m["products"][0] = product_record(b / m["products"][0]["path"], b, m["products"][0]["task"])
    (b / "manifest.json").write_text(json.dumps(m))
    rate = next(p for p in cmp.compare(a, b).products if p.role[2] == "rate.fits")
    assert rate.status == cmp.WITHIN and "ignore" in rate.note


def test_catalogs_are_compared_column_by_column(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", catalog=[1.0, 2.0, 3.0, 4.0, 5.0 * (1 + 1e-7)])
    cat = next(p for p in cmp.compare(a, b).products if p.role[2] == "cat.ecsv")
    assert cat.status == cmp.WITHIN
    c = make_run(tmp_path / "c", catalog=[1.0, 2.0, 3.5, 4.0, 5.0])
    cat = next(p for p in cmp.compare(a, c).products if p.role[2] == "cat.ecsv")
    assert cat.status == cmp.DIFFERENT
    (finding,) = [f for f in cat.findings if f.beyond]
    assert finding.where == "column aper_total_flux" and finding.count == 1
    assert finding.max_abs == pytest.approx(0.5)


def test_other_kinds_have_no_tolerance(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    asn = b / "stage1" / f"{EXPOSURE}_image2_asn.json"
    asn.write_text(json.dumps({"products": [{"name": "other"}]}))
    m = json.loads((b / "manifest.json").read_text())
    m["products"][1] = product_record(asn, b, m["products"][1]["task"])
    (b / "manifest.json").write_text(json.dumps(m))
    result = cmp.compare(a, b)
    assert statuses(result)[f"image2 {EXPOSURE} asn.json"] == cmp.DIFFERENT
    assert result.exit_code() == 1


def test_a_changed_step_parameter_is_named(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", params={"jump": {"rejection_threshold": 5.0}},
                 recipe=RECIPE + "[detector1.steps.jump]\nrejection_threshold = 5.0\n")
    result = cmp.compare(a, b)
    texts = [c.text for c in result.changes if c.section == "step parameters"]
    assert texts == ["detector1 jump.rejection_threshold: (default) → 5.0 (1 detector1 task)"]
    assert any(c.section == "recipe" for c in result.changes)
    md = cmp.render_markdown(result)
    assert "jump.rejection_threshold" in md and "recipe diff" in md and "+rejection_threshold = 5.0" in md


def test_package_and_context_changes_are_reported(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", packages={"jwst": "3.0.1", "numpy": "2.4.0", "scipy": "1.16.0"})
    m = json.loads((b / "manifest.json").read_text())
    m["environment"]["crds_context"] = "jwst_9001.pmap"
    m["environment"]["crds_references"] = {"jwst_miri_dark_9001.fits": "cd" * 32}
    (b / "manifest.json").write_text(json.dumps(m))
    changes = [(c.section, c.text) for c in cmp.compare(a, b).changes]
    assert ("packages", "jwst 3.0.0 → 3.0.1") in changes
    assert ("packages", "scipy 1.16.0 added") in changes
    assert ("CRDS", "crds_context: jwst_9000.pmap → jwst_9001.pmap") in changes
    assert any(s == "CRDS reference files" and t.startswith("jwst_miri_dark_9001.fits") for s, t in changes)


def test_products_that_disappeared_or_appeared_are_reported(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", drop=(f"stage3/{PRODUCT}_cat.ecsv",))
    result = cmp.compare(a, b)
    assert statuses(result)["image3 F770W cat.ecsv"] == cmp.DISAPPEARED
    assert result.exit_code() == 1
    assert "MISSING   image3 F770W cat.ecsv" in cmp.render_text(result)
    back = cmp.compare(b, a)
    assert statuses(back)["image3 F770W cat.ecsv"] == cmp.APPEARED and back.exit_code() == 1


def test_a_needed_product_file_that_is_missing_is_one_clear_error(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", catalog=[9.0, 2.0, 3.0, 4.0, 5.0])
    (b / "stage3" / f"{PRODUCT}_cat.ecsv").unlink()
    with pytest.raises(UserError, match=r"^new: .*_cat\.ecsv: missing, but the manifest lists it"):
        cmp.compare(a, b)
    # a baseline kept as its manifest alone: digests only
    result = cmp.compare(a, b, digests_only=True)
    assert statuses(result)["image3 F770W cat.ecsv"] == cmp.DIFFERENT
    # a product changed after its run is refused, not compared
    c = make_run(tmp_path / "c", catalog=[9.0, 2.0, 3.0, 4.0, 5.0])
    write_catalog(c / "stage3" / f"{PRODUCT}_cat.ecsv", [8.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.raises(UserError, match="does not match the sha256 its manifest records"):
        cmp.compare(a, c)


def test_bad_extension_tolerances_are_user_errors():
    with pytest.raises(UserError, match="expected EXT=RTOL"):
        cmp.parse_extension_tolerances(["SCI"], 1e-5, 1e-7)
    with pytest.raises(UserError, match="expected EXT=RTOL"):
        cmp.parse_extension_tolerances(["SCI=-1"], 1e-5, 1e-7)
    tol = cmp.parse_extension_tolerances(["sci=1e-3", "1=0.1,0.2"], 1e-5, 1e-7)
    assert tol.for_extension("SCI", 1) == (0.1, 0.2)  # the HDU number wins, as in STFITSDiff
    assert tol.for_extension("SCI", 5) == (1e-3, 1e-7)
    assert tol.for_extension("ERR", 2) == (1e-5, 1e-7)


def test_reports_markdown_and_junit(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", catalog=[1.0, 2.0, 3.5, 4.0, 5.0], drop=(f"stage1/{EXPOSURE}_image2_asn.json",))
    result = cmp.compare(a, b)
    md = cmp.render_markdown(result)
    assert md.startswith("## Regression comparison: DIFFERENT")
    assert "### Different (1)" in md and "### Disappeared (1)" in md
    suite = ET.fromstring(cmp.render_junit(result))
    assert suite.get("failures") == "2" and suite.get("tests") == "4"
    failed = {c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None}
    assert failed == {"image3 F770W cat.ecsv", f"image2 {EXPOSURE} asn.json"}


# ----------------------------------------------------------------------------- the command


def test_cli_exit_codes_and_report_files(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    done = run_cli("compare", str(a), str(b / "manifest.json"), "--report-md", str(tmp_path / "r.md"),
                   "--junit", str(tmp_path / "r.xml"))
    assert done.returncode == 0, done.stderr
    assert "result: IDENTICAL" in done.stdout
    assert (tmp_path / "r.md").read_text().startswith("## Regression comparison: identical")
    ET.parse(tmp_path / "r.xml")
    c = make_run(tmp_path / "c", catalog=[1.0, 2.0, 3.5, 4.0, 5.0])
    done = run_cli("compare", str(a), str(c))
    assert done.returncode == 1 and "result: DIFFERENT" in done.stdout
    done = run_cli("compare", str(a), str(c), "--rtol", "0.5")
    assert done.returncode == 0, done.stdout


def one_line_error(done, code=2) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())

    v2 = copy.deepcopy(m)
    v2["manifest_version"] = 2
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    line = one_line_error(run_cli("compare", str(a), str(tmp_path / "v2.json"), "--report-md", str(tmp_path / "r.md")))
    assert "manifest_version: expected 1, found 2" in line and line.startswith("error: new: ")

    tampered = copy.deepcopy(m)
    tampered["recipe"]["text"] += "# edited\n"
    (tmp_path / "t.json").write_text(json.dumps(tampered))
    line = one_line_error(run_cli("compare", str(tmp_path / "t.json"), str(a)))
    assert "tampered manifest" in line and line.startswith("error: baseline: ")

    assert "no such manifest" in one_line_error(run_cli("compare", str(a), str(tmp_path / "nowhere")))
    assert "does not exist" in one_line_error(run_cli("compare", str(a), str(b), "--junit", str(tmp_path / "x" / "r.xml")))
    assert "--ext-tol" in one_line_error(run_cli("compare", str(a), str(b), "--ext-tol", "SCI"))
    assert not (tmp_path / "r.md").exists()


def test_importing_compare_does_not_import_jwst_or_astropy():
    import subprocess
    import sys

    code = ("import sys, appliance.cli, appliance.compare, appliance.reproduce, appliance.export; "
            "appliance.cli.build_parser(); "
            "print(any(m.split('.')[0] in ('jwst', 'astropy', 'stpipe') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


# ----------------------------------------------------------------------------- end to end

SMALL = """schema = 1
[recipe]
name = "small"
[environment]
jwst = "3.0.0"
crds_context = "jwst_9000.pmap"
[inputs.simulate]
filters = ["F770W"]
dithers = 2
subarray = "SUB256"
seed = 1
"""


def small_run_once(tmp_path_factory) -> tuple[Path, dict]:
    """The simulated observation in one filter, two dithers (≈20 s), reduced once per test session.

    Shared by test_compare, test_reproduce and test_export through the session's
    base temporary directory, so the three modules pay for one run.
    """
    root = tmp_path_factory.getbasetemp() / "small-run"
    workdir = root / "work"
    if not (workdir / "manifest.json").is_file():
        root.mkdir(exist_ok=True)
        (root / "small.toml").write_text(SMALL)
        done = run_cli("run", str(root / "small.toml"), "--workdir", str(workdir))
        assert done.returncode == 0, done.stderr[-3000:]
    return workdir, json.loads((workdir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """(workdir, manifest) of the small simulated reduction."""
    return small_run_once(tmp_path_factory)


@pytest.fixture(scope="session")
def small_jump_run(tmp_path_factory) -> Path:
    """The small reduction again with another jump threshold: a run whose products really differ."""
    root = tmp_path_factory.mktemp("small-jump")
    recipe = root / "small-jump.toml"
    recipe.write_text(SMALL + "[detector1.steps.jump]\nrejection_threshold = 3.0\n")
    done = run_cli("run", str(recipe), "--workdir", str(root / "jump"))
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "jump"


@pytest.mark.e2e
def test_a_changed_jump_threshold_is_different_with_the_parameter_named(small_run, small_jump_run, tmp_path):
    base, _ = small_run
    done = run_cli("compare", str(base), str(small_jump_run), "--report-md", str(tmp_path / "r.md"),
                   "--junit", str(tmp_path / "r.xml"))
    assert done.returncode == 1, done.stdout
    assert "DIFFERENT detector1 jw02732002001_02101_00001_mirimage rate.fits" in done.stdout
    assert "detector1 jump.rejection_threshold: (default) → 3.0 (2 detector1 tasks)" in done.stdout
    assert "values beyond tolerance" in done.stdout
    assert "result: DIFFERENT" in done.stdout
    assert "jump.rejection_threshold" in (tmp_path / "r.md").read_text()
    assert int(ET.parse(tmp_path / "r.xml").getroot().get("failures")) >= 10
