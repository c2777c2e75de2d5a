"""Download throughput and cached re-fetch time of the MAST provider, on a loopback MAST.

Goals: downloading with the appliance (``.part`` file, sha256 while the
bytes arrive, size check, rename) runs at >= 0.9x the throughput of a
plain ``requests`` download of the same files (stream to a file, no hash);
a second fetch with every file already here takes <= 1 s for 50 files.

Both downloads talk to the same loopback server (tests/loopback), alternate
round by round and keep their best round.  An unpaced loopback link runs at
memory speed (~1 GB/s), where hashing (~1.8 GB/s on one core) is a large
share of the work; ``--link-mbps 100`` paces the server like a fast real
link to MAST, where it is not.  The cached re-fetch is timed in-process
(query + verifying every file against its recorded size and sha256) and as
a whole ``run.py fetch`` command (with a loopback CRDS server too), whose
time includes Python start-up and imports.

    .venv/bin/python bench/download.py [--files 50] [--mb 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from appliance.recipe import parse_recipe  # noqa: E402
from appliance.sources import mast  # noqa: E402
from loopback.crds_server import CrdsServer, crds_url  # noqa: E402
from loopback.data import fake_exposure  # noqa: E402
from loopback.mast_server import MastServer  # noqa: E402

RECIPE = """schema = 1
[recipe]
name = "bench-download"
[environment]
jwst = "3.0.0"
crds_context = "jwst_9000.pmap"
[inputs.mast]
program = "02732"
observation = "002"
instrument = "MIRI/IMAGE"
filters = ["F770W"]
product = "uncal"
"""


def plain_requests(urls: list[str], out: Path) -> float:
    """The baseline: what a script would do with requests alone."""
    import requests

    out.mkdir(parents=True)
    session = requests.Session()
    t0 = time.perf_counter()
    for url in urls:
        name = url.rsplit("/", 1)[-1]
        with session.get(url, stream=True) as r, open(out / name, "wb") as fh:
            r.raise_for_status()
            for chunk in r.iter_content(chunk_size=1 << 20):
                fh.write(chunk)
    return time.perf_counter() - t0


def appliance(client: mast.MastClient, products, out: Path) -> float:
    t0 = time.perf_counter()
    for p in products:
        client.download(p, out, f"uncal/{p.name}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--mb", type=float, default=4.0, help="size of each file in MB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--link-mbps", type=float, default=None, help="pace each download to this many MB/s")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-command re-fetch timing")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        archive = tmp / "archive"
        for i in range(1, args.files + 1):
            fake_exposure(archive, exposure=i, nbytes=int(args.mb * 1e6), seed=i)
        total = sum(p.stat().st_size for p in archive.iterdir())
        server = MastServer(archive).start()
        server.rate = args.link_mbps * 1e6 if args.link_mbps else None
        recipe_path = tmp / "bench.toml"
        recipe_path.write_text(RECIPE)
        recipe = parse_recipe(RECIPE, recipe_path)
        client = mast.MastClient(server.url, "")
        products = client.products(recipe.mast)
        assert len(products) == args.files
        urls = [client.download_url(p.uri) for p in products]

        plain, ours = [], []
        for r in range(args.rounds):  # alternate which goes first, so neither always meets the other's writeback
            for which in (("plain", "ours") if r % 2 == 0 else ("ours", "plain")):
                if which == "plain":
                    plain.append(plain_requests(urls, tmp / f"plain{r}"))
                    shutil.rmtree(tmp / f"plain{r}")
                else:
                    ours.append(appliance(client, products, tmp / f"ours{r}"))
                    if r < args.rounds - 1:
                        shutil.rmtree(tmp / f"ours{r}")
        best_plain, best_ours = min(plain), min(ours)
        mb = total / 1e6
        link = f"paced to {args.link_mbps:g} MB/s" if args.link_mbps else "unpaced"
        print(f"files            {args.files} x {args.mb:g} MB = {mb:.0f} MB on a loopback MAST, {link} ({args.rounds} rounds, best)")
        print(f"plain requests   {best_plain:6.2f} s  {mb / best_plain:7.0f} MB/s")
        print(f"appliance        {best_ours:6.2f} s  {mb / best_ours:7.0f} MB/s  (.part, sha256, size check, rename)")
        print(f"ratio            {best_plain / best_ours:6.2f}x  (goal >= 0.90)")

        # a second fetch with every file here: query + verify, nothing downloaded
        workdir = tmp / f"ours{args.rounds - 1}"
        mast.fetch_inputs(recipe, workdir, client=client)  # writes the fetch record
        before = len(server.paths("GET"))
        t0 = time.perf_counter()
        again = mast.fetch_inputs(recipe, workdir, client=mast.MastClient(server.url, ""))
        cached = time.perf_counter() - t0
        assert not any(f.downloaded for f in again)
        assert not [p for p in server.paths("GET")[before:] if "Download" in p]
        print(f"cached re-fetch  {cached:6.2f} s  in-process: query + re-hash {args.files} files (goal <= 1 s)")
        t0 = time.perf_counter()
        run = mast.materialise(recipe, workdir)
        print(f"run's inputs     {time.perf_counter() - t0:6.2f} s  materialise() from the fetch record, no network ({len(run)} files)")

        if not args.no_cli:
            from appliance.simulate import build_crds_cache

            cache = build_crds_cache(tmp / "served_cache")
            crds = CrdsServer(cache, "jwst_9000.pmap").start()
            env = {**os.environ, "MAST_BASE_URL": server.url, "CRDS_SERVER_URL": crds_url(crds),
                   "CRDS_PATH": str(tmp / "crds_cache"), "CRDS_CONTEXT": "jwst_9000.pmap"}
            cmd = [sys.executable, str(ROOT / "run.py"), "fetch", str(recipe_path), "--workdir", str(workdir)]
            first = subprocess.run(cmd, env=env, capture_output=True, text=True)
            assert first.returncode == 0, first.stderr
            t0 = time.perf_counter()
            second = subprocess.run(cmd, env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - t0
            assert second.returncode == 0 and f"0 downloaded (0.0 MB), {args.files} already here" in second.stdout, second
            print(f"cached fetch CLI {elapsed:6.2f} s  whole `run.py fetch` incl. Python start-up, imports, CRDS check")
            crds.stop()
        server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
