"""``run.py docker build`` and ``run.py docker run RECIPE``: the pinned image, and a recipe run inside it."""

from __future__ import annotations

from pathlib import Path

from appliance.image import DEFAULT_BASE_IMAGE, IMAGE_REPO, LOCAL_BASE_IMAGE

def add_parser(subparsers) -> None:
    """Add ``docker build`` and ``docker run`` to the CLI's sub-commands."""
    parser = subparsers.add_parser("docker", help="build the appliance image, or run a recipe in it")
    sub = parser.add_subparsers(dest="docker_command", required=True, metavar="{build,run}")

    p = sub.add_parser("build", help="build the appliance image, hermetic: locked wheels fetched on the host first")
    p.add_argument("--tag", default=None, help=f"image tag (default {IMAGE_REPO}:<jwst version of the release>)")
    p.add_argument("--release", default=None, metavar="VERSION",
                   help="build the image of this supported jwst release (`run.py releases` lists them; "
                        "default: container/pin.toml's)")
    p.add_argument("--base-image", default=None,
                   help=f"base image (default $APPLIANCE_BASE_IMAGE or {DEFAULT_BASE_IMAGE}; pin it by digest, "
                        f"or make {LOCAL_BASE_IMAGE} with container/make-base-image.sh)")
    p.add_argument("--wheelhouse", type=Path, default=None,
                   help="a complete directory of the locked wheels (default container/wheels, which is filled "
                        "on the host, hash-checked, when a wheel is missing)")
    p.add_argument("--online", action="store_true",
                   help="let pip inside the build download the locked wheels from PyPI instead (needs network "
                        "in the build, and the proxy's CA where TLS is intercepted)")
    p.add_argument("--crds-cache", type=Path, default=None,
                   help="a CRDS cache directory to carry at /opt/crds instead of the synthetic context")
    p.add_argument("--crds-sync", action="store_true",
                   help="sync the pinned context's mappings from CRDS during the build (needs network)")
    p.add_argument("--network", default=None,
                   help="network of the build's RUN steps (default: none with a complete wheelhouse)")
    p.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the result, not the build log")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="run a recipe inside the appliance image")
    p.add_argument("recipe", type=Path)
    p.add_argument("--workdir", type=Path, default=None, help="host directory for the products (default work/<recipe>)")
    p.add_argument("--image", default=None, help=f"image (default {IMAGE_REPO}:<jwst version of the release>)")
    p.add_argument("--release", default=None, metavar="VERSION",
                   help="run in the image of this supported jwst release (default: container/pin.toml's)")
    p.add_argument("--network", choices=("auto", "none", "bridge", "host"), default="auto",
                   help="auto: none when the recipe's inputs are local or simulated, bridge for MAST")
    p.add_argument("--user", default=None, help="UID:GID inside the container (default: yours)")
    p.add_argument("--env", "-e", action="append", default=[], metavar="NAME[=VALUE]",
                   help="pass one more environment variable (never a secret)")
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="run even if the image's lock or jwst/CRDS pin differ from the recipe's or this checkout's")
    p.add_argument("--run-arg", dest="run_args", action="append", default=[], metavar="ARG",
                   help="one more argument for `run.py run` inside the container, e.g. --run-arg=--jobs=2")
    p.set_defaults(func=cmd_run)


def cmd_build(args) -> int:
    from appliance.image import BuildOptions, build

    options = BuildOptions(tag=args.tag, base_image=args.base_image, wheelhouse=args.wheelhouse,
                           crds_cache=args.crds_cache, crds_sync=args.crds_sync, network=args.network,
                           online=args.online, no_cache=args.no_cache, quiet=args.quiet, release=args.release)
    plan, image, seconds = build(options)
    print(f"{plan.tag} {image.id} {image.attrs.get('Size', 0) / 1e6:.0f} MB in {seconds:.0f} s")
    return 0


def cmd_run(args) -> int:
    from appliance.launch import RunOptions, run_recipe

    return run_recipe(RunOptions(recipe=args.recipe, workdir=args.workdir, image=args.image, network=args.network,
                                 user=args.user, env=tuple(args.env), allow_env_mismatch=args.allow_env_mismatch,
                                 run_args=tuple(args.run_args), release=args.release))
