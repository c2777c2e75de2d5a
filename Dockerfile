# The JWST reduction appliance: a pinned jwst release, its hash-locked Python
# dependencies, a CRDS cache, and run.py as the entry point.
#
#   python run.py docker build                 # the usual way: passes the pin and lock as build args
#   docker build $(python -m appliance.pin build-args) -t jwst-appliance .     # the same, by hand
#   docker run --rm -v "$PWD/work:/work" jwst-appliance:3.0.0 recipes/demo.toml
#
# Works with the classic builder and BuildKit alike (no RUN --mount, no syntax
# line), without network inside the build: pip installs the locked wheels of
# container/wheels/ (filled on the host by run.py docker build or
# container/fetch-wheels.sh) with --no-index; --build-arg WHEELS=online downloads
# the same hashes from PyPI instead.  See docs/container.md.
#
# The pin (container/pin.toml) is the only place that names the jwst release
# and its CRDS context: the build arguments below carry its values, and the
# build fails if they disagree with the file or with what the lock installed.

# A slim Debian 12 image with Python 3.11.  Pin it by digest for a reproducible
# build, e.g. --build-arg BASE_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
# (`docker inspect --format '{{index .RepoDigests 0}}' python:3.11-slim-bookworm`),
# or use the image container/make-base-image.sh makes from Debian packages
# (appliance-base:bookworm) on machines that cannot pull.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- dependencies
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONFIG_FILE=/dev/null
COPY container/trim-venv.sh /usr/local/bin/trim-venv
# The lock, and the wheelhouse (`run.py docker build` fills container/wheels/ on the
# host first).  WHEELS=offline (the default) installs from it alone, with --no-index,
# so the build needs no network; WHEELS=online lets pip download the same hashes.
ARG WHEELS=offline
COPY container/requirements.lock container/wheel[s] /wheels/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    if [ "${WHEELS}" = online ]; then source=""; \
    elif ls /wheels/*.whl >/dev/null 2>&1; then source="--no-index --find-links /wheels"; \
    else echo "container/wheels/ is empty: build with 'python run.py docker build' (it fetches the wheels on the host) or pass --build-arg WHEELS=online" >&2; exit 1; fi; \
    echo "pip install --require-hashes --no-deps ${source:-(from PyPI)}"; \
    /opt/venv/bin/pip install -q --require-hashes --no-deps $source -r /wheels/requirements.lock; \
    /opt/venv/bin/pip check; \
    trim-venv /opt/venv

# ------------------------------------------------------------------- CRDS cache
# The synthetic context of the simulated observation (deterministic), or a real
# cache: CRDS_CACHE_DIR names a directory in the build context to copy instead
# (the launcher's --crds-cache puts a host directory there), and CRDS_SYNC=1 with
# network syncs the pinned context's mappings from CRDS_SERVER_URL.
FROM deps AS crds
ARG CRDS_CONTEXT
# A directory of the build context to copy in.  The default is a small file, meaning "none"
# (an empty value would make COPY take the whole context, and miss the cache at every edit).
ARG CRDS_CACHE_DIR=container/pin.toml
ARG CRDS_SYNC=
ARG CRDS_SERVER_URL=https://jwst-crds.stsci.edu
# Only what the synthetic cache is built from (appliance.simulate and what it imports),
# so code changes elsewhere keep this layer.
COPY appliance/__init__.py appliance/errors.py appliance/files.py appliance/crdsenv.py appliance/compat.py /opt/appliance/appliance/
COPY appliance/simulate /opt/appliance/appliance/simulate/
COPY ${CRDS_CACHE_DIR} /crds-in/
RUN set -eu; rm -f /crds-in/pin.toml; \
    if [ -f /crds-in/config/jwst/server_config ]; then \
        echo "CRDS cache: copied from ${CRDS_CACHE_DIR}"; mv /crds-in /opt/crds; \
    elif [ "${CRDS_SYNC}" = 1 ]; then \
        echo "CRDS cache: syncing ${CRDS_CONTEXT} from ${CRDS_SERVER_URL}"; \
        CRDS_PATH=/opt/crds CRDS_SERVER_URL="${CRDS_SERVER_URL}" CRDS_MODE=remote \
            /opt/venv/bin/python -m crds.sync --contexts "${CRDS_CONTEXT}"; \
    else \
        echo "CRDS cache: the synthetic context of the simulated observation"; \
        cd /opt/appliance && /opt/venv/bin/python -c "from appliance.simulate import build_crds_cache; build_crds_cache('/opt/crds')"; \
    fi; \
    chmod -R a+rX,go-w /opt/crds

# ------------------------------------------------------------------- the image
FROM ${BASE_IMAGE}
# A real user: jwst calls getpass.getuser() at import time, which fails for a uid
# with no passwd entry (the launcher also sets USER for other uids).
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin appliance \
    && mkdir -p /work /etc/appliance && chown appliance:appliance /work
COPY --from=deps /opt/venv /opt/venv
COPY --from=crds /opt/crds /opt/crds

ARG CRDS_CONTEXT
# HOME in /tmp: with a read-only root filesystem the launcher mounts a tmpfs there
# (astropy and matplotlib write their configuration directories under HOME).
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    HOME=/tmp \
    USER=appliance \
    LOGNAME=appliance \
    MPLCONFIGDIR=/tmp/.matplotlib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CRDS_PATH=/opt/crds \
    CRDS_READONLY_CACHE=1 \
    CRDS_MODE=local \
    CRDS_SERVER_URL=https://crds-offline.invalid \
    CRDS_CONTEXT=${CRDS_CONTEXT} \
    APPLIANCE_IMAGE_INFO=/etc/appliance/image.json \
    APPLIANCE_WORKDIR_ROOT=/work

# ------------------------------------------------------------------- code layer
# Everything above is cached while only code changes: a code-only rebuild takes seconds.
COPY run.py pyproject.toml /opt/appliance/
COPY container/pin.toml container/requirements.lock container/finalize-image.py /opt/appliance/container/
COPY recipes /opt/appliance/recipes/
COPY appliance /opt/appliance/appliance/

ARG BASE_IMAGE
ARG JWST_VERSION
ARG LOCK_SHA256
ARG APPLIANCE_VERSION
ARG VCS_REF=
ARG BUILD_DATE=
ARG SOURCE_URL=
# Checks the build arguments against pin.toml, the lock and the installed jwst,
# writes /etc/appliance/image.json (the labels below) and compiles the code.
RUN BASE_IMAGE="${BASE_IMAGE}" JWST_VERSION="${JWST_VERSION}" CRDS_CONTEXT="${CRDS_CONTEXT}" \
    LOCK_SHA256="${LOCK_SHA256}" APPLIANCE_VERSION="${APPLIANCE_VERSION}" VCS_REF="${VCS_REF}" \
    BUILD_DATE="${BUILD_DATE}" SOURCE_URL="${SOURCE_URL}" \
    python -I /opt/appliance/container/finalize-image.py /etc/appliance/image.json

LABEL org.opencontainers.image.title="jwst-reduction-appliance" \
      org.opencontainers.image.description="Reproducible JWST imaging reductions from TOML recipes (jwst ${JWST_VERSION}, CRDS ${CRDS_CONTEXT})" \
      org.opencontainers.image.version="${APPLIANCE_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.jwst-appliance.jwst.version="${JWST_VERSION}" \
      org.jwst-appliance.crds.context="${CRDS_CONTEXT}" \
      org.jwst-appliance.lock.sha256="${LOCK_SHA256}"

USER appliance
WORKDIR /work
# docker stop sends SIGINT: the appliance stops as on Ctrl-C (Python as PID 1 ignores SIGTERM)
STOPSIGNAL SIGINT
ENTRYPOINT ["python", "/opt/appliance/run.py"]
CMD ["--help"]
