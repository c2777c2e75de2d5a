"""What a plan will cost in memory and disk, known before anything runs.

A recipe may ask for more than a machine holds (a simulated FULL-frame
observation of 64 dithers × 200 groups × 100 integrations is ~157 GiB of
ramps alone), and finding out hours later, with a disk filled or a process
killed by the kernel, is the worst way.  So :func:`estimate` prices a plan
from its exposures' sizes, and :func:`refuse_beyond` turns an estimate the
machine cannot hold into a one-line UserError naming it.

The coefficients were measured on this appliance (jwst 3.0.0, 2 cores):

* detector1 peak RSS ≈ 0.27 GB + 50 bytes per pixel-group (SUB256 × 10 groups:
  ≈ 0.3 GB; FULL × 60 groups: 3.4 GB);
* the simulator's peak RSS ≈ 0.25 GB + 50 bytes per pixel-group of one
  integration (SUB256 × 10: 0.26 GB; FULL × 10: 0.76 GB);
* disk per exposure ≈ (2.1 × groups × integrations + 21 × integrations + 111)
  bytes per pixel (uncal, rate + rateints, cal + i2d, crf) and ≈ 110 bytes per
  pixel per filter (mosaic, segmentation, post-processing): the demo's
  142 MB workdir is predicted to within 1 %;
* a mosaic larger than its exposures' frame (resample's ``output_shape``,
  ``pixel_scale_ratio``, ``pixel_scale``) adds its seven float32-sized arrays,
  40 bytes per extra pixel, to image3's memory and to the disk (not measured:
  an upper bound from the i2d's layout, enough to refuse an absurd request).

Peak RSS of one stage in a fresh process, jwst 3.0.0 (measured 2026-12-02):

======================  =========  ===========
stage                   SUB256     FULL
======================  =========  ===========
detector1, 10 groups    0.30 GB    0.89 GB (model 0.80)
detector1, 60 groups               3.4 GB (model 3.4)
image2                  0.27 GB    0.48 GB (model 0.51)
image3, 4 exposures     0.28 GB    (model 0.93)
======================  =========  ===========

(0.24 GB of each is Python with jwst imported.)  :func:`worker_budget`
turns the largest task's estimate into the number of workers that fit this
machine's cores and memory.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import UserError
from appliance.workdir import nearest_existing

GB = 1e9
GIB = 1 << 30

DETECTOR1_BASE, DETECTOR1_PER_PIXEL_GROUP = 0.27 * GB, 50
IMAGE2_BASE, IMAGE2_PER_PIXEL = 0.3 * GB, 200
IMAGE3_BASE, IMAGE3_PER_MEMBER_PIXEL = 0.3 * GB, 150
SIMULATE_BASE, SIMULATE_PER_PIXEL_GROUP = 0.25 * GB, 50
DISK_PER_PIXEL = 111
DISK_PER_PIXEL_INTEGRATION = 21
DISK_PER_PIXEL_GROUP = 2.1
DISK_PER_FILTER_PIXEL = 110
#: A mosaic larger than its exposures' frame (resample's ``output_shape``, ``pixel_scale_ratio`` or
#: ``pixel_scale``): its float32 arrays (data, weight, context, error, three variances) held and written.
MOSAIC_BYTES_PER_PIXEL = 40
MIRI_PIXEL_SCALE = 0.11  # arcsec per pixel: resample's native pixel_scale_ratio = 1


@dataclass(frozen=True)
class Estimate:
    """The largest task's peak memory, which task that is, and the disk the whole run fills."""

    memory: float  # bytes
    memory_task: str
    disk: float  # bytes

    def describe(self) -> str:
        return (f"peak memory ≈ {self.memory / GIB:.2f} GiB ({self.memory_task}), "
                f"disk ≈ {self.disk / GIB:.2f} GiB")


def detector1_memory(ngroups: int, nints: int, pixels: int) -> float:
    return DETECTOR1_BASE + DETECTOR1_PER_PIXEL_GROUP * ngroups * max(nints, 1) * pixels


def simulate_memory(ngroups: int, nints: int, pixels: int) -> float:
    """The simulator holds one integration's float ramps and every integration's uint16 ramps."""
    return SIMULATE_BASE + (SIMULATE_PER_PIXEL_GROUP + 2 * max(nints, 1)) * ngroups * pixels


def exposure_disk(ngroups: int, nints: int, pixels: int) -> float:
    nints = max(nints, 1)
    return (DISK_PER_PIXEL_GROUP * ngroups * nints + DISK_PER_PIXEL_INTEGRATION * nints + DISK_PER_PIXEL) * pixels


