"""Run the real jwst stages on a simulated observation (a helper for tests/test_simulate_e2e.py).

Usage: python tests/simulate_pipeline_run.py UNCAL_DIR OUT_DIR
Run it with the CRDS environment of ``appliance.simulate.crds_environment`` already set (the
variables must exist before jwst is imported, hence a separate process). Writes
OUT_DIR/summary.json: step statuses and reference keywords per product.
"""

import json
import sys
import time
from pathlib import Path


def main(uncal_dir: str, out_dir: str) -> None:
    from astropy.io import fits
    from jwst.associations import asn_from_list
    from jwst.associations.lib.rules_level3_base import DMS_Level3_Base
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline, Image3Pipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"stage1": {}, "stage2": {}, "stage3": {}, "seconds": {}}
    uncals = sorted(Path(uncal_dir).glob("*_uncal.fits"))

    t0 = time.time()
    for f in uncals:
        Detector1Pipeline.call(str(f), output_dir=str(out), save_results=True)
    summary["seconds"]["detector1"] = time.time() - t0

    t0 = time.time()
    for rate in sorted(out.glob("*_rate.fits")):
        Image2Pipeline.call(str(rate), output_dir=str(out), save_results=True)
    summary["seconds"]["image2"] = time.time() - t0

    t0 = time.time()
    by_filter: dict[str, list[str]] = {}
    for cal in sorted(out.glob("*_cal.fits")):
        by_filter.setdefault(fits.getval(cal, "FILTER"), []).append(cal.name)
    for filt, members in sorted(by_filter.items()):
        product = f"sim_{filt.lower()}"
        asn = asn_from_list.asn_from_list(members, rule=DMS_Level3_Base, product_name=product)
        asn_path = out / f"{product}_asn.json"  # beside its members: paths resolve relative to it
        _, text = asn.dump(format="json")
        asn_path.write_text(text)
        Image3Pipeline.call(str(asn_path), output_dir=str(out), save_results=True)
    summary["seconds"]["image3"] = time.time() - t0

    def keywords(path: Path) -> dict:
        header = fits.getheader(path)
        return {k: header[k] for k in header if k.startswith(("S_", "R_")) or k in ("CRDS_CTX",)}

    for stage, pattern in (("stage1", "*_rate.fits"), ("stage2", "*_cal.fits"), ("stage3", "*_i2d.fits")):
        for path in sorted(out.glob(pattern)):
            summary[stage][path.name] = keywords(path)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:3])
