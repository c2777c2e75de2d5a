"""The serial executor: order, outputs, timing, failures."""

import pytest
from rich.console import Console

from appliance.errors import WorkFailed
from appliance.execute import SerialExecutor, topological
from appliance.graph import Plan, Task


def task(id, deps=()):
    return Task(id, id.split(":")[0], {}, (), (), tuple(deps))


def test_topological_respects_deps_and_keeps_plan_order():
    tasks = (task("b:1", ["a:1"]), task("a:1"), task("c:1", ["b:1", "a:1"]), task("a:2"))
    assert [t.id for t in topological(tasks)] == ["a:1", "a:2", "b:1", "c:1"]


def test_cycle_is_detected():
    with pytest.raises(ValueError, match="cycle"):
        topological((task("a:1", ["b:1"]), task("b:1", ["a:1"])))


def test_outputs_are_the_files_a_task_wrote(tmp_path):
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "old.fits").write_text("x")

    def run(t, log):
        (tmp_path / "stage1" / f"{t.id.split(':')[1]}_rate.fits").write_text(t.id)
        log.write_text("ran")

    results = SerialExecutor(Console(quiet=True)).run(Plan((), (), (task("detector1:e1"), task("detector1:e2"))), tmp_path, run)
    assert [r.outputs for r in results] == [["stage1/e1_rate.fits"], ["stage1/e2_rate.fits"]]
    assert (tmp_path / "logs" / "detector1_e1.log").read_text() == "ran"
    assert all(r.seconds >= 0 for r in results)


def test_a_failing_task_stops_the_run_with_one_line(tmp_path):
    calls = []

    def run(t, log):
        calls.append(t.id)
        raise RuntimeError("saturation reference missing\nmore detail")

    with pytest.raises(WorkFailed, match=r"detector1:e1 failed: saturation reference missing \(log: .*detector1_e1.log\)$"):
        SerialExecutor(Console(quiet=True)).run(Plan((), (), (task("detector1:e1"), task("detector1:e2"))), tmp_path, run)
    assert calls == ["detector1:e1"]
