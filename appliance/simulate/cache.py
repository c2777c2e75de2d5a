"""The synthetic CRDS cache: its layout on disk and the environment that runs jwst against it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..crdsenv import OFFLINE_SERVER_URL, CrdsSettings
from ..files import atomic_write
from .mappings import SIM_CONTEXT, mapping_texts, server_config_text
from .references import reference_files, write_reference

STAMP = "appliance_sim_cache"  # marks a complete cache of this exact content


def _write_text(path: Path, text: str) -> None:
    """Write unless the file already says exactly this (a rebuilt cache leaves unchanged files alone)."""
    if not (path.exists() and path.read_text() == text):
        atomic_write(path, text)


def build(cache_dir: Path) -> Path:
    """Write config, mappings and references; skip the references if a complete cache is there."""
    cache_dir = Path(cache_dir)
    refs = reference_files()
    texts = mapping_texts(refs)
    config = cache_dir / "config" / "jwst"
    mapdir = cache_dir / "mappings" / "jwst"
    refdir = cache_dir / "references" / "jwst" / "miri"
    refdir.mkdir(parents=True, exist_ok=True)
    _write_text(config / "server_config", server_config_text())
    _write_text(config / "ref_cache_subdir_mode", "instrument")
    for name, text in texts.items():
        _write_text(mapdir / name, text)
    # The stamp hashes the mappings and the code that makes the references: when it matches and
    # every file is there, the references are already what this code would write.
    from . import code_digest

    digest = hashlib.sha256("".join(texts[k] for k in sorted(texts)).encode())
    digest.update(code_digest().encode())
    stamp = digest.hexdigest() + "\n"
    stamp_path = config / STAMP
    complete = stamp_path.exists() and stamp_path.read_text() == stamp and all((refdir / r.name).exists() for r in refs)
    if not complete:
        for ref in refs:
            write_reference(ref, refdir)
        _write_text(stamp_path, stamp)
    return cache_dir


def environment(cache_dir: Path) -> dict[str, str]:
    """Variables that make jwst and crds use this cache only, offline."""
    settings = CrdsSettings(SIM_CONTEXT, str(Path(cache_dir).resolve()), "local", OFFLINE_SERVER_URL, True)
    return settings.as_env()
