"""Recipe → task graph, without running jwst."""

from pathlib import Path

import pytest

from appliance.errors import UserError
from appliance.graph import Exposure
from appliance.plan import build_plan
from appliance.recipe import stages_to_run
from appliance.recipe import parse_recipe

HEAD = 'schema = 1\n[recipe]\nname = "t"\n[environment]\njwst = "3.0.0"\ncrds_context = "jwst_9000.pmap"\n[inputs.simulate]\nseed = 1\n'


def recipe(extra: str = "", tmp: Path = Path("/data")):
    return parse_recipe(HEAD + extra, tmp / "r.toml")


def exposures(kind="uncal"):
    return [
        Exposure(f"jw02732002001_02101_0000{i}_mirimage", kind, filt, "02732", "002")
        for i, filt in enumerate(["F770W", "F770W", "F1500W"], 1)
    ]


def test_full_plan_has_a_task_per_exposure_and_per_filter():
    plan = build_plan(recipe(), exposures())
    assert plan.stages == ("detector1", "image2", "image3")
    kinds = [t.kind for t in plan.tasks]
    assert kinds == ["detector1"] * 3 + ["image2"] * 3 + ["image3"] * 2
    image3 = {t.id: t for t in plan.tasks if t.kind == "image3"}
    assert image3["image3:F770W"].inputs == (
        "stage2/jw02732002001_02101_00001_mirimage_cal.fits",
        "stage2/jw02732002001_02101_00002_mirimage_cal.fits",
    )
    assert image3["image3:F770W"].outputs == ("stage3/jw02732-o002_t001_miri_f770w_i2d.fits",)
    assert set(image3["image3:F770W"].deps) == {
        "image2:jw02732002001_02101_00001_mirimage",
        "image2:jw02732002001_02101_00002_mirimage",
    }


def test_steps_reach_the_tasks_and_override_paths_resolve_against_the_recipe(tmp_path):
    r = recipe('[detector1.steps.jump]\nrejection_threshold = 5.0\n[detector1.steps.dark_current]\noverride_dark = "refs/d.fits"\n', tmp_path)
    task = build_plan(r, exposures()).tasks[0]
    assert task.params["steps"]["jump"] == {"rejection_threshold": 5.0}
    assert task.params["steps"]["dark_current"]["override_dark"] == str(tmp_path / "refs" / "d.fits")


def test_rate_inputs_start_at_image2_and_skipped_image3_ends_early(tmp_path):
    text = HEAD.replace("[inputs.simulate]\nseed = 1\n", '[inputs]\nlocal = ["x_rate.fits"]\n[image3]\nskip = true\n')
    plan = build_plan(parse_recipe(text, tmp_path / "r.toml"), exposures("rate"))
    assert plan.stages == ("image2",)
    assert plan.tasks[0].inputs == ("stage1/jw02732002001_02101_00001_mirimage_rate.fits",)


def test_inputs_of_another_kind_than_the_recipe_says_are_an_error():
    with pytest.raises(UserError, match="rate files cannot start at detector1"):
        build_plan(recipe(), exposures("rate"))


def test_a_skipped_stage_in_the_middle_is_an_error():
    with pytest.raises(UserError, match="image2.skip"):
        stages_to_run(recipe("[image2]\nskip = true\n"))


def test_mixed_input_kinds_are_an_error():
    with pytest.raises(UserError, match="one kind"):
        build_plan(recipe(), exposures("rate") + exposures("cal"))


def test_task_key_changes_with_params_and_inputs():
    from appliance.incremental import key_of, key_parts

    task = build_plan(recipe(), exposures()).tasks[0]
    env = {"jwst": "3.0.0"}

    def key(digest, environment=env):
        return key_of(key_parts(task, {task.inputs[0]: digest}, environment))

    assert key("a") == key("a")
    assert key("a") != key("b")
    assert key("a") != key("a", {"jwst": "3.0.1"})


def test_stage_tasks_name_every_file_they_may_write():
    plan = build_plan(recipe(), exposures())
    by_id = {t.id: t for t in plan.tasks}
    d1 = next(t for t in plan.tasks if t.kind == "detector1")
    assert d1.produces == (f"stage1/{d1.subject}_*.fits", f"stage1/{d1.subject}_calwebb_detector1.asdf")
    i2 = by_id[f"image2:{d1.subject}"]
    assert i2.produces == (f"stage2/{d1.subject}_*.fits", f"stage1/{d1.subject}_image2_asn.json",
                           f"stage2/{d1.subject}_calwebb_image2.asdf")
    i3 = next(t for t in plan.tasks if t.kind == "image3")
    assert i3.produces[0].startswith("stage3/jw") and i3.produces[-1].endswith("_image3_asn.json")
