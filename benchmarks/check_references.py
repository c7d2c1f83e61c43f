"""Re-run every committed reference table (coldrec_lib/reference_runs/*.json) with the seeds and
threads it records, and diff the per-seed numbers against the file.

    python benchmarks/check_references.py --data-path ../shared/data/ml-100k [metatl ract ...]

Exits 1 when a number moved by more than --tolerance. Ends with one line of JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from coldrec_lib.references import REFERENCE_DIR, Reference, differences, run_reference


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="<experiment>-<dataset> stems (default: all)")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    paths = sorted(REFERENCE_DIR.glob("*.json"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names or p.stem.split("-")[0] in args.names]
    report = {}
    for path in paths:
        committed = Reference.load(path)
        start = time.perf_counter()
        fresh = run_reference(committed.experiment, committed.dataset, committed.seeds,
                              args.data_path, committed.preset, committed.threads)
        problems = differences(committed, fresh, args.tolerance)
        print(f"{path.name}: {'reproduces' if not problems else f'{len(problems)} differences'}"
              f" ({time.perf_counter() - start:.0f} s)")
        for line in problems[:20]:
            print("   ", line)
        report[path.stem] = len(problems)
    print(json.dumps({"benchmark": "check_references", "differences": report,
                      "tolerance": args.tolerance}))
    return int(any(report.values()))


if __name__ == "__main__":
    sys.exit(main())
