"""The jwst releases the appliance supports: one pin and one hash-locked lock per release.

The default release is ``container/pin.toml`` with ``container/requirements.lock``:
the one the host venv installs and ``run.py docker build`` builds.  Every other
supported release is a directory ``container/releases/<version>/`` holding its own
``pin.toml`` (jwst version, CRDS build context, the lock's cut-off date) and
``requirements.lock`` (``container/lock.sh --release <version>``), and its
wheelhouse ``wheels/`` (git-ignored, filled on the host by the build).

A release is only ever looked up by name in this list, so a ``--release`` value
never becomes a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import UserError
from appliance.pin import LOCK_PATH, PIN_PATH, ROOT, Pin, load_pin

RELEASES_DIR = ROOT / "container" / "releases"
DEFAULT_WHEELHOUSE = ROOT / "container" / "wheels"


@dataclass(frozen=True)
class Release:
    """One supported jwst release: its pin, its lock and where its wheels go."""

    pin: Pin
    pin_path: Path
    lock_path: Path
    wheelhouse: Path
    default: bool

    @property
    def version(self) -> str:
        return self.pin.jwst


def _version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in re.split(r"[.+-]", version))


def default_release() -> Release:
    """The release of ``container/pin.toml``: the host venv's, and the default image's."""
    return Release(load_pin(PIN_PATH), PIN_PATH, LOCK_PATH, DEFAULT_WHEELHOUSE, default=True)


def all_releases() -> list[Release]:
    """Every supported release, newest first; a release directory must be named after its pin."""
    found = {}
    default = default_release()
    found[default.version] = default
    for pin_path in sorted(RELEASES_DIR.glob("*/pin.toml")):
        directory = pin_path.parent
        pin = load_pin(pin_path)
        if pin.jwst != directory.name:
            raise UserError(f"{pin_path}: jwst: expected {directory.name!r} (the directory's name), found {pin.jwst!r}")
        if pin.jwst in found:
            raise UserError(f"{pin_path}: jwst {pin.jwst} is already the default release (container/pin.toml)")
        found[pin.jwst] = Release(pin, pin_path, directory / "requirements.lock", directory / "wheels", default=False)
    return sorted(found.values(), key=lambda r: _version_key(r.version), reverse=True)


def get_release(version: str | None) -> Release:
    """The supported release named ``version`` (None: the default); an unknown one is a :class:`UserError`."""
    if version is None:
        return default_release()
    releases = all_releases()
    for release in releases:
        if release.version == version:
            if not release.lock_path.is_file():
                raise UserError(f"{release.lock_path}: the lock of jwst {version} is missing "
                                f"(container/lock.sh --release {version} makes it)")
            return release
    names = ", ".join(r.version for r in releases)
    raise UserError(f"--release {version}: not a supported jwst release (supported: {names}; "
                    f"docs/releases.md says how to add one)")


def release_of_lock(lock_sha256: str) -> Release | None:
    """The supported release whose lock has this sha256, if any (an image's lock label names its release)."""
    from appliance.pin import lock_sha256 as sha

    for release in all_releases():
        if release.lock_path.is_file() and sha(release.lock_path) == lock_sha256:
            return release
    return None
