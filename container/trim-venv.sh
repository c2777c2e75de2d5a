#!/bin/sh
# Shrink the image's venv without changing what imports: run inside the build stage.
#
#   container/trim-venv.sh /opt/venv
#
# Measured (jwst 3.0.0 lock): 931 MB -> about 720 MB.  What goes:
#   - test suites (`tests`/`test` directories, jwst's regtest) - except astropy/tests,
#     which astropy imports at start-up, and astroquery/mast/tests/data, the recorded
#     MAST replies the loopback stand-ins answer with;
#   - BayesicFitting's examples (50 MB of notebooks and data);
#   - pyarrow's C++ headers and Cython sources, and Cython/C sources elsewhere;
#   - pip and setuptools (nothing installs into the image after the build);
#   - botocore's service models except S3's and STS's (28 MB for 400 services;
#     the appliance reads MAST's S3 mirror only).
# The .pyc files stay: without them, and with a read-only root filesystem, every
# start re-compiles in memory (`import jwst.pipeline` 4.7 s instead of 2.2 s).
set -eu
VENV=${1:?usage: trim-venv.sh VENV}
SP=$(echo "$VENV"/lib/python3*/site-packages)
[ -d "$SP" ] || { echo "trim-venv: no site-packages under $VENV" >&2; exit 1; }
before=$(du -sm "$VENV" | cut -f1)

find "$SP" -depth -type d \( -name tests -o -name test \) \
    ! -path "$SP/astropy/tests" ! -path "$SP/astroquery/mast/tests" \
    -exec rm -rf {} +
# astroquery/mast/tests: keep only its data directory
find "$SP/astroquery/mast/tests" -mindepth 1 -maxdepth 1 ! -name data -exec rm -rf {} + 2>/dev/null || true
rm -rf "$SP/jwst/regtest" "$SP/BayesicFitting/examples" "$SP/pyarrow/include" "$SP/pyarrow/src"
find "$SP" \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name '*.hpp' \) \
    ! -path "$SP/numpy/*" -type f -delete
"$VENV/bin/python" -m pip uninstall -q -y pip setuptools 2>/dev/null || true
rm -rf "$SP"/pip "$SP"/pip-*.dist-info "$SP"/setuptools "$SP"/setuptools-*.dist-info "$SP"/_distutils_hack \
       "$SP"/distutils-precedence.pth "$VENV"/bin/pip "$VENV"/bin/pip3*
if [ -d "$SP/botocore/data" ]; then
    find "$SP/botocore/data" -mindepth 1 -maxdepth 1 -type d ! -name s3 ! -name sts -exec rm -rf {} +
fi
# Stale bytecode of removed modules
find "$SP" -type d -name __pycache__ -empty -delete

echo "trim-venv: $VENV ${before} MB -> $(du -sm "$VENV" | cut -f1) MB" >&2
