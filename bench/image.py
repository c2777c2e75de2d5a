"""Benchmark of the appliance image: size, cold start, code-only rebuild.

    python bench/image.py [--base-image appliance-base:bookworm] [--tag jwst-appliance:bench] [--full]

Prints, against the goals of the container issue:

- the image size (goal <= 1.0 GB);
- ``docker run --rm IMAGE --version``: the first (cold) run and the median of
  five more (goal <= 2 s);
- the rebuild time after a code-only change (goal <= 10 s): the build context is
  sent with one comment added to ``appliance/cli.py``, as an edit would, without
  touching the working tree;
- with ``--full``, the time of a build from scratch (``--no-cache``, from the
  wheelhouse with ``--network none``; about 45 s on 2 cores).

Needs a running Docker engine (container/ensure-docker.sh) and, for a hermetic
build, the wheelhouse (container/fetch-wheels.sh).  As root it drops the page
cache before the cold run, when the kernel allows it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance import engine  # noqa: E402
from appliance import image as appliance_image  # noqa: E402
from appliance.errors import UserError, WorkFailed  # noqa: E402

GOALS = {"size_gb": 1.0, "rebuild_s": 10.0, "version_s": 2.0}


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def docker_run_version(image_id: str) -> float:
    """Wall time of `docker run --rm IMAGE --version`, as a user types it (the CLI when there is one)."""
    cli = shutil.which("docker")
    if cli:
        start = time.perf_counter()
        done = subprocess.run([cli, "run", "--rm", "--network", "none", image_id, "--version"],
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise WorkFailed(f"docker run {image_id} --version failed: {done.stderr.strip()[-300:]}")
        return elapsed
    client = engine.connect()
    start = time.perf_counter()
    client.containers.run(image_id, ["--version"], remove=True, network_mode="none")
    return time.perf_counter() - start


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-image", default=None)
    parser.add_argument("--tag", default="jwst-appliance:bench")
    parser.add_argument("--wheelhouse", type=Path, default=None)
    parser.add_argument("--full", action="store_true", help="also time a build from scratch (--no-cache)")
    args = parser.parse_args(argv)

    client = engine.connect()
    base_image = args.base_image
    if base_image is None:
        try:
            client.images.get(appliance_image.LOCAL_BASE_IMAGE)
            base_image = appliance_image.LOCAL_BASE_IMAGE
        except Exception:
            pass
    plan = appliance_image.plan_build(appliance_image.BuildOptions(tag=args.tag, base_image=base_image,
                                                                   wheelhouse=args.wheelhouse, quiet=True))
    rows = []

    if args.full:
        t_full, _ = timed(lambda: appliance_image.build_image(client, plan, no_cache=True, quiet=True))
        rows.append(("full build (--no-cache, network %s)" % (plan.network or "default"), f"{t_full:.1f} s", ""))
    t_warm, image = timed(lambda: appliance_image.build_image(client, plan, quiet=True))

    stamp = f"# bench {time.time_ns()}\n".encode()
    edit = lambda name, data: data + stamp if name == "appliance/cli.py" else data  # noqa: E731
    t_code, image = timed(lambda: appliance_image.build_image(client, plan, quiet=True, edit=edit))

    size_gb = image.attrs["Size"] / 1e9
    dropped = drop_caches()
    cold = docker_run_version(image.id)
    warm = statistics.median(docker_run_version(image.id) for _ in range(5))

    def verdict(value, goal):
        return "ok" if value <= goal else f"OVER the goal of {goal:g}"

    rows += [
        ("image size", f"{size_gb:.2f} GB ({image.attrs['Size'] / 2**20:.0f} MiB)", verdict(size_gb, GOALS["size_gb"])),
        ("docker run IMAGE --version, cold" + (" (page cache dropped)" if dropped else ""), f"{cold:.2f} s",
         verdict(cold, GOALS["version_s"])),
        ("docker run IMAGE --version, warm median of 5", f"{warm:.2f} s", verdict(warm, GOALS["version_s"])),
        ("rebuild after a code-only change", f"{t_code:.1f} s", verdict(t_code, GOALS["rebuild_s"])),
        ("first build of this run (warm cache, nothing changed)", f"{t_warm:.1f} s", ""),
    ]
    print(f"image {args.tag} {image.id[:19]} from {plan.buildargs['BASE_IMAGE']}, jwst {plan.buildargs['JWST_VERSION']}")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>22}  {note}")
    return 0 if all(not r[2] or r[2] == "ok" for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (UserError, WorkFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
