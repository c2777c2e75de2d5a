"""Shared fixtures: the demo recipe reduced once per session by the real pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def reduce_demo(workdir: Path) -> dict:
    done = run_cli("run", "recipes/demo.toml", "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((workdir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A complete demo reduction: (workdir, manifest)."""
    workdir = tmp_path_factory.mktemp("demo") / "work"
    return workdir, reduce_demo(workdir)
