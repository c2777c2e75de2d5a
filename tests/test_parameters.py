"""Effective step parameters: the merged values as data and as an stpipe parameter file strun reads."""

from __future__ import annotations

import math

import pytest

from appliance import parameters


@pytest.fixture()
def no_step_pars(monkeypatch):
    monkeypatch.setenv("STPIPE_DISABLE_CRDS_STEPPARS", "true")


def test_plain_values():
    assert parameters.plain({"a": (1, 2.5), "b": None, "c": math.inf, 3: object}) == {
        "a": [1, 2.5], "b": None, "c": "inf", "3": str(object)}


def test_changed_parameters_names_each_step_parameter():
    old = {"steps": {"jump": {"rejection_threshold": 4.0, "old": 1}, "skymatch": {"skip": False}}}
    new = {"steps": {"jump": {"rejection_threshold": 5.0, "new": 2}, "skymatch": {"skip": False}}}
    assert parameters.changed_parameters(old, new) == [
        ("jump.new", None, 2), ("jump.old", 1, None), ("jump.rejection_threshold", 4.0, 5.0)]


def test_the_parameter_file_loads_back_with_every_effective_value(tmp_path, no_step_pars):
    from jwst.pipeline import Detector1Pipeline

    pipeline = Detector1Pipeline(steps={"jump": {"rejection_threshold": 5.5}, "ipc": {"skip": True}},
                                 output_dir=str(tmp_path / "stage1"))
    effective = parameters.effective_parameters(pipeline)
    assert list(effective["steps"]) == list(Detector1Pipeline.step_defs)  # the pipeline's order
    assert effective["steps"]["jump"]["rejection_threshold"] == 5.5 and effective["steps"]["ipc"]["skip"] is True
    assert "output_dir" not in effective["pipeline"] and "output_dir" not in effective["steps"]["jump"]
    assert "maximum_cores" not in effective["steps"]["jump"]
    path = parameters.save(pipeline, effective, tmp_path / "stage1" / "x_calwebb_detector1.asdf")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    again = Detector1Pipeline.from_config_file(str(path))
    assert again.jump.rejection_threshold == 5.5 and again.ipc.skip is True
    assert parameters.effective_parameters(again) == effective
    assert str(tmp_path) not in path.read_bytes().decode("latin-1")  # nothing names the workdir


@pytest.mark.parametrize("pipeline_name, steps", [
    ("Detector1Pipeline", {"jump": {"rejection_threshold": 5.5, "maximum_cores": "2"}, "ipc": {"skip": True}}),
    ("Image2Pipeline", {"resample": {"pixfrac": 0.8}}),
    ("Image3Pipeline", {"tweakreg": {"abs_refcat": "GAIADR3", "snr_threshold": 7}, "resample": {"kernel": "square"}}),
])
def test_step_parameters_are_what_get_pars_returns(pipeline_name, steps, no_step_pars):
    """The spec parsed once per class gives stpipe's own answer, call after call (the spec is not changed)."""
    import jwst.pipeline

    pipeline = getattr(jwst.pipeline, pipeline_name)(steps=steps)
    for _ in range(2):
        pars = pipeline.get_pars()
        assert parameters.step_parameters(pipeline) == {k: v for k, v in pars.items() if k != "steps"}
        for name in pipeline.step_defs:
            assert parameters.step_parameters(getattr(pipeline, name)) == pars["steps"][name]


@pytest.fixture()
def ramp_file(tmp_path, monkeypatch):
    """A small MIRI ramp on disk, with CRDS step parameters switched on (stpipe reads them from its metadata)."""
    from stdatamodels.jwst import datamodels

    monkeypatch.delenv("STPIPE_DISABLE_CRDS_STEPPARS", raising=False)
    with datamodels.RampModel((1, 2, 4, 4)) as model:
        model.meta.instrument.name, model.meta.instrument.detector = "MIRI", "MIRIMAGE"
        model.meta.exposure.type = "MIR_IMAGE"
        model.save(tmp_path / "x_uncal.fits")
    return tmp_path / "x_uncal.fits"


def lookups(monkeypatch, failures: dict[str, int]):
    """Replace the CRDS lookup: each reftype in ``failures`` raises that many times, then every one is N/A."""
    from stpipe import crds_client

    calls = []

    def lookup(parameters, reftype, observatory):
        calls.append(reftype)
        if failures.get(reftype, 0) > 0:
            failures[reftype] -= 1
            raise crds_client.CrdsError(f"cannot load the rules for {reftype}\nmore detail")
        return "N/A"

    monkeypatch.setattr(crds_client, "get_reference_file", lookup)
    return calls


def test_a_failed_step_parameter_lookup_is_tried_again(ramp_file, monkeypatch, caplog):
    """stpipe would run emicorr with its code default after one failed lookup; the configuration is built again."""
    from jwst.pipeline import Detector1Pipeline

    calls = lookups(monkeypatch, {"pars-emicorrstep": 1})
    pipeline, used = parameters.configured(Detector1Pipeline, str(ramp_file), steps={"jump": {"rejection_threshold": 5.5}})
    assert calls.count("pars-emicorrstep") == 2 and calls.count("pars-detector1pipeline") == 2
    assert pipeline.jump.rejection_threshold == 5.5 and used == []
    assert "attempt 1 of 3: the CRDS lookup of pars-emicorrstep failed: cannot load the rules" in caplog.text


def test_a_step_parameter_lookup_that_keeps_failing_fails_the_stage(ramp_file, monkeypatch):
    from jwst.pipeline import Detector1Pipeline

    calls = lookups(monkeypatch, {"pars-emicorrstep": 99})
    with pytest.raises(parameters.StepParametersUnavailable,
                       match=r"^the CRDS lookup of pars-emicorrstep failed: cannot load the rules for pars-emicorrstep "
                             r"\(tried 3 times\); the steps would run with other parameters than CRDS assigns$"):
        parameters.configured(Detector1Pipeline, str(ramp_file))
    assert calls.count("pars-emicorrstep") == parameters.CONFIGURE_ATTEMPTS


def test_an_input_stpipe_cannot_read_for_crds_fails_the_stage(tmp_path, monkeypatch):
    """stpipe logs a warning and looks nothing up when it cannot read the input's metadata."""
    from jwst.pipeline import Detector1Pipeline

    monkeypatch.delenv("STPIPE_DISABLE_CRDS_STEPPARS", raising=False)
    calls = lookups(monkeypatch, {})
    (tmp_path / "x_uncal.fits").write_text("not FITS")
    with pytest.raises(parameters.StepParametersUnavailable,
                       match=r"^stpipe looked up no pars-\* step parameters in CRDS for x_uncal.fits \(it could not read"):
        parameters.configured(Detector1Pipeline, str(tmp_path / "x_uncal.fits"))
    assert calls == []


def test_no_lookup_is_expected_when_step_parameters_are_off(ramp_file, monkeypatch):
    from jwst.pipeline import Detector1Pipeline

    monkeypatch.setenv("STPIPE_DISABLE_CRDS_STEPPARS", "true")
    calls = lookups(monkeypatch, {"pars-emicorrstep": 99})
    pipeline, used = parameters.configured(Detector1Pipeline, str(ramp_file))
    assert calls == [] and used == [] and pipeline.emicorr.skip is True
