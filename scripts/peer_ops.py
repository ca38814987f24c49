#!/usr/bin/env python3
"""PyTorch side of the op profile (benches/src/bin/ops.rs): the bench CNN's conv forward,
input gradient and weight gradient, one matmul of the conv's FLOPs, and batch norm, max pool and ReLU forward + backward with a
random cotangent, per conv block, each the median of --runs after one warm-up. One JSON line per
op on stdout.

    python scripts/peer_ops.py --threads 2 [--batch 64] [--runs 7]
"""
import argparse
import json
import statistics
import time

import torch

BLOCKS = [(1, 32, 28, False), (32, 32, 28, True), (32, 64, 14, False), (64, 64, 14, True),
          (64, 128, 7, False)]


def median_ms(runs, f):
    f()
    times = []
    for _ in range(max(runs, 1)):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--runs", type=int, default=7)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b = a.batch

    def out(block, op, ms):
        print(json.dumps({"impl": "torch", "batch": b, "block": block, "op": op, "which": "torch", "ms": ms}))

    for i, (cin, cout, s, pool) in enumerate(BLOCKS):
        x = torch.randn(b, cin, s, s)
        w = torch.randn(cout, cin, 3, 3)
        dy = torch.randn(b, cout, s, s)
        with torch.no_grad():
            out(i, "conv forward", median_ms(a.runs, lambda: torch.nn.functional.conv2d(x, w, padding=1)))

        def grad(mask):
            return lambda: torch.ops.aten.convolution_backward(
                dy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
        out(i, "conv input gradient", median_ms(a.runs, grad([True, False, False])))
        out(i, "conv weight gradient", median_ms(a.runs, grad([False, True, False])))

        a_ = torch.randn(b * s * s, cin * 9)
        m_ = torch.randn(cin * 9, cout)
        out(i, "matmul of the conv's FLOPs", median_ms(a.runs, lambda: a_ @ m_))

        y = torch.randn(b, cout, s, s)
        cot = torch.randn(b, cout, s, s)
        norm = torch.nn.BatchNorm2d(cout)

        def fb(f, c):
            def run():
                yi = y.clone().requires_grad_()
                (f(yi) * c).sum().backward()
            return run
        out(i, "batch norm", median_ms(a.runs, fb(norm, cot)))
        out(i, "relu", median_ms(a.runs, fb(torch.relu, cot)))
        if pool:
            pcot = torch.randn(b, cout, s // 2, s // 2)
            out(i, "max pool", median_ms(a.runs, fb(lambda t: torch.nn.functional.max_pool2d(t, 2), pcot)))


if __name__ == "__main__":
    main()
