"""Last step of the image build: check the build arguments, write the image's self-description.

    python -I /opt/appliance/container/finalize-image.py /etc/appliance/image.json

Run by the Dockerfile as root, with the build arguments in the environment.  It

1. checks JWST_VERSION and CRDS_CONTEXT against container/pin.toml, LOCK_SHA256
   against container/requirements.lock, and the installed jwst against the pin,
   so an image can never carry labels that disagree with what it holds;
2. writes the image labels (the same set the Dockerfile's LABEL instruction
   sets) as JSON to the given path, which the manifest reads at run time;
3. byte-compiles the appliance code (checked-hash .pyc files: valid whatever
   the files' modification times, and the root filesystem may be read-only).

Any disagreement is one line on stderr and a failed build.
"""

import compileall
import json
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance import __version__ as appliance_version  # noqa: E402
from appliance.errors import UserError  # noqa: E402
from appliance.pin import image_labels, load_pin, lock_sha256  # noqa: E402


def fail(message: str) -> None:
    print(f"finalize-image: {message}", file=sys.stderr)
    sys.exit(1)


def main(out: Path) -> None:
    env = os.environ
    try:
        pin = load_pin(ROOT / "container" / "pin.toml")
        lock = lock_sha256(ROOT / "container" / "requirements.lock")
    except UserError as exc:
        fail(str(exc))
    how = "build with `python run.py docker build` or pass $(python -m appliance.pin build-args)"
    given = {
        "JWST_VERSION": (env.get("JWST_VERSION", ""), pin.jwst),
        "CRDS_CONTEXT": (env.get("CRDS_CONTEXT", ""), pin.crds_context),
        "LOCK_SHA256": (env.get("LOCK_SHA256", ""), lock),
        "APPLIANCE_VERSION": (env.get("APPLIANCE_VERSION", ""), appliance_version),
    }
    for name, (value, expected) in given.items():
        if not value:
            fail(f"build argument {name} is missing; {how}")
        if value != expected:
            fail(f"build argument {name}={value} disagrees with the source ({expected}); {how}")
    try:
        installed = version("jwst")
    except PackageNotFoundError:
        fail("jwst is not installed in the image's venv")
    if installed != pin.jwst:
        fail(f"the lock installed jwst {installed}, container/pin.toml pins {pin.jwst}: regenerate the lock")

    labels = image_labels(
        jwst=pin.jwst,
        crds_context=pin.crds_context,
        lock_sha256=lock,
        appliance_version=appliance_version,
        vcs_ref=env.get("VCS_REF", ""),
        build_date=env.get("BUILD_DATE", ""),
        source_url=env.get("SOURCE_URL", ""),
        base_image=env.get("BASE_IMAGE", ""),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(labels, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    out.chmod(0o644)

    import py_compile

    ok = compileall.compile_dir(
        str(ROOT / "appliance"), quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
    )
    if not ok:
        fail("the appliance code does not compile")
    print(f"finalize-image: jwst {pin.jwst}, CRDS {pin.crds_context}, lock {lock[:12]}…, labels in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/etc/appliance/image.json"))
