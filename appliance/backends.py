"""Where tasks run: in this process, in a local process pool, or on Dask workers (a local cluster, a scheduler
address, or SLURM through dask-jobqueue).

Every backend takes the same call -- :func:`appliance.runner.perform` on one
task -- and returns a :class:`concurrent.futures.Future` of its outcome, so
the one ready-queue walk of :mod:`appliance.execute` drives them all.  Each
worker writes its task's outputs and completion record itself into the shared
workdir; the client only schedules.  Workers receive the run's CRDS settings
as environment variables before they import jwst.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from dataclasses import dataclass

from appliance.crdsenv import apply_env
from appliance.errors import UserError, short_reason

EXECUTORS = ("serial", "process", "dask")


def perform_in_worker(env: dict[str, str], task, context, digests):
    """What a Dask worker runs: the environment first, then the task (records written by the worker)."""
    from appliance.runner import perform

    apply_env(env)  # the run's CRDS settings, before jwst is imported
    return perform(task, context, digests)


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class InProcess:
    """One task at a time, here; each task's outputs are digested in a second process meanwhile."""

    name = "serial"

    def __init__(self):
        from appliance.execute import background_digests

        self.workers = 1
        self.dashboard = None
        self._digests = background_digests()
        self._digester = None

    def submit(self, task, context, digests) -> Future:
        from appliance.runner import perform

        if self._digester is None:
            self._digester = self._digests.__enter__()
        return _done(perform(task, context, digests, self._digester))

    def close(self) -> None:
        if self._digester is not None:
            self._digests.__exit__(None, None, None)


class ProcessPool:
    """A local pool of spawned worker processes, each configured for CRDS before it imports jwst.

    A worker that dies (killed, out of memory) breaks the whole pool: every
    task running in it fails with ``BrokenProcessPool`` and no record.  Those
    tasks are sent once more to a fresh pool, as Dask gives a lost worker's
    task to another; a task that breaks the fresh pool too fails.
    """

    name = "process"
    ATTEMPTS = 2

    def __init__(self, workers: int, env: dict[str, str], work=None):
        import threading

        from appliance.runner import perform

        self.work = work or perform  # what a worker calls with (task, context, digests)
        self.workers = workers
        self.dashboard = None
        self._env = env
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=apply_env, initargs=(self._env,))

    def submit(self, task, context, digests) -> Future:
        bridge: Future = Future()
        self._send(bridge, self.ATTEMPTS, task, context, digests)
        return bridge

    def _send(self, bridge: Future, attempts: int, *call) -> None:
        from concurrent.futures.process import BrokenProcessPool

        with self._lock:
            try:
                future = self._pool.submit(self.work, *call)
            except BrokenProcessPool:  # broken since the last submit: a fresh pool
                self._pool.shutdown(wait=False)
                self._pool = self._new_pool()
                future = self._pool.submit(self.work, *call)
            pool = self._pool

        def done(f: Future) -> None:
            if f.cancelled():  # the pool was shut down
                bridge.cancel()
                return
            exc = f.exception()
            if isinstance(exc, BrokenProcessPool) and attempts > 1:
                with self._lock:
                    if self._pool is pool:
                        self._pool = self._new_pool()
                        pool.shutdown(wait=False)  # its processes are gone; release its queues and thread
                try:
                    self._send(bridge, attempts - 1, *call)
                except Exception as error:  # the pool was closed meanwhile: the caller learns why
                    bridge.set_exception(error)
            elif exc is not None:
                bridge.set_exception(exc)
            else:
                bridge.set_result(f.result())

        future.add_done_callback(done)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class SlurmSpec:
    """A SLURM cluster for dask-jobqueue: ``--dask-cluster slurm`` or a small TOML file of these keys."""

    queue: str | None = None
    cores: int = 1
    memory: str = "4GB"
    walltime: str = "01:00:00"
    jobs: int = 2  # SLURM jobs, one Dask worker each
    python: str | None = None  # the interpreter the workers run (a venv's, or one inside an image)
    job_extra_directives: tuple[str, ...] = ()
    host: str = "127.0.0.1"  # where the scheduler listens (a node the workers can reach)


def load_slurm_spec(text: str) -> SlurmSpec:
    """``slurm`` (the defaults) or a path to a TOML file ``[slurm] queue = ..., cores = ...``."""
    import tomllib
    from pathlib import Path

    if text == "slurm":
        return SlurmSpec()
    from appliance.safety import printable, read_regular_file

    path = Path(text)
    try:
        table = tomllib.loads(read_regular_file(path, "cluster file", 1 << 16).decode("utf-8")).get("slurm")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{printable(path)}: not a cluster file: {short_reason(exc)}") from None
    if not isinstance(table, dict):
        raise UserError(f"{printable(path)}: expected a [slurm] table")
    fields = SlurmSpec.__dataclass_fields__
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise UserError(f"{printable(path)}: slurm.{unknown[0]}: unknown key; expected one of {', '.join(fields)}")
    for key, value in table.items():
        expected = _SLURM_TYPES[key]
        if not _slurm_value_ok(key, value):
            raise UserError(f"{printable(path)}: slurm.{key}: expected {expected}, got {printable(repr(value))}")
    values = {k: tuple(v) if k == "job_extra_directives" else v for k, v in table.items()}
    return SlurmSpec(**values)


