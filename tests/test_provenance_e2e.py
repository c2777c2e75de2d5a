"""Effective parameters and the step-status guard with the real pipeline (the small simulated reduction)."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from test_compare import SMALL, small_run  # noqa: F401 - the session's shared small reduction

pytestmark = pytest.mark.e2e


def test_every_stage_task_records_its_effective_parameters_as_data_and_as_a_parameter_file(small_run):  # noqa: F811
    from jwst.pipeline import Detector1Pipeline, Image3Pipeline

    from appliance import parameters

    workdir, manifest = small_run
    stage_tasks = [t for t in manifest["tasks"] if t["kind"] in ("detector1", "image2", "image3")]
    assert len(stage_tasks) == 5
    products = {p["path"]: p for p in manifest["products"]}
    for task in stage_tasks:
        effective = task["effective_parameters"]
        assert task["parameter_file"] in products  # checksummed like every product
        assert products[task["parameter_file"]]["task"] == task["id"]
        text = (workdir / task["parameter_file"]).read_bytes().decode("latin-1")
        assert str(workdir) not in text
        pipeline_class = {"detector1": Detector1Pipeline, "image3": Image3Pipeline}.get(task["kind"])
        if pipeline_class:  # what strun --config reads gives back every recorded value
            again = pipeline_class.from_config_file(str(workdir / task["parameter_file"]))
            assert parameters.effective_parameters(again)["steps"] == effective["steps"]
    detector1 = next(t for t in stage_tasks if t["kind"] == "detector1")
    steps = detector1["effective_parameters"]["steps"]
    # the pipeline's own defaults and the pars-* files are there, though the recipe sets nothing
    assert steps["jump"]["rejection_threshold"] == 4.0
    assert steps["emicorr"]["skip"] is False  # a pars-emicorrstep file turns it on (docs/simulation.md)
    assert "maximum_cores" not in steps["jump"]  # an executor setting, in the task's own maximum_cores field
    record = json.loads((workdir / "records" / (detector1["id"].replace(":", "_") + ".json")).read_text())
    assert record["effective_parameters"] == detector1["effective_parameters"]


def test_the_guard_names_what_skipped_and_expected_skips_stay_quiet(small_run):  # noqa: F811
    _, manifest = small_run
    detector1 = next(t for t in manifest["tasks"] if t["kind"] == "detector1")
    skipped = {s["step"]: s for s in detector1["skipped_steps"]}
    assert skipped["ipc"]["expected"] and "N/A" in skipped["ipc"]["why"]  # CRDS: ipc does not apply
    assert skipped["persistence"]["expected"] and skipped["persistence"]["why"] == "asked: skip = true"
    assert skipped["refpix"]["expected"] and "refpix" in skipped["refpix"]["why"]
    # jwst 3.0.0 skips these itself on this data; nothing asked, so they are reported, with the step's reason
    assert not skipped["group_scale"]["expected"] and skipped["group_scale"]["why"].startswith("NFRAMES=1")
    assert not skipped["gain_scale"]["expected"] and "GAINFACT not found" in skipped["gain_scale"]["why"]
    assert {s["step"] for s in manifest["unexpected_skips"]} == {"group_scale", "gain_scale"}
    assert not [s for s in manifest["unexpected_skips"] if s["task"].startswith("image3")]


def test_a_step_that_skips_itself_is_caught_and_strict_steps_fails(tmp_path):
    recipe = tmp_path / "small.toml"
    # one exposure: tweakreg has nothing to align, gives up and records FAILED while image3 goes on
    # (as a new check did in jwst#8641, there recorded as SKIPPED)
    assert "dithers = 2" in SMALL
    recipe.write_text(SMALL.replace("dithers = 2", "dithers = 1"))
    done = run_cli("run", str(recipe), "--workdir", str(tmp_path / "work"), "--strict-steps")
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if "tweakreg" in line)
    assert line.startswith("step guard: tweakreg FAILED (S_TWKREG) in image3:F770W without being asked: "), line
    assert "Skipping 'TweakRegStep'" in line  # the step's own warning
    manifest = json.loads((tmp_path / "work" / "manifest.json").read_text())  # written all the same
    (skip,) = [s for s in manifest["unexpected_skips"] if s["step"] == "tweakreg"]
    assert skip["task"] == "image3:F770W" and skip["status"] == "FAILED" and skip["why"]
    # skymatch cannot compute a sky from one exposure and skips itself: also reported
    assert any(s["step"] == "skymatch" and s["status"] == "SKIPPED" for s in manifest["unexpected_skips"])
    report = (tmp_path / "work" / "postprocess" / "report.html")
    assert not report.exists() or "tweakreg" in report.read_text()
