#!/usr/bin/env python3
"""The table of scripts/op-profile.sh's raw lines: per conv block and op, the median over
rounds of this project's time and PyTorch's, and their ratio, with the GFLOP/s of the convs
and the matmul; then the sums per op (the matmul left out).

    python3 scripts/op_report.py benches/peer/<date>-<host>-ops.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict

SHAPES = [(1, 32, 28), (32, 32, 28), (32, 64, 14), (64, 64, 14), (64, 128, 7)]
BLOCKS = ["1->32 @ 28", "32->32 @ 28", "32->64 @ 14", "64->64 @ 14", "64->128 @ 7"]


def main(path):
    times = defaultdict(list)
    cpu = None
    batch = 64
    for raw in open(path):
        rec = json.loads(raw)
        if "cpu" in rec:
            cpu = rec["cpu"]
        if "line" not in rec:
            continue
        line = rec["line"]
        times[(line["block"], line["op"], line["which"])].append(line["ms"])
        batch = line.get("batch", 64)
    med = {k: statistics.median(v) for k, v in times.items()}
    if cpu:
        flags = [k for k, v in (cpu.get("flags") or {}).items() if v]
        print(f"CPU: {cpu.get('model_name', '?')} ({', '.join(flags)}; "
              f"{cpu.get('threads_per_core', '?')} thread(s) per core), "
              f"load average before {cpu.get('loadavg')}\n")
    print("| block | op | burn | ours | PyTorch | ours (or burn) / PyTorch | GFLOP/s ours, PyTorch |")
    print("|---|---|---|---|---|---|---|")
    sums = defaultdict(lambda: [0.0, 0.0])
    ops = sorted({(b, o) for (b, o, _) in med}, key=lambda k: (k[0], k[1]))
    for block, op in ops:
        burn = med.get((block, op, "burn"))
        ours = med.get((block, op, "ours"))
        torch = med.get((block, op, "torch"))
        best = ours if ours is not None else burn
        fmt = lambda v: "-" if v is None else f"{v:.2f}"
        ratio = "-" if best is None or not torch else f"{best / torch:.2f}x"
        rate = "-"
        if (op.startswith("conv") or op.startswith("matmul")) and best and torch:
            cin, cout, size = SHAPES[block]
            flops = 2 * batch * size * size * cin * 9 * cout
            rate = f"{flops / best / 1e6:.0f}, {flops / torch / 1e6:.0f}"
        print(f"| {BLOCKS[block]} | {op} | {fmt(burn)} | {fmt(ours)} | {fmt(torch)} | {ratio} | {rate} |")
        if best is not None and torch and not op.startswith("matmul"):
            sums[op][0] += best
            sums[op][1] += torch
    print("\n| op, all blocks | this project | PyTorch | ratio |")
    print("|---|---|---|---|")
    total = [0.0, 0.0]
    for op, (ours, torch) in sorted(sums.items()):
        print(f"| {op} | {ours:.1f} | {torch:.1f} | {ours / torch:.2f}x |")
        total[0] += ours
        total[1] += torch
    print(f"| **all** | {total[0]:.1f} | {total[1]:.1f} | {total[0] / total[1]:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1])
