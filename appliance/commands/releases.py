"""``run.py releases``: the supported jwst releases, their CRDS contexts and locks, and which images are built."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("releases", help="list the supported jwst releases and which of their images are built")
    p.set_defaults(func=cmd_releases)


def cmd_releases(args) -> int:
    from appliance.errors import UserError
    from appliance.pin import lock_pins, lock_sha256
    from appliance.releases import all_releases

    releases = all_releases()
    try:
        from appliance.engine import connect

        client, why_not = connect(timeout=5), ""
    except UserError as exc:
        client, why_not = None, str(exc)
    for release in releases:
        pin = release.pin
        if release.lock_path.is_file():
            lock = f"lock {lock_sha256(release.lock_path)[:12]}… ({len(lock_pins(release.lock_path))} distributions"
            lock += f", nothing newer than {pin.exclude_newer})" if pin.exclude_newer else ")"
        else:
            lock = "lock missing (container/lock.sh --release " + release.version + ")"
        print(f"jwst {release.version}{' (default)' if release.default else ''}  CRDS {pin.crds_context}  {lock}")
        if client is not None:
            from appliance.image import image_state

            print(f"    image {image_state(client, release)}")
    if client is None:
        print(f"images: unknown ({why_not})")
    return 0
