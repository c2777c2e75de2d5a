"""Progress: one plain line per task off a terminal, a live table on one, and the time left from durations so far."""

from __future__ import annotations

import io
import json

from rich.console import Console

from appliance.graph import Task
from appliance.progress import Progress
from appliance.runner import FAILED, REUSED, RUN, Outcome
from appliance.workdir import marker_path


def tasks():
    return [Task(f"detector1:e{i}", "detector1", {}, (), ()) for i in range(4)] + [
        Task("image2:e0", "image2", {}, (), ())]


def progress(tmp_path, *, live=False, workers=1):
    out = io.StringIO()
    shown = Progress(Console(file=out, width=200, force_terminal=live), live=live)
    shown.begin(tasks(), tmp_path, "process", workers)
    return shown, out


def test_plain_output_is_one_line_per_task(tmp_path):
    shown, out = progress(tmp_path)
    shown.finished(Outcome(tasks()[0], RUN, "new", {"worker": "vm:1"}, seconds=2.0))
    shown.finished(Outcome(tasks()[1], REUSED, "unchanged"))
    shown.finished(Outcome(tasks()[2], FAILED, "step jump failed"))
    shown.end()
    lines = out.getvalue().splitlines()
    assert lines[0] == "executor  process, 1 worker"
    assert lines[1].startswith("[1/5] detector1 e0  run        2.0 s   elapsed")
    assert "(unchanged)" in lines[2] and "reused" in lines[2]
    assert "failed" in lines[3] and "(step jump failed)" in lines[3]
    assert len(lines) == 4


def test_the_worker_is_named_only_when_there_are_several(tmp_path):
    shown, out = progress(tmp_path, workers=2)
    shown.finished(Outcome(tasks()[0], RUN, "new", {"worker": "vm:4242"}, seconds=1.0))
    assert out.getvalue().splitlines()[-1].endswith("[vm:4242]")


def test_time_left_uses_the_mean_duration_of_each_kind_shared_by_the_workers(tmp_path):
    shown, _ = progress(tmp_path, workers=2)
    assert shown.eta() is None  # nothing measured yet
    shown.finished(Outcome(tasks()[0], RUN, "new", {}, seconds=10.0))
    shown.finished(Outcome(tasks()[1], RUN, "new", {}, seconds=20.0))
    # two detector1 left at 15 s, one image2 at the overall mean 15 s, over two workers
    assert shown.eta() == (15 + 15 + 15) / 2


def test_the_live_table_counts_states_per_stage_and_names_each_running_task_s_worker(tmp_path):
    shown, _ = progress(tmp_path, live=False)
    shown.started(tasks()[1])
    marker = marker_path(tmp_path, tasks()[1].id)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"worker": "node7:99"}))
    shown.finished(Outcome(tasks()[0], RUN, "new", {}, seconds=3.0))
    shown.finished(Outcome(tasks()[4], FAILED, "x"))
    out = io.StringIO()
    Console(file=out, width=120).print(shown._render())
    text = out.getvalue()
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert rows["detector1"] == ["1", "1", "2", "0"]
    assert rows["image2"] == ["0", "0", "0", "1"]
    assert rows["detector1:e1"] == ["node7:99"]
    assert "left ≈" in text


def test_a_live_display_starts_and_stops_on_a_terminal(tmp_path):
    shown, out = progress(tmp_path, live=True)
    assert shown._display is not None
    shown.end()
    assert shown._display is None
