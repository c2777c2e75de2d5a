"""The step-status guard: which SKIPPED statuses nothing asked for, and the step's own reason."""

from __future__ import annotations

from appliance import stepguard

LOG = """\
2026-12-02 15:46:57,724 - stpipe.pipeline - INFO - Prefetch for IPC reference file is 'N/A'.
2026-12-02 15:47:00,021 - stpipe.step - INFO - Step ipc running with args (<RampModel>,).
2026-12-02 15:47:00,037 - jwst.ipc.ipc_step - WARNING - IPC step will be skipped
2026-12-02 15:47:00,041 - stpipe.step - INFO - Step ipc done
2026-12-02 15:47:00,265 - stpipe.step - INFO - Step firstframe running with args (<RampModel>,).
2026-12-02 15:47:00,266 - stpipe.step - INFO - Step skipped.
2026-12-02 15:47:00,267 - stpipe.step - INFO - Step firstframe done
2026-12-02 15:47:01,000 - stpipe.step - INFO - Step tweakreg running with args (<ModelLibrary>,).
2026-12-02 15:47:01,001 - stcal.tweakreg - INFO - Detected 0 sources in a.fits.
2026-12-02 15:47:01,002 - jwst.tweakreg.tweakreg_step - WARNING - Not enough sources: skipping tweakreg
2026-12-02 15:47:01,003 - stpipe.step - INFO - Step tweakreg done
2026-12-02 15:47:02,000 - stpipe.step - INFO - Step refpix running with args (<RampModel>,).
2026-12-02 15:47:02,001 - jwst.refpix - INFO - Refpix correction skipped for MIRI subarrays
2026-12-02 15:47:02,002 - stpipe.step - INFO - Step refpix done
2026-12-02 16:36:38,774 - stpipe.step - INFO - Step group_scale running with args (<RampModel>,).
2026-12-02 16:36:38,775 - jwst.group_scale.group_scale_step - INFO - NFRAMES=1 is a power of 2; correction not needed
2026-12-02 16:36:38,775 - jwst.group_scale.group_scale_step - INFO - Step will be skipped
2026-12-02 16:36:38,779 - stpipe.step - INFO - Step group_scale done
"""

KEYWORDS = {"ipc": "S_IPC", "firstframe": "S_FRSTFR", "tweakreg": "S_TWKREG", "refpix": "S_REFPIX",
            "dark_sub": "S_DARK", "jump": "S_JUMP"}


def check(steps, statuses):
    return stepguard.check(steps, reference_types={"ipc": ["ipc"], "refpix": ["refpix"], "dark_current": ["dark"]},
                           attributes={"dark_current": "dark_sub"}, keywords=KEYWORDS, statuses=statuses,
                           not_applicable=stepguard.not_applicable_types(LOG), log_text=LOG)


def test_asked_and_not_applicable_skips_are_expected_the_rest_are_not():
    steps = {"ipc": {"skip": False}, "firstframe": {"skip": True}, "tweakreg": {"skip": False},
             "refpix": {"skip": False}, "jump": {"skip": False}, "dark_current": {"skip": False}}
    statuses = {"S_IPC": "SKIPPED", "S_FRSTFR": "SKIPPED", "S_TWKREG": "SKIPPED", "S_REFPIX": "SKIPPED",
                "S_JUMP": "COMPLETE", "S_DARK": "COMPLETE"}
    got = {s.step: s for s in check(steps, statuses)}
    assert sorted(got) == ["firstframe", "ipc", "refpix", "tweakreg"]
    assert got["firstframe"].expected and got["firstframe"].why == "asked: skip = true"
    assert got["ipc"].expected and got["ipc"].why == "not applicable: CRDS gives N/A for ipc"
    assert not got["tweakreg"].expected and got["tweakreg"].why == "Not enough sources: skipping tweakreg"
    # no warning: the step's own line about skipping
    assert not got["refpix"].expected and got["refpix"].why == "Refpix correction skipped for MIRI subarrays"


def test_a_step_with_no_status_keyword_or_a_complete_one_is_not_reported():
    assert check({"source_catalog": {"skip": False}, "jump": {"skip": False}}, {"S_JUMP": "COMPLETE"}) == []
    # dark_current's status is S_DARK (its cal_step attribute is dark_sub)
    assert [s.keyword for s in check({"dark_current": {"skip": False}}, {"S_DARK": "SKIPPED"})] == ["S_DARK"]


def test_unexpected_and_the_summary_lines_one_per_step_and_reason():
    skips = [s.as_dict() for s in check({"tweakreg": {"skip": False}, "firstframe": {"skip": True}},
                                        {"S_TWKREG": "SKIPPED", "S_FRSTFR": "SKIPPED"})]
    assert [s["step"] for s in stepguard.unexpected(skips)] == ["tweakreg"]
    assert stepguard.summary_lines({"image3:F770W": skips, "image3:F1000W": skips}) == [
        "tweakreg SKIPPED (S_TWKREG) in image3:F770W, image3:F1000W without being asked: "
        "Not enough sources: skipping tweakreg"]
    many = {f"detector1:e{n}": skips for n in range(12)}
    assert stepguard.summary_lines(many)[0].startswith("tweakreg SKIPPED (S_TWKREG) in detector1:e0 and 11 more tasks")
    assert stepguard.summary_lines({"image3:F770W": skips[1:]}) == []


def test_a_bare_will_be_skipped_line_comes_with_the_line_that_says_why():
    assert stepguard.reason_in_log(LOG, "group_scale") == (
        "NFRAMES=1 is a power of 2; correction not needed; Step will be skipped")


def test_a_step_that_explains_nothing():
    assert stepguard.reason_in_log("", "tweakreg") == ""
    (skip,) = stepguard.check({"tweakreg": {}}, {}, {}, KEYWORDS, {"S_TWKREG": "SKIPPED"}, set(), "")
    assert skip.why == "the step skipped itself" and not skip.expected


def test_status_keywords_come_from_the_datamodels_schema():
    keywords = stepguard.status_keywords()
    assert keywords["dark_sub"] == "S_DARK" and keywords["tweakreg"] == "S_TWKREG" and keywords["ramp_fit"] == "S_RAMP"


def test_a_failed_status_is_never_expected():
    (skip,) = check({"tweakreg": {"skip": True}}, {"S_TWKREG": "FAILED"})
    assert skip.status == "FAILED" and not skip.expected and skip.why == "Not enough sources: skipping tweakreg"
    assert stepguard.summary_lines({"image3:F770W": [skip.as_dict()]})[0].startswith(
        "tweakreg FAILED (S_TWKREG) in image3:F770W without being asked")