def estimate(plan, *, simulated: bool = False) -> Estimate:
    """Price a plan from its exposures (``ngroups``, ``nints``, ``pixels``; zero when unknown).

    ``simulated``: the inputs are made by the simulator first, which holds one exposure's ramps.
    """
    exposures = {e.name: e for e in plan.exposures}
    peak, peak_task = 0.0, "nothing"
    if simulated and plan.exposures:
        largest = max(plan.exposures, key=lambda e: e.ngroups * max(e.nints, 1) * e.pixels)
        peak, peak_task = simulate_memory(largest.ngroups, largest.nints, largest.pixels), "simulating the inputs"
    for task in plan.tasks:
        subject = task.id.partition(":")[2]
        if task.kind == "detector1":
            e = exposures[subject]
            memory = detector1_memory(e.ngroups, e.nints, e.pixels)
        elif task.kind == "image2":
            memory = IMAGE2_BASE + IMAGE2_PER_PIXEL * exposures[subject].pixels
        elif task.kind == "image3":
            members = [e for e in plan.exposures if e.filter == subject]
            frame = max((e.pixels for e in members), default=0)
            memory = (IMAGE3_BASE + IMAGE3_PER_MEMBER_PIXEL * sum(e.pixels for e in members)
                      + MOSAIC_BYTES_PER_PIXEL * max(0.0, mosaic_pixels(task.params, frame) - frame))
        else:
            continue
        if memory > peak:
            peak, peak_task = memory, f"{task.kind} of {subject}"
    disk = sum(exposure_disk(e.ngroups, e.nints, e.pixels) for e in plan.exposures)
    mosaics = {t.id.partition(":")[2]: t.params for t in plan.tasks if t.kind == "image3"}
    for filt in {e.filter for e in plan.exposures}:
        frame = max(e.pixels for e in plan.exposures if e.filter == filt)
        disk += DISK_PER_FILTER_PIXEL * frame + MOSAIC_BYTES_PER_PIXEL * max(
            0.0, mosaic_pixels(mosaics.get(filt, {}), frame) - frame)
    return Estimate(peak, peak_task, disk)


def mosaic_pixels(params: dict, frame: int) -> float:
    """The pixels of an image3 mosaic: resample's ``output_shape`` when set, else the exposures' frame
    (``frame`` pixels) scaled by the output pixel's area (``pixel_scale_ratio``, or ``pixel_scale`` in arcsec)."""
    resample = ((params or {}).get("steps") or {}).get("resample") or {}
    shape = resample.get("output_shape")
    if isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape):
        return float(shape[0]) * float(shape[1])
    ratio = resample.get("pixel_scale_ratio")
    scale = resample.get("pixel_scale")
    if isinstance(scale, (int, float)) and scale > 0:
        ratio = scale / MIRI_PIXEL_SCALE
    if isinstance(ratio, (int, float)) and ratio > 0:
        return frame / (ratio * ratio)
    return float(frame)


def simulation(ngroups: int, nints: int, pixels: int, exposures: int) -> Estimate:
    """What ``run.py simulate`` alone costs: the simulator's peak, and the uncal files it writes."""
    disk = exposures * DISK_PER_PIXEL_GROUP * ngroups * max(nints, 1) * pixels
    return Estimate(simulate_memory(ngroups, nints, pixels), "simulating one exposure", disk)


def machine_memory() -> float:
    """Physical memory of this machine (or of its cgroup limit, when lower), in bytes."""
    total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, float(text))
    return total


def refuse_beyond(estimate_: Estimate, workdir: Path, where: str) -> None:
    """A one-line UserError when the estimate exceeds this machine's memory or the workdir's free disk."""
    memory = machine_memory()
    place = nearest_existing(workdir)
    disk = float(shutil.disk_usage(place).free)
    if estimate_.memory > memory:
        raise UserError(f"{where}: needs an estimated {estimate_.memory / GIB:.1f} GiB of memory for "
                        f"{estimate_.memory_task}, but this machine has {memory / GIB:.1f} GiB")
    if estimate_.disk > disk:
        raise UserError(f"{where}: needs an estimated {estimate_.disk / GIB:.1f} GiB of disk, but "
                        f"{place} has {disk / GIB:.1f} GiB free")


#: What a worker may count on of the machine's memory (the rest: the client, the OS, page cache).
MEMORY_SHARE = 0.8


def worker_budget(estimate_: Estimate, cores: int | None = None, memory: float | None = None) -> tuple[int, str]:
    """How many workers fit: no more than the cores, nor than the largest task's peak fits into memory."""
    cores = cores or os.cpu_count() or 1
    memory = memory or machine_memory()
    by_memory = max(1, int(memory * MEMORY_SHARE // max(estimate_.memory, 1.0)))
    jobs = max(1, min(cores, by_memory))
    why = (f"{jobs} worker{'s' if jobs != 1 else ''}: {cores} cores; {memory / GIB:.0f} GiB memory holds "
           f"{by_memory} task{'s' if by_memory != 1 else ''} of ≈{estimate_.memory / GIB:.2f} GiB "
           f"({estimate_.memory_task})")
    return jobs, why


def unknown_plan_estimate() -> Estimate:
    """What a worker is budgeted for before a plan's exposures are known (MAST): one FULL-frame detector1."""
    return Estimate(detector1_memory(60, 1, 1032 * 1024), "detector1 of a FULL-frame exposure, 60 groups", 0.0)


def core_share(cores: int | None, workers: int) -> str:
    """Each worker's share of the cores, as jwst's ``maximum_cores`` takes it."""
    return str(max(1, (cores or os.cpu_count() or 1) // max(1, workers)))
