#!/usr/bin/env python3
"""Print the median throughput of every criterion benchmark under target/criterion.

Usage: python3 scripts/bench-table.py [GROUP_PREFIX]
Reads criterion's own estimates (median time per iteration) and the declared throughput.
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
prefix = sys.argv[1] if len(sys.argv) > 1 else ""
rows = []
for bench in root.rglob("new/benchmark.json"):
    meta = json.loads(bench.read_text())
    est = json.loads((bench.parent / "estimates.json").read_text())
    name = meta.get("full_id") or meta.get("title")
    if not name.startswith(prefix):
        continue
    median_ns = est["median"]["point_estimate"]
    tp = meta.get("throughput") or {}
    nbytes = tp.get("Bytes") or tp.get("BytesDecimal")
    if nbytes:
        gib = nbytes / (median_ns * 1e-9) / (1 << 30)
        rows.append((name, f"{gib:8.3f} GiB/s", f"{median_ns / 1e6:9.3f} ms"))
    else:
        rows.append((name, "", f"{median_ns:9.1f} ns"))
for r in sorted(rows):
    print(f"{r[0]:<45} {r[1]} {r[2]}")
