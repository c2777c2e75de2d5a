"""The one place that pairs a jwst release with its CRDS context: a ``pin.toml``.

``container/pin.toml`` pins the default release (the host venv's, and the image
``run.py docker build`` makes); each other supported release has its own pin
beside its own lock in ``container/releases/<version>/`` (:mod:`appliance.releases`).
``run.py`` (to compare a recipe's ``[environment]`` with what is installed),
the image build (labels, ``CRDS_CONTEXT``) and the Docker launcher all read a
pin through :func:`load_pin`; nothing else repeats the numbers.  Inside an
image, ``container/pin.toml`` is the pin of the release the image holds.

This module also names the image labels and the image-information file the
container carries, so the launcher, the Dockerfile's helper and the manifest
agree on them:

- labels: the OCI ``org.opencontainers.image.*`` set plus :data:`LABEL_JWST`,
  :data:`LABEL_CRDS_CONTEXT` and :data:`LABEL_LOCK_SHA256`;
- ``/etc/appliance/image.json`` (override with ``$APPLIANCE_IMAGE_INFO``): a JSON
  object of exactly those labels, written at build time;
- ``$APPLIANCE_IMAGE_ID`` / ``$APPLIANCE_IMAGE_DIGEST``: set by the launcher at
  run time (an image cannot know its own id while it is being built).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the appliance needs 3.11, but keep the reader importable
    import tomli as tomllib

from appliance.files import file_sha256
from appliance.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PIN_PATH = ROOT / "container" / "pin.toml"
LOCK_PATH = ROOT / "container" / "requirements.lock"

LABEL_PREFIX = "org.jwst-appliance."
LABEL_JWST = LABEL_PREFIX + "jwst.version"
LABEL_CRDS_CONTEXT = LABEL_PREFIX + "crds.context"
LABEL_LOCK_SHA256 = LABEL_PREFIX + "lock.sha256"

IMAGE_INFO_PATH = Path("/etc/appliance/image.json")
IMAGE_INFO_ENV = "APPLIANCE_IMAGE_INFO"
IMAGE_ID_ENV = "APPLIANCE_IMAGE_ID"
IMAGE_DIGEST_ENV = "APPLIANCE_IMAGE_DIGEST"

_VERSION = re.compile(r"^\d+(\.\d+)*([a-z0-9.+-]*)$")
_CONTEXT = re.compile(r"^jwst_\d{4}\.pmap$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Pin:
    """The pinned pipeline release, the CRDS context that goes with it, and the lock's cut-off date.

    ``exclude_newer`` (``YYYY-MM-DD``, optional) is the date the release's lock
    was resolved at: no distribution uploaded after it, so a pinned release gets
    the dependencies of its own time (``container/lock.sh`` passes it to uv).
    """

    jwst: str
    crds_context: str
    exclude_newer: str | None = None


def load_pin(path: str | os.PathLike | None = None) -> Pin:
    """Read ``container/pin.toml`` (or ``path``); a malformed pin is a :class:`UserError`."""
    path = Path(path) if path is not None else PIN_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: the jwst/CRDS pin file is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    values = {}
    for key, pattern, example in (("jwst", _VERSION, "X.Y.Z"), ("crds_context", _CONTEXT, "jwst_NNNN.pmap"),
                                  ("exclude_newer", _DATE, "YYYY-MM-DD")):
        value = data.get(key)
        if key == "exclude_newer" and value is None:
            continue
        if not isinstance(value, str) or not pattern.match(value):
            raise UserError(f"{path}: {key}: expected a string like {example}, found {value!r}")
        values[key] = value
    unknown = sorted(set(data) - {"jwst", "crds_context", "exclude_newer"})
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (expected jwst, crds_context, exclude_newer)")
    return Pin(**values)


def lock_sha256(path: str | os.PathLike | None = None) -> str:
    """The sha256 of the lock file, as the image's :data:`LABEL_LOCK_SHA256` records it."""
    path = Path(path) if path is not None else LOCK_PATH
    try:
        return file_sha256(path)
    except FileNotFoundError:
        raise UserError(f"{path}: the dependency lock is missing") from None


def lock_pins(path: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """The ``(name, version)`` of every distribution the lock pins, in its order."""
    path = Path(path) if path is not None else LOCK_PATH
    return re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", path.read_text(encoding="utf-8"), re.M)


def image_labels(
    *,
    jwst: str,
    crds_context: str,
    lock_sha256: str,
    appliance_version: str,
    vcs_ref: str = "",
    build_date: str = "",
    source_url: str = "",
    base_image: str = "",
) -> dict[str, str]:
    """The labels of an appliance image: the same set as the Dockerfile's LABEL instruction."""
    return {
        "org.opencontainers.image.title": "jwst-reduction-appliance",
        "org.opencontainers.image.description": (
            f"Reproducible JWST imaging reductions from TOML recipes (jwst {jwst}, CRDS {crds_context})"
        ),
        "org.opencontainers.image.version": appliance_version,
        "org.opencontainers.image.revision": vcs_ref,
        "org.opencontainers.image.created": build_date,
        "org.opencontainers.image.source": source_url,
        "org.opencontainers.image.licenses": "BSD-3-Clause",
        "org.opencontainers.image.base.name": base_image,
        LABEL_JWST: jwst,
        LABEL_CRDS_CONTEXT: crds_context,
        LABEL_LOCK_SHA256: lock_sha256,
    }


def read_image_info(environ=os.environ) -> dict | None:
    """What the running image says about itself, or None outside an appliance image.

    Returns ``{"id": ..., "digest": ..., "labels": {...}}``; ``id`` and ``digest``
    are None when the container was not started by the launcher.
    """
    path = Path(environ.get(IMAGE_INFO_ENV) or IMAGE_INFO_PATH)
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        labels = None
    image_id = environ.get(IMAGE_ID_ENV) or None
    if labels is None and image_id is None:
        return None
    return {"id": image_id, "digest": environ.get(IMAGE_DIGEST_ENV) or None, "labels": labels or {}}


def build_args(pin_path: str | os.PathLike | None = None, lock_path: str | os.PathLike | None = None) -> dict[str, str]:
    """The build arguments the Dockerfile requires: the pin, the lock's hash, the appliance version."""
    from appliance import __version__

    pin = load_pin(pin_path)
    return {
        "JWST_VERSION": pin.jwst,
        "CRDS_CONTEXT": pin.crds_context,
        "LOCK_SHA256": lock_sha256(lock_path),
        "APPLIANCE_VERSION": __version__,
    }


def _main(argv: list[str]) -> int:
    """``python -m appliance.pin [build-args|jwst|crds_context|lock_sha256]``: print for shell use."""
    what = argv[0] if argv else "build-args"
    try:
        if what == "build-args":
            print(" ".join(f"--build-arg {k}={v}" for k, v in build_args().items()))
        elif what in ("jwst", "crds_context"):
            print(getattr(load_pin(), what))
        elif what == "lock_sha256":
            print(lock_sha256())
        else:
            print("usage: python -m appliance.pin [build-args|jwst|crds_context|lock_sha256]", file=sys.stderr)
            return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
