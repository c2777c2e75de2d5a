"""Backends: the cluster file, the choice of backend, starting lazily; the worker budget and core share."""

from __future__ import annotations

import pytest

from appliance import backends, crdsenv, resources
from appliance.errors import UserError
from appliance.resources import GIB, Estimate


def cluster_file(tmp_path, text):
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return str(path)


def test_slurm_defaults_and_a_cluster_file(tmp_path):
    assert backends.load_slurm_spec("slurm") == backends.SlurmSpec()
    spec = backends.load_slurm_spec(cluster_file(tmp_path, '[slurm]\nqueue = "debug"\ncores = 2\njobs = 3\n'
                                                           'job_extra_directives = ["--exclusive"]\n'))
    assert (spec.queue, spec.cores, spec.jobs, spec.job_extra_directives) == ("debug", 2, 3, ("--exclusive",))


@pytest.mark.parametrize("text, message", [
    ("[slurm]\nqueues = 'x'\n", "slurm.queues: unknown key; expected one of queue, cores"),
    ("[slurm]\ncores = 0\n", "slurm.cores: expected a whole number ≥ 1, got 0"),
    ("[slurm]\njobs = true\n", "slurm.jobs: expected a whole number ≥ 1, got True"),
    ("[slurm]\nmemory = 4\n", "slurm.memory: expected a string"),
    ("[slurm]\njob_extra_directives = '--x'\n", "slurm.job_extra_directives: expected a list of strings"),
    ("cores = 1\n", "expected a [slurm] table"),
    ("[slurm\n", "not a cluster file"),
])
def test_a_bad_cluster_file_is_one_line_naming_the_key(tmp_path, text, message):
    path = cluster_file(tmp_path, text)
    with pytest.raises(UserError, match=None) as caught:
        backends.load_slurm_spec(path)
    assert str(caught.value).startswith(path) and message in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_cluster_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match="cluster file"):
        backends.load_slurm_spec(str(tmp_path / "nothing.toml"))


def test_choice_of_backend(tmp_path):
    with pytest.raises(UserError, match="--executor gpu: expected one of serial, process, dask"):
        backends.start("gpu", 1, {})
    with pytest.raises(UserError, match="exclude each other"):
        backends.start("dask", 2, {}, scheduler="tcp://127.0.0.1:1", cluster="slurm")
    assert (backends.start("serial", 4, {}).workers, backends.start("process", 3, {}).workers) == (1, 3)
    assert backends.start("dask", 2, {}, cluster=cluster_file(tmp_path, "[slurm]\njobs = 5\n")).workers == 5


def test_an_unreachable_scheduler_fails_at_start_naming_it():
    with pytest.raises(UserError, match=r"^--dask-scheduler tcp://127.0.0.1:9: no Dask scheduler answers there"):
        backends.start("dask", 2, {}, scheduler="tcp://127.0.0.1:9")


def test_a_backend_starts_with_its_first_task_and_announces_its_dashboard():
    class Backend:
        workers, dashboard, closed = 3, "http://127.0.0.1:8787/status", False

        def submit(self, task, context, digests):
            return task

        def close(self):
            Backend.closed = True

    started, said = [], []
    lazy = backends.Lazy("dask", 2, lambda: started.append(1) or Backend(), said.append)
    lazy.close()  # nothing ran: nothing started
    assert not started and not Backend.closed
    assert lazy.submit("t1", None, None) == "t1" and lazy.submit("t2", None, None) == "t2"
    assert started == [1] and lazy.workers == 3 and said == ["dashboard http://127.0.0.1:8787/status"]
    lazy.close()
    assert Backend.closed


def test_workers_environment_reaches_the_process(monkeypatch):
    monkeypatch.setenv("STPIPE_DISABLE_CRDS_STEPPARS", "1")
    monkeypatch.setenv("CRDS_PATH", "/elsewhere")  # set, so monkeypatch restores what was there afterwards
    crdsenv.apply_env({"CRDS_PATH": "/w/crds_cache"})  # what each worker does first
    import os

    assert os.environ["CRDS_PATH"] == "/w/crds_cache" and "STPIPE_DISABLE_CRDS_STEPPARS" not in os.environ


def test_the_worker_budget_is_the_lower_of_cores_and_memory():
    small = Estimate(0.3 * 1e9, "detector1 of a", 0)
    full = Estimate(3.4 * 1e9, "detector1 of b", 0)
    assert resources.worker_budget(small, cores=2, memory=24 * GIB)[0] == 2
    jobs, why = resources.worker_budget(full, cores=16, memory=6 * GIB)
    assert jobs == 1 and why.startswith("1 worker: 16 cores; 6 GiB memory holds 1 task of ≈3.17 GiB (detector1 of b)")
    assert resources.worker_budget(Estimate(0, "nothing", 0), cores=2, memory=1 * GIB)[0] == 2


def test_each_worker_gets_its_share_of_the_cores():
    assert [resources.core_share(8, w) for w in (1, 2, 3, 16)] == ["8", "4", "2", "1"]


def test_a_daemonic_worker_runs_jump_on_one_core(monkeypatch):
    import multiprocessing

    from appliance.runner import worker_share

    assert worker_share("2") == "2"
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    assert worker_share("2") == "1"


def die_once(marker, context, digests):
    """A task body for the process pool: the first call kills its own worker (as the OOM killer would)."""
    import os
    import signal
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return f"done in {os.getpid()}"


def always_die(marker, context, digests):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_the_process_pool_sends_a_dead_workers_task_once_more(tmp_path):
    pool = backends.ProcessPool(1, {}, work=die_once)
    try:
        marker = tmp_path / "died"
        result = pool.submit(str(marker), None, None).result(timeout=120)
        assert marker.read_text() not in result  # another process finished it
        assert pool.submit(str(tmp_path / "died"), None, None).result(timeout=60).startswith("done")  # the fresh pool works on
    finally:
        pool.close()


def test_a_task_that_breaks_the_fresh_pool_too_fails(tmp_path):
    from concurrent.futures.process import BrokenProcessPool

    pool = backends.ProcessPool(1, {}, work=always_die)
    try:
        with pytest.raises(BrokenProcessPool):
            pool.submit(str(tmp_path / "x"), None, None).result(timeout=120)
    finally:
        pool.close()


def test_the_batch_jobs_environment_is_the_local_clusters_worker_config():
    """The DASK_* variables a SLURM job exports mean, to Dask, exactly WORKER_CONFIG."""
    import dask

    env = dict(v.split("=", 1) for v in backends.worker_environment())
    collected = dask.config.collect(paths=[], env=env)
    assert dask.config.get("distributed.worker.daemon", config=collected) is False
    assert dask.config.get("distributed.worker.profile.enabled", config=collected) is False
    assert set(backends.WORKER_CONFIG) == {"distributed.worker.daemon", "distributed.worker.profile.enabled"}