_SLURM_TYPES = {"queue": "a string", "cores": "a whole number ≥ 1", "memory": "a string such as \"4GB\"",
                "walltime": "a string HH:MM:SS", "jobs": "a whole number ≥ 1", "python": "a path to an interpreter",
                "job_extra_directives": "a list of strings", "host": "a host name or address"}


def _slurm_value_ok(key: str, value) -> bool:
    if key in ("cores", "jobs"):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if key == "job_extra_directives":
        return isinstance(value, list) and all(isinstance(v, str) and v.isprintable() for v in value)
    return isinstance(value, str) and value.isprintable() and value != ""


#: The Dask settings of the workers the appliance starts (a local cluster, SLURM jobs):
#: non-daemonic, so a nanny's worker process may start children (jump's and ramp_fit's pools when
#: ``maximum_cores`` > 1); no statistical profiler, which samples every thread's stack every 10 ms and
#: keeps the samples (measured by bench/scale.py: 8 exposures 95 s -> 75 s, worker peak RSS 0.43 -> 0.33 GB).
WORKER_CONFIG = {"distributed.worker.daemon": False, "distributed.worker.profile.enabled": False}


def worker_environment() -> list[str]:
    """:data:`WORKER_CONFIG` as the ``DASK_*`` variables a batch job exports before it starts its worker."""
    return [f"DASK_{key.upper().replace('.', '__').replace('-', '_')}={value}" for key, value in WORKER_CONFIG.items()]


class DaskCluster:
    """Tasks on Dask workers: an existing scheduler, a local cluster, or SLURM jobs started by dask-jobqueue."""

    name = "dask"

    def __init__(self, workers: int, env: dict[str, str], *, scheduler: str | None = None, slurm: SlurmSpec | None = None,
                 log_directory: str | None = None):
        import dask
        from distributed import Client, LocalCluster

        self.env = env
        self._cluster = None
        if scheduler:
            self._client = _connect(Client, scheduler)
            self.workers = max(1, len(self._client.scheduler_info()["workers"]) or workers)
        elif slurm is not None:
            from dask_jobqueue import SLURMCluster

            options = dict(cores=slurm.cores, processes=1, memory=slurm.memory, walltime=slurm.walltime,
                           job_script_prologue=[f"export {v}" for v in worker_environment()],
                           scheduler_options={"host": slurm.host}, worker_extra_args=["--host", slurm.host],
                           job_extra_directives=list(slurm.job_extra_directives), log_directory=log_directory)
            if slurm.queue:
                options["queue"] = slurm.queue
            if slurm.python:
                options["python"] = slurm.python
            self._cluster = SLURMCluster(**options)
            self._cluster.scale(jobs=slurm.jobs)
            self._client = Client(self._cluster)
            self._client.wait_for_workers(1, timeout=300)
            self.workers = slurm.jobs
        else:
            with dask.config.set(WORKER_CONFIG):
                self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address="127.0.0.1:0")
            self._client = Client(self._cluster)
            self.workers = workers
        self.dashboard = self._client.dashboard_link

    def submit(self, task, context, digests) -> Future:
        bridge: Future = Future()
        future = self._client.submit(perform_in_worker, self.env, task, context, digests, pure=False,
                                     key=f"{task.id}-{os.urandom(4).hex()}")

        def done(f):
            try:
                bridge.set_result(f.result())
            except BaseException as exc:  # noqa: BLE001 - the worker's failure, or its death, reaches the walk
                bridge.set_exception(exc)

        future.add_done_callback(done)
        bridge.dask_future = future
        return bridge

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _connect(client_class, address: str):
    try:
        return client_class(address, timeout="5s")
    except (OSError, TimeoutError) as exc:
        raise UserError(f"--dask-scheduler {address}: no Dask scheduler answers there ({short_reason(exc)})") from None


class Lazy:
    """A backend started with the first task that runs: a run that reuses everything starts no worker."""

    def __init__(self, name: str, workers: int, start, announce=print):
        self.name, self.workers = name, workers
        self._start, self._announce, self._backend = start, announce, None

    def submit(self, task, context, digests) -> Future:
        if self._backend is None:
            self._backend = self._start()
            self.workers = self._backend.workers
            if self._backend.dashboard:
                self._announce(f"dashboard {self._backend.dashboard}")
        return self._backend.submit(task, context, digests)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def start(executor: str, workers: int, env: dict[str, str], *, scheduler: str | None = None,
          cluster: str | None = None, log_directory: str | None = None, announce=print) -> Lazy:
    """The backend a run asked for (``--executor``, ``--jobs``, ``--dask-scheduler``, ``--dask-cluster``).

    ``log_directory``: where SLURM writes its jobs' output (the workdir's ``logs/slurm``).
    """
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor}: expected one of {', '.join(EXECUTORS)}")
    spec = load_slurm_spec(cluster) if cluster else None
    if scheduler and spec:
        raise UserError("--dask-scheduler and --dask-cluster exclude each other")
    if executor == "serial":
        return Lazy("serial", 1, InProcess, announce)
    if executor == "process":
        return Lazy("process", workers, lambda: ProcessPool(workers, env), announce)
    if scheduler:  # an existing cluster: connect now, so an unreachable address fails before any work
        backend = DaskCluster(workers, env, scheduler=scheduler)
        lazy = Lazy("dask", backend.workers, lambda: backend, announce)
        return lazy
    return Lazy("dask", spec.jobs if spec else workers,
                lambda: DaskCluster(workers, env, slurm=spec, log_directory=log_directory), announce)
