"""The serial executor: order, digests handed downstream, failures, keep-going, and the dry-run preview."""

import pytest
from rich.console import Console

from appliance.errors import WorkFailed
from concurrent.futures import Future
from pathlib import Path

from appliance.execute import Executor, counts_line, preview, topological
from appliance.graph import Plan, Task
from appliance.incremental import PENDING, Decision
from appliance.progress import Progress
from appliance.runner import BLOCKED, FAILED, REUSED, RUN, Outcome


def task(id, deps=(), inputs=(), outputs=()):
    return Task(id, id.split(":")[0], {}, tuple(inputs), tuple(outputs), tuple(deps))


def test_topological_respects_deps_and_keeps_plan_order():
    tasks = (task("b:1", ["a:1"]), task("a:1"), task("c:1", ["b:1", "a:1"]), task("a:2"))
    assert [t.id for t in topological(tasks)] == ["a:1", "a:2", "b:1", "c:1"]


def test_cycle_is_detected():
    with pytest.raises(ValueError, match="cycle"):
        topological((task("a:1", ["b:1"]), task("b:1", ["a:1"])))


class Here:
    """A backend that runs ``perform(task, digests)`` at once, as the in-process one does."""

    name, workers, dashboard = "serial", 1, None

    def __init__(self, perform):
        self.perform = perform

    def submit(self, task, context, digests):
        future = Future()
        future.set_result(self.perform(task, digests))
        return future


class Context:
    workdir = Path(".")


class Walk:
    def run(self, plan, perform, digests, keep_going=False):
        executor = Executor(Here(perform), Progress(Console(quiet=True), live=False))
        return executor.run(plan, Context(), digests, keep_going=keep_going)


def quiet():
    return Walk()


def test_each_task_gets_the_digests_of_what_its_upstream_tasks_wrote():
    seen = {}

    def perform(t, digests):
        seen[t.id] = dict(digests)
        return Outcome(t, RUN, "new", {"outputs": [{"path": p, "content_digest": f"d-{p}"} for p in t.outputs]})

    plan = Plan((), (), (task("detector1:e", inputs=["uncal/e"], outputs=["stage1/e"]),
                         task("image2:e", ["detector1:e"], ["stage1/e"], ["stage2/e"])))
    outcomes = quiet().run(plan, perform, {"uncal/e": "u"})
    assert seen["detector1:e"] == {"uncal/e": "u"}
    assert seen["image2:e"]["stage1/e"] == "d-stage1/e"
    assert counts_line(outcomes) == "2 tasks: 2 run, 0 reused"


def test_a_failure_stops_the_run_with_one_line_unless_keep_going():
    def perform(t, digests):
        if t.id == "detector1:a":
            return Outcome(t, FAILED, "new", {"step": "jump", "log": "logs/detector1_a.log"}, error="boom")
        return Outcome(t, REUSED, "unchanged", {"outputs": []})

    plan = Plan((), (), (task("detector1:a"), task("detector1:b"), task("image2:a", ["detector1:a"]),
                         task("image3:F", ["image2:a", "detector1:b"]), task("image2:b", ["detector1:b"])))
    with pytest.raises(WorkFailed, match=r"^detector1:a failed in step jump: boom \(log: logs/detector1_a.log\)$"):
        quiet().run(plan, perform, {})
    outcomes = {o.task.id: o for o in quiet().run(plan, perform, {}, keep_going=True)}
    assert outcomes["detector1:b"].status == REUSED and outcomes["image2:b"].status == REUSED
    assert outcomes["image2:a"].status == BLOCKED and outcomes["image3:F"].status == BLOCKED
    assert outcomes["image3:F"].reason == "waits for image2:a, which blocked"
    assert counts_line(list(outcomes.values())) == "5 tasks: 0 run, 2 reused, 1 failed, 2 blocked"


def test_the_preview_marks_what_a_running_task_will_rewrite_as_pending():
    plan = Plan((), (), (task("detector1:e", inputs=["uncal/e"], outputs=["stage1/e"]),
                         task("image2:e", ["detector1:e"], ["stage1/e"], ["stage2/e"])))
    seen = {}

    def decide(t, digests):
        seen[t.id] = dict(digests)
        return Decision(t.id.startswith("detector1"), "parameters changed" if t.id.startswith("d") else "unchanged")

    decisions = preview(plan, decide, lambda t: [], {"uncal/e": "u"})
    assert [d.verb for _, d in decisions] == ["run", "reused"]
    assert seen["image2:e"]["stage1/e"] is PENDING


def test_the_digest_process_ends_when_a_killed_run_cannot_stop_it(tmp_path):
    """SIGKILL leaves a run no chance to shut its digest pool down; the pool's worker (and with it the
    resource tracker) ends by itself."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
        "from appliance.execute import background_digests\n"
        "if __name__ == '__main__':\n"
        "    with background_digests() as digest:\n"
        f"        digest({str(tmp_path)!r}, 'x', []).result()  # the worker is running now\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        assert children
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        end = time.monotonic() + 15
        alive = children
        while alive and time.monotonic() < end:
            time.sleep(0.2)
            alive = [c for c in children if os.path.exists(f"/proc/{c}") and "Z" not in
                     open(f"/proc/{c}/stat").read().split(")")[-1].split()[0]]
        for c in alive:
            os.kill(int(c), signal.SIGKILL)
        assert alive == [], "the digest pool outlived its killed run"
    finally:
        parent.kill()
