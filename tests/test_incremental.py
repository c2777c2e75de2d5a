"""Records, keys, run-or-reuse decisions and their reasons, the task runner's protocol, the workdir lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance import records, runner
from appliance.crdsenv import CrdsSettings
from appliance.graph import Task
from appliance.incremental import changed, decide, environment_of, key_of, key_parts, reference_states, stale_output
from appliance.runner import FAILED, REUSED, RUN, RunContext, perform
from appliance.workdir import WorkdirBusy, check_not_busy, locked, marker_path, record_path

ENV = environment_of("3.0.0", CrdsSettings("jwst_9000.pmap", "/c", "local", "x", True))


def stage_task(**params) -> Task:
    return Task("detector1:e", "detector1", {"steps": {"jump": params}}, ("uncal/e_uncal.fits",),
                ("stage1/e_rate.json",), produces=("stage1/e_*.json",))


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "uncal").mkdir()
    (tmp_path / "uncal" / "e_uncal.fits").write_bytes(b"raw")
    (tmp_path / "crds" / "references" / "jwst" / "miri").mkdir(parents=True)
    return tmp_path


def fake_stage(write: dict[str, bytes], fail: str | None = None):
    """A stand-in for a jwst stage: writes files (and a log), or fails the way a step does."""

    def run_task(task, workdir, log):
        log.write_text("2026-01-01 - stpipe.step - INFO - Step jump running with args x.\n")
        if fail:
            raise RuntimeError(fail)
        for rel, data in write.items():
            (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
            (workdir / rel).write_bytes(data)

    return run_task


def context(workdir, **kw) -> RunContext:
    return RunContext(workdir, workdir / "crds", ENV, **kw)


def test_a_task_runs_then_is_reused_and_its_record_lists_every_file_it_wrote(workdir, monkeypatch):
    monkeypatch.setattr(runner, "run_task", fake_stage({"stage1/e_rate.json": b"r", "stage1/e_rateints.json": b"ri"}))
    t = stage_task(rejection_threshold=4.0)
    first = perform(t, context(workdir), {"uncal/e_uncal.fits": "sha256:a"})
    assert first.status == RUN and first.reason == "new"
    assert [o["path"] for o in first.outputs] == ["stage1/e_rate.json", "stage1/e_rateints.json"]
    assert record_path(workdir, t.id).is_file() and not marker_path(workdir, t.id).exists()
    again = perform(t, context(workdir), {"uncal/e_uncal.fits": "sha256:a"})
    assert again.status == REUSED and again.reason == "unchanged"
    assert perform(t, context(workdir, force=True), {"uncal/e_uncal.fits": "sha256:a"}).reason == "forced"
    assert perform(t, context(workdir, force_tasks=frozenset({t.id})), {"uncal/e_uncal.fits": "sha256:a"}).status == RUN


@pytest.mark.parametrize("change, reason", [
    (lambda t, d: (stage_task(rejection_threshold=5.0), d), "parameters changed: jump.rejection_threshold 4.0 → 5.0"),
    (lambda t, d: (stage_task(rejection_threshold=4.0, sat_expand=3),
                   d), "parameters changed: jump.sat_expand (default) → 3"),
    (lambda t, d: (t, {"uncal/e_uncal.fits": "sha256:b"}), "input changed: uncal/e_uncal.fits"),
])
def test_each_change_is_named(workdir, monkeypatch, change, reason):
    monkeypatch.setattr(runner, "run_task", fake_stage({"stage1/e_rate.json": b"r"}))
    t, digests = stage_task(rejection_threshold=4.0), {"uncal/e_uncal.fits": "sha256:a"}
    perform(t, context(workdir), digests)
    t2, d2 = change(t, digests)
    decision, _, _ = runner.decision_for(t2, context(workdir), d2)
    assert decision.run and decision.reason == reason


def test_tasks_in_threads_of_one_process_run_one_at_a_time(workdir, monkeypatch):
    """A Dask worker with two threads: a stage changes the process's working directory, loggers and CRDS
    lookup while it runs, so the second task waits for the first."""
    import threading

    from appliance import stages

    inside, most = [], []

    def stage(task, workdir, log):
        inside.append(task.id)
        most.append(len(inside))
        time.sleep(0.05)
        inside.remove(task.id)

    monkeypatch.setattr(stages, "run_stage", stage)
    threads = [threading.Thread(target=runner.run_task, args=(stage_task(), workdir, workdir / f"{n}.log"))
               for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == [1, 1, 1, 1]


def test_a_new_override_names_the_value_the_step_ran_with_last_time():
    old, new = key_parts(stage_task(), {}, ENV), key_parts(stage_task(rejection_threshold=5.0), {}, ENV)
    ran_with = {"pipeline": {}, "steps": {"jump": {"rejection_threshold": 4.0, "sat_expand": 2}}}
    assert changed(old, new, ran_with) == "parameters changed: jump.rejection_threshold 4.0 → 5.0"
    assert changed(old, new) == "parameters changed: jump.rejection_threshold (default) → 5.0"  # not recorded
    assert changed(new, old, ran_with) == "parameters changed: jump.rejection_threshold 5.0 → (default)"


def test_environment_changes_are_named():
    t = stage_task()
    old = key_parts(t, {}, ENV)
    new = key_parts(t, {}, {**ENV, "crds_context": "jwst_9001.pmap"})
    assert changed(old, new) == "environment changed: crds_context jwst_9000.pmap → jwst_9001.pmap"


def test_outputs_missing_or_modified_run_again_but_a_touched_file_with_the_same_bytes_does_not(workdir, monkeypatch):
    monkeypatch.setattr(runner, "run_task", fake_stage({"stage1/e_rate.json": b"rate"}))
    t, d = stage_task(), {"uncal/e_uncal.fits": "sha256:a"}
    outputs = perform(t, context(workdir), d).outputs
    rate = workdir / "stage1" / "e_rate.json"
    os.utime(rate, ns=(1, 1))  # same size, another time: the sha256 decides, and it is the same
    assert stale_output(workdir, outputs) is None
    rate.write_bytes(b"RATE")
    assert stale_output(workdir, outputs) == "output modified: stage1/e_rate.json"
    rate.unlink()
    assert runner.decision_for(t, context(workdir), d)[0].reason == "output missing: stage1/e_rate.json"


def test_a_changed_reference_runs_again(workdir, monkeypatch):
    ref = workdir / "crds" / "references" / "jwst" / "miri" / "jwst_miri_dark_9001.fits"
    ref.write_bytes(b"dark")
    t, digests = stage_task(), {"uncal/e_uncal.fits": "sha256:a"}
    parts = key_parts(t, digests, ENV)
    record = {"status": records.DONE, "key": key_of(parts), "outputs": [],
              "references": reference_states(workdir / "crds", ["jwst_miri_dark_9001.fits"])}
    assert not decide(t, parts, record, workdir, workdir / "crds", forced=False).run
    ref.write_bytes(b"DARK")
    decision = decide(t, parts, record, workdir, workdir / "crds", forced=False)
    assert decision.run and decision.reason == "reference changed: jwst_miri_dark_9001.fits"


def test_a_failure_is_recorded_with_its_step_and_never_reused(workdir, monkeypatch):
    monkeypatch.setattr(runner, "run_task", fake_stage({}, fail="the jump step ran out of groups\nmore"))
    t, d = stage_task(), {"uncal/e_uncal.fits": "sha256:a"}
    outcome = perform(t, context(workdir), d)
    assert outcome.status == FAILED and outcome.error == "the jump step ran out of groups"
    record = json.loads(record_path(workdir, t.id).read_text())
    assert record["status"] == "failed" and record["step"] == "jump" and record["log"] == "logs/detector1_e.log"
    monkeypatch.setattr(runner, "run_task", fake_stage({"stage1/e_rate.json": b"r"}))
    again = perform(t, context(workdir), d)
    assert again.status == RUN and again.reason == "failed last time: the jump step ran out of groups"


def test_a_marker_without_its_end_means_untrusted(workdir, monkeypatch):
    monkeypatch.setattr(runner, "run_task", fake_stage({"stage1/e_rate.json": b"r"}))
    t, d = stage_task(), {"uncal/e_uncal.fits": "sha256:a"}
    perform(t, context(workdir), d)
    records.begin(workdir, t.id)  # as a run killed while re-running it leaves things
    assert records.load(workdir, t.id) is None
    assert runner.decision_for(t, context(workdir), d)[0].reason == "interrupted last time: its outputs are not trusted"


@pytest.mark.parametrize("text", ["{", "[]", '{"record": "appliance-task", "version": 1}',
                                  '{"record": "appliance-task", "version": 1, "id": "detector1:e", "status": "done", '
                                  '"key": "k", "outputs": [{"path": "../../etc/passwd", "size": 1, "sha256": "' + "0" * 64
                                  + '", "content_digest": "x", "mtime_ns": 1}]}'])
def test_a_malformed_or_forged_record_is_not_trusted(workdir, text):
    record_path(workdir, "detector1:e").parent.mkdir(parents=True, exist_ok=True)
    record_path(workdir, "detector1:e").write_text(text)
    assert records.load(workdir, "detector1:e") is None


def test_one_run_per_workdir_and_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from appliance.workdir import locked\n"
        "with locked(__import__('pathlib').Path(%r)):\n"
        "    print('held', flush=True); time.sleep(60)\n") % (str(Path(__file__).parents[1]), str(tmp_path))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(WorkdirBusy, match=rf"another run is working in this workdir \(pid {holder.pid} on .*, since "):
            with locked(tmp_path):
                pass
        assert time.monotonic() - started < 2  # at once, not after a wait
        with pytest.raises(WorkdirBusy, match=rf"\(pid {holder.pid} on "):
            check_not_busy(tmp_path)  # what a run asks first, taking nothing
        # a run into the held workdir is refused before its recipe's step specs are checked (no jwst import)
        recipe = tmp_path / "r.toml"
        recipe.write_text((Path(__file__).parents[1] / "recipes" / "demo.toml").read_text()
                          + "\n[image3.steps.resample]\npixfrac = 0.9\n")
        busy = subprocess.run([sys.executable, "-X", "importtime", str(Path(__file__).parents[1] / "run.py"), "run",
                               str(recipe), "--workdir", str(tmp_path)], capture_output=True, text=True)
        assert busy.returncode == 2
        assert busy.stderr.splitlines()[-1].startswith(f"error: {tmp_path}: another run is working in this workdir")
        assert " jwst" not in busy.stderr and "stpipe" not in busy.stderr
    finally:
        holder.kill()
        holder.wait()
    check_not_busy(tmp_path)
    with locked(tmp_path):  # the holder died (SIGKILL): its lock is free again
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
