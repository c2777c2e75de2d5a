"""Shared fixtures: the demo recipe reduced once per session by the real pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python run.py ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )


def product_digests(workdir: Path) -> dict[str, str]:
    """Each product's content digest, by path, from the workdir's manifest."""
    return {p["path"]: p["content_digest"] for p in json.loads((workdir / "manifest.json").read_text())["products"]}


def assert_same_science(baseline: Path, new: Path) -> list[str]:
    """Two reductions of one recipe on different software stacks (host venv and image, same lock):
    the same products, each identical or within jwst's regression tolerances (``run.py compare``).

    Bitwise identity is not asserted across stacks: on some CPUs the image3 products of the host
    venv and of the image differ in the last bits (docs/container.md). Returns the products whose
    content digests differ; a caller that runs one stack twice asserts bitwise identity instead."""
    ours, theirs = product_digests(baseline), product_digests(new)
    assert sorted(ours) == sorted(theirs)
    differ = sorted(path for path in ours if ours[path] != theirs[path])
    compared = run_cli("compare", str(baseline), str(new))
    assert compared.returncode == 0, compared.stdout[-3000:]
    assert f"result: {'WITHIN TOLERANCE' if differ else 'IDENTICAL'}" in compared.stdout, compared.stdout[-3000:]
    if differ:
        warnings.warn(f"{len(differ)} products differ bitwise but within tolerance between {baseline} and {new}: "
                      f"{differ}")
    return differ


def reduce_demo(workdir: Path) -> dict:
    done = run_cli("run", "recipes/demo.toml", "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((workdir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A complete demo reduction: (workdir, manifest)."""
    workdir = tmp_path_factory.mktemp("demo") / "work"
    return workdir, reduce_demo(workdir)
