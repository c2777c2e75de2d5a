"""The one stage table (appliance.pipelines) and the workdir layout (appliance.workdir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import UserError
from appliance.pipelines import KIND_FIRST_STAGE, STAGE_ORDER, STAGES
from appliance.workdir import (
    INPUT_DIR_OF_KIND,
    OUTPUT_DIRS,
    STAGE_DIRS,
    association_name,
    check_new_directory,
    check_report_path,
    check_workdir,
    load_fetch_record,
    log_path,
    update_fetch_record,
)


def test_the_stage_table():
    assert STAGE_ORDER == ("detector1", "image2", "image3")
    assert STAGES["image3"].class_path == "jwst.pipeline.Image3Pipeline"
    assert [s.alias for s in STAGES.values()] == ["calwebb_detector1", "calwebb_image2", "calwebb_image3"]
    assert {s.output_dir for s in STAGES.values()} == set(STAGE_DIRS.values())
    assert KIND_FIRST_STAGE == {"uncal": "detector1", "rate": "image2", "cal": "image3"}
    # an input of a kind is placed where the stage that reads it finds it
    for kind, stage in KIND_FIRST_STAGE.items():
        assert INPUT_DIR_OF_KIND[kind] == ("uncal" if stage == "detector1" else STAGES[STAGE_ORDER[STAGE_ORDER.index(stage) - 1]].output_dir)


def test_layout_names():
    assert OUTPUT_DIRS == ("uncal", "stage1", "stage2", "stage3", "postprocess")
    assert log_path(Path("/w"), "image3:F770W") == Path("/w/logs/image3_F770W.log")
    assert association_name("jw02732-o002_t001_miri_f770w", "image3") == "jw02732-o002_t001_miri_f770w_image3_asn.json"


def test_directory_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="expected a directory, found a file"):
        check_workdir(tmp_path / "file")
    check_workdir(tmp_path / "new" / "deeper")  # creatable
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match=r"not empty \(reproduce into a new one\)"):
        check_new_directory(tmp_path / "full", "--workdir", "reproduce into a new one")
    with pytest.raises(UserError, match="does not exist"):
        check_report_path(tmp_path / "nowhere" / "r.md", "--report-md")
    assert not (tmp_path / "new").exists()


def test_fetch_record_round_trip_and_refusals(tmp_path):
    assert load_fetch_record(tmp_path) is None
    update_fetch_record(tmp_path, input_kind="local", files=[{"name": "uncal/a_uncal.fits", "size": 1, "sha256": "0" * 64}])
    assert load_fetch_record(tmp_path)["files"][0]["name"] == "uncal/a_uncal.fits"
    update_fetch_record(tmp_path, files=[{"name": "../../etc/passwd", "size": 1, "sha256": "0" * 64}])
    assert load_fetch_record(tmp_path) is None  # a record naming a path outside the workdir is not trusted
