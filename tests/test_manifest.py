"""The manifest: records, environment, atomic writing, loading and verification."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from appliance import __version__
from appliance.errors import UserError
from appliance.manifest import (
    MANIFEST_VERSION,
    build_manifest,
    capture_environment,
    file_sha256,
    input_record,
    load_manifest,
    product_record,
    verify,
    write_manifest,
)

RECIPE = 'schema = 1\n[recipe]\nname = "t"\n'


def write_product(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    primary = fits.PrimaryHDU()
    h = primary.header
    h["DATE"] = "2026-01-01T00:00:00.000"
    h["R_DARK"] = "crds://jwst_mirimage_dark_0001.fits"
    h["R_FLAT"] = "N/A"
    h["R_MASK"] = "crds://jwst_mirimage_mask_0002.fits"
    h["R_NUMBER"] = 3  # not a string: not a reference
    h["S_DQINIT"] = "COMPLETE"
    h["S_EMICOR"] = "SKIPPED"
    fits.HDUList([primary, fits.ImageHDU(np.full((4, 4), value, dtype=">f4"), name="SCI")]).writeto(path)
    return path


@pytest.fixture
def workdir(tmp_path):
    """A small reduction: one input, one FITS product, a catalog and an association."""
    root = tmp_path / "work"
    (root / "uncal").mkdir(parents=True)
    (root / "uncal" / "x_uncal.fits").write_bytes(b"\0" * 2880)
    write_product(root / "stage1" / "x_rate.fits")
    (root / "stage3").mkdir()
    (root / "stage3" / "x_cat.ecsv").write_text("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: a, datatype: int64}\n# schema: astropy-2.0\na\n1\n")
    (root / "stage3" / "x_asn.json").write_text(json.dumps({"asn_id": "o002"}))
    return root


def make_manifest(root: Path, extra=None) -> dict:
    inputs = [input_record(root / "uncal" / "x_uncal.fits", root, "simulate:seed=1", "2026-01-01T00:00:00+00:00")]
    products = [
        product_record(root / "stage1" / "x_rate.fits", root, "detector1:x"),
        product_record(root / "stage3" / "x_cat.ecsv", root, "catalog"),
        product_record(root / "stage3" / "x_asn.json", root, "associations"),
    ]
    env = capture_environment(crds_context="jwst_9000.pmap", crds_path="/crds", crds_mode="local",
                              use_step_pars=True, env_mismatches=[])
    tasks = [{"id": "detector1:x", "kind": "detector1", "key": "0" * 64, "seconds": 1.5, "outputs": ["stage1/x_rate.fits"]}]
    return build_manifest(recipe_text=RECIPE, recipe_path="recipes/t.toml", environment=env, inputs=inputs,
                          products=products, tasks=tasks, started="2026-01-01T00:00:00+00:00",
                          finished="2026-01-01T00:01:00+00:00", extra=extra)


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


def test_file_sha256_matches_hashlib_for_any_buffer_size(tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    for bufsize in (1, 1000, 1 << 20):
        assert file_sha256(path, bufsize=bufsize) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_product_record_of_a_fits_product(workdir):
    path = workdir / "stage1" / "x_rate.fits"
    record = product_record(path, workdir, "detector1:x")
    assert record == {
        "path": "stage1/x_rate.fits",
        "size": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "content_digest": record["content_digest"],
        "task": "detector1:x",
        "crds_refs": {"R_DARK": "crds://jwst_mirimage_dark_0001.fits", "R_MASK": "crds://jwst_mirimage_mask_0002.fits"},
        "step_status": {"S_DQINIT": "COMPLETE", "S_EMICOR": "SKIPPED"},
    }
    assert record["content_digest"].startswith("sha256:")
    assert record["content_digest"] != "sha256:" + record["sha256"]  # canonicalised


def test_product_record_of_other_kinds(workdir):
    asn = product_record(workdir / "stage3" / "x_asn.json", workdir, "associations")
    assert asn["crds_refs"] == {} and asn["step_status"] == {}
    assert asn["content_digest"] == "sha256:" + asn["sha256"]  # bytes kinds: the file's own sha256
    cat = product_record(workdir / "stage3" / "x_cat.ecsv", workdir, "catalog")
    assert cat["path"] == "stage3/x_cat.ecsv" and cat["crds_refs"] == {}


def test_records_refuse_files_outside_the_workdir(tmp_path, workdir):
    outside = write_product(tmp_path / "elsewhere" / "y_rate.fits")
    with pytest.raises(ValueError, match="not inside"):
        product_record(outside, workdir, "t")


def test_input_record(workdir):
    path = workdir / "uncal" / "x_uncal.fits"
    assert input_record(path, workdir, "file:///data/x_uncal.fits") == {
        "name": "uncal/x_uncal.fits",
        "size": 2880,
        "sha256": hashlib.sha256(b"\0" * 2880).hexdigest(),
        "origin": "file:///data/x_uncal.fits",
        "fetched_at": None,
    }
    assert input_record(path, workdir, "mast:JWST/product/x_uncal.fits", "2026-01-01T00:00:00+00:00")["fetched_at"]


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


def test_capture_environment_outside_a_container(monkeypatch, tmp_path):
    for var in ("APPLIANCE_IMAGE_ID", "APPLIANCE_IMAGE_DIGEST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APPLIANCE_IMAGE_INFO", str(tmp_path / "absent.json"))
    env = capture_environment(crds_context="jwst_1584.pmap", crds_path="/cache", crds_mode="local",
                              use_step_pars=False, env_mismatches=["jwst: recipe 2.0.0, installed 3.0.0"])
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["python"]["implementation"] == "CPython"
    assert env["platform"]["machine"] and env["platform"]["platform"]
    assert env["jwst"] == "3.0.0" and env["packages"]["jwst"] == "3.0.0"
    for name in ("crds", "stpipe", "stdatamodels"):
        assert env[name] == env["packages"][name]
    assert list(env["packages"]) == sorted(env["packages"])
    assert {"numpy", "astropy", "asdf"} <= set(env["packages"])
    assert env["crds_context"] == "jwst_1584.pmap" and env["crds_path"] == "/cache" and env["crds_mode"] == "local"
    assert env["use_step_pars"] is False
    assert env["env_mismatches"] == ["jwst: recipe 2.0.0, installed 3.0.0"]
    assert env["image"] is None
    json.dumps(env)


def test_capture_environment_inside_the_appliance_image(monkeypatch, tmp_path):
    info = tmp_path / "image.json"
    labels = {"org.jwst-appliance.jwst.version": "3.0.0", "org.opencontainers.image.revision": "abc"}
    info.write_text(json.dumps(labels))
    monkeypatch.setenv("APPLIANCE_IMAGE_INFO", str(info))
    monkeypatch.setenv("APPLIANCE_IMAGE_ID", "sha256:" + "1" * 64)
    monkeypatch.setenv("APPLIANCE_IMAGE_DIGEST", "appliance@sha256:" + "2" * 64)
    env = capture_environment(crds_context="c", crds_path="p", crds_mode="local", use_step_pars=True, env_mismatches=[])
    assert env["image"] == {"id": "sha256:" + "1" * 64, "digest": "appliance@sha256:" + "2" * 64, "labels": labels}


# --------------------------------------------------------------------------
# Build and write
# --------------------------------------------------------------------------


def test_build_manifest_fields(workdir):
    m = make_manifest(workdir, extra={"plan": {"stages": ["detector1"]}})
    assert m["manifest_version"] == MANIFEST_VERSION == 1
    assert m["tool"] == {"name": "jwst-reduction-appliance", "version": __version__}
    assert m["recipe"] == {"path": "recipes/t.toml", "sha256": hashlib.sha256(RECIPE.encode()).hexdigest(), "text": RECIPE}
    assert m["plan"] == {"stages": ["detector1"]}
    assert m["started"] < m["finished"]
    assert [p["path"] for p in m["products"]] == ["stage1/x_rate.fits", "stage3/x_cat.ecsv", "stage3/x_asn.json"]
    assert m["content_digest"]["format"].startswith("jwst-appliance-content-digest/")
    assert {"environment", "inputs", "tasks"} <= set(m)


def test_extra_cannot_replace_standard_fields(workdir):
    with pytest.raises(ValueError, match="products"):
        make_manifest(workdir, extra={"products": []})


def test_write_manifest_and_sha256sum_check(workdir):
    built = make_manifest(workdir)
    path = write_manifest(workdir, built)
    assert path == workdir / "manifest.json"
    text = path.read_text()
    assert json.loads(text) == json.loads(json.dumps(built))
    assert text == json.dumps(built, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    sums = (workdir / "SHA256SUMS").read_text().splitlines()
    assert sums == [
        f"{built['inputs'][0]['sha256']}  uncal/x_uncal.fits",
        *(f"{p['sha256']}  {p['path']}" for p in built["products"]),
    ]
    assert not any("manifest.json" in line for line in sums)
    assert sorted(p.name for p in workdir.iterdir()) == ["SHA256SUMS", "manifest.json", "stage1", "stage3", "uncal"]
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=workdir, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_write_manifest_replaces_an_old_one_atomically(workdir):
    write_manifest(workdir, make_manifest(workdir))
    second = make_manifest(workdir, extra={"note": "second"})
    write_manifest(workdir, second)
    assert load_manifest(workdir).data["note"] == "second"
    assert not list(workdir.glob(".*.tmp"))


def test_sha256sums_escapes_awkward_names(tmp_path):
    root = tmp_path / "w"
    odd = root / "stage3" / "back\\slash.json"
    odd.parent.mkdir(parents=True)
    odd.write_text("{}")
    m = build_manifest(recipe_text=RECIPE, recipe_path="r", environment={}, inputs=[],
                       products=[product_record(odd, root, "t")], tasks=[], started="s", finished="f")
    write_manifest(root, m)
    line = (root / "SHA256SUMS").read_text()
    assert line.startswith("\\") and "back\\\\slash.json" in line
    if shutil.which("sha256sum"):
        assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], check=False, cwd=root).returncode == 0


# --------------------------------------------------------------------------
# Load and verify
# --------------------------------------------------------------------------


def test_load_manifest_from_a_path_or_its_directory(workdir):
    write_manifest(workdir, make_manifest(workdir))
    assert load_manifest(workdir) == load_manifest(workdir / "manifest.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such manifest"),
        ("{not json", "invalid JSON at line 1 column 2"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"recipe": {}}), "manifest_version: expected 1, found nothing"),
        (json.dumps({"manifest_version": 2}), "manifest_version: expected 1, found 2"),
        (json.dumps({"manifest_version": 1, "recipe": {"text": "a", "sha256": hashlib.sha256(b"b").hexdigest()}}), "tampered"),
        (json.dumps({"manifest_version": 1, "recipe": {"text": "a"}}), "recipe: expected"),
    ],
    ids=["missing", "invalid-json", "not-object", "no-version", "future-version", "tampered", "no-recipe-sha"],
)
def test_load_manifest_errors_are_one_line(tmp_path, content, message):
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        load_manifest(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_tampered_recipe_text_is_refused(workdir):
    path = write_manifest(workdir, make_manifest(workdir))
    data = json.loads(path.read_text())
    data["recipe"]["text"] += "# edited\n"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="recipe.sha256.*tampered"):
        load_manifest(path)


def test_verify_clean_missing_changed(workdir):
    write_manifest(workdir, make_manifest(workdir))
    assert verify(workdir) == []
    assert verify(workdir / "manifest.json") == []

    rate = workdir / "stage1" / "x_rate.fits"
    data = bytearray(rate.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes
    rate.write_bytes(bytes(data))
    (workdir / "stage3" / "x_cat.ecsv").unlink()
    (workdir / "stage3" / "x_asn.json").write_text("{}")
    problems = verify(workdir)
    assert problems[0].startswith("sha256 mismatch: stage1/x_rate.fits")
    assert "missing: stage3/x_cat.ecsv" in problems
    assert any(p.startswith("size mismatch: stage3/x_asn.json") for p in problems)
    assert len(problems) == 3


def test_verify_reports_a_disagreeing_or_missing_sums_file(workdir):
    write_manifest(workdir, make_manifest(workdir))
    sums = workdir / "SHA256SUMS"
    sums.write_text(sums.read_text().splitlines()[0] + "\n")
    assert verify(workdir) == ["SHA256SUMS: does not list exactly the manifest's inputs and products"]
    sums.unlink()
    assert verify(workdir) == ["missing: SHA256SUMS"]


def test_verify_refuses_paths_that_leave_the_workdir(workdir):
    path = write_manifest(workdir, make_manifest(workdir))
    data = json.loads(path.read_text())
    data["products"][0]["path"] = "../outside.fits"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"products\[0\]\.path: expected a relative path inside the run's directory"):
        verify(workdir)


def test_verify_refuses_a_product_linked_out_of_the_workdir(workdir, tmp_path):
    path = write_manifest(workdir, make_manifest(workdir))
    data = json.loads(path.read_text())
    product = workdir / data["products"][0]["path"]
    outside = tmp_path / "elsewhere.fits"
    outside.write_bytes(product.read_bytes())
    product.unlink()
    product.symlink_to(outside)
    assert verify(workdir) == [f"outside the run's directory: {data['products'][0]['path']} "
                               f"(a symbolic link to {outside.resolve()})"]


def test_verify_of_a_bad_manifest_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        verify(tmp_path)


def test_importing_the_modules_does_not_import_jwst():
    code = "import sys, appliance.manifest, appliance.digest; print(sorted(m for m in ('jwst', 'astropy', 'asdf', 'stdatamodels') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
