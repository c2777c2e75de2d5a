"""The Docker engine, through the Docker SDK: connect (or one line saying why not) and find images."""

from __future__ import annotations

import os

from appliance.errors import UserError, short_reason

def connect(timeout: float = 15):
    """A Docker client whose daemon answers, or a one-line :class:`UserError`."""
    try:
        import docker
    except ImportError:
        raise UserError("the `docker` Python package is missing (it is in container/requirements.lock)") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, a malformed DOCKER_HOST...
        raise UserError(
            f"no Docker daemon answers at {where} ({short_reason(exc)}); start one "
            f"(container/ensure-docker.sh) or point DOCKER_HOST at one"
        ) from None
    client.api.timeout = None  # builds and reductions may be silent for long stretches
    return client


def get_image(client, name: str, how_to_build: str = ""):
    """The image ``name``, or a one-line UserError saying how to make it (``how_to_build``)."""
    import docker

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        how = how_to_build or f"python run.py docker build --tag {name}"
        raise UserError(f"image {name} is not in the local Docker engine: build it with `{how}`") from None
    except docker.errors.APIError as exc:
        raise UserError(f"image {name}: {exc.explanation or exc}") from None


def image_digest(image) -> str:
    """The registry digest (``repo@sha256:...``) of an image, or "" for one built here."""
    digests = image.attrs.get("RepoDigests") or []
    return digests[0] if digests else ""
