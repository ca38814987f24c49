#!/usr/bin/env python3
"""PyTorch side of the side-by-side CPU training-step benchmark.

Builds one model with one fine-tuning method, runs --warmup untimed training steps, then
times --steps steps (forward, cross-entropy, backward, Adam step at lr 1e-3) and prints ONE
JSON line on stdout.  Everything else (library logging) goes to stderr.

    python scripts/peer_bench.py --model cnn --method peft-locon --rank 4 --threads 8
    python scripts/peer_bench.py --model resnet29 --method lycoris-tucker --steps 10
    python scripts/peer_bench.py --check-shapes      # resnet29 forward at 150 and 112, no timing

Run it with the venv at ~/.cache/lora-peer/venv (torch, peft, lycoris-lora).

Models
  cnn       the bench CNN of benches/src/cnn.rs: 3x3 convs 32-32-64-64-128 (padding 1, bias),
            each + BatchNorm2d + ReLU, 2x2 max pool after the 2nd and 4th conv, global average
            pool, Linear(128, 10).  Input [B, 1, size, size]; default batch 64, size 28.
  resnet29  dlib's face-recognition ResNet-29 as face-api ports it (NHWC there, NCHW here):
            7x7/2 valid stem + per-channel scale + ReLU + 3x3/2 valid max pool, residual blocks
            32x3, 64 (down + 3), 128 (down + 2), 256 (down + 2), a last 256 down block, global
            mean, a new Linear(256, 4) head.  Input [B, 3, size, size]; default batch 32, size 150.

Methods
  full            every parameter trains (BatchNorm affine and the resnet scale layers too).
  head            only the head trains.
  peft-locon      peft LoRA (r = alpha = rank, default init) on every Conv2d, + the head.
  lycoris-locon   LyCORIS LoCon (r = alpha = rank) on every Conv2d, + the head.
  lycoris-tucker  the same with use_tucker=True, + the head.
For every method but `full` the base convs, BatchNorm affine parameters and scale layers are
frozen; BatchNorm stays in train mode (batch statistics, running stats updated), as in the
Rust bench.
"""
import argparse
import importlib.metadata
import json
import logging
import os
import statistics
import sys
import time

# Pin LyCORIS to its eager torch ops. On CPU its backend chooser already ends up there (fused
# Triton/TileLang kernels and torch.compile are CUDA-only in its auto mode); this just makes the
# choice explicit so an installed triton never enters the picture.
os.environ.setdefault("LYCORIS_KERNEL_BACKEND", "torch")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MODELS = ("cnn", "resnet29")
METHODS = ("full", "peft-locon", "lycoris-tucker", "lycoris-locon", "head")
DEFAULTS = {"cnn": {"batch": 64, "size": 28}, "resnet29": {"batch": 32, "size": 150}}


# --------------------------------------------------------------------------------------------
# The bench CNN
# --------------------------------------------------------------------------------------------
class ConvBnRelu(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class BenchCnn(nn.Module):
    """3x3 convs 32-32-64-64-128, max pools after the 2nd and 4th, GAP, linear head."""

    WIDTHS = (32, 32, 64, 64, 128)
    POOL_AFTER = (1, 3)  # 0-based conv indices

    def __init__(self, in_channels=1, classes=10):
        super().__init__()
        blocks, cin = [], in_channels
        for w in self.WIDTHS:
            blocks.append(ConvBnRelu(cin, w))
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean(dim=(2, 3)))


# --------------------------------------------------------------------------------------------
# dlib / face-api ResNet-29
# --------------------------------------------------------------------------------------------
class Scale(nn.Module):
    """Per-channel affine y = x * weight + bias (dlib's affine layer in place of batch norm)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConvScale(nn.Module):
    """Conv2d (with bias) followed by a Scale."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
        self.scale = Scale(cout)

    def forward(self, x):
        return self.scale(self.conv(x))


class Residual(nn.Module):
    """conv3x3 -> scale -> relu -> conv3x3 -> scale, + input, relu (same size, same channels)."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvScale(channels, channels, 3, padding=1)
        self.conv2 = ConvScale(channels, channels, 3, padding=1)

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + x)


class ResidualDown(nn.Module):
    """Down block: conv3x3/2 'valid' -> scale -> relu -> conv3x3 pad 1 -> scale; the shortcut is
    a 2x2/2 average pool of the input, zero-padded in channels; when the conv branch comes out
    a row/column smaller than the shortcut (odd sizes) it gets a zero row at the bottom and a
    zero column at the right, as face-api does."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = ConvScale(cin, cout, 3, stride=2, padding=0)
        self.conv2 = ConvScale(cout, cout, 3, padding=1)

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x)))
        short = F.avg_pool2d(x, 2, 2)
        dc = out.shape[1] - short.shape[1]
        if dc > 0:
            short = F.pad(short, (0, 0, 0, 0, 0, dc))
        dh, dw = short.shape[2] - out.shape[2], short.shape[3] - out.shape[3]
        if dh or dw:
            assert 0 <= dh <= 1 and 0 <= dw <= 1, (out.shape, short.shape)
            # face-api pads both dims whenever either differs; with square inputs they agree.
            out = F.pad(out, (0, 1, 0, 1))
        return F.relu(out + short)


class ResNet29(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        # face-api calls the stem `conv32_down`: 7x7 stride 2, no padding, bias, then scale.
        self.conv32_down = ConvScale(3, 32, 7, stride=2, padding=0)
        self.conv32_1 = Residual(32)
        self.conv32_2 = Residual(32)
        self.conv32_3 = Residual(32)
        self.conv64_down = ResidualDown(32, 64)
        self.conv64_1 = Residual(64)
        self.conv64_2 = Residual(64)
        self.conv64_3 = Residual(64)
        self.conv128_down = ResidualDown(64, 128)
        self.conv128_1 = Residual(128)
        self.conv128_2 = Residual(128)
        self.conv256_down = ResidualDown(128, 256)
        self.conv256_1 = Residual(256)
        self.conv256_2 = Residual(256)
        self.conv256_down_out = ResidualDown(256, 256)
        self.head = nn.Linear(256, classes)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv32_down(x)), 3, 2)
        for name in ("conv32_1", "conv32_2", "conv32_3", "conv64_down", "conv64_1", "conv64_2",
                     "conv64_3", "conv128_down", "conv128_1", "conv128_2", "conv256_down",
                     "conv256_1", "conv256_2", "conv256_down_out"):
            x = getattr(self, name)(x)
        return x

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def build_model(name):
    if name == "cnn":
        return BenchCnn(in_channels=1, classes=10), 1, 10
    return ResNet29(classes=4), 3, 4


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------
def conv_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def apply_method(model, method, rank, lycoris_bypass):
    """Set up `method` on `model`; returns (module to run, list of trainable parameters)."""
    head = model.head
    if method == "full":
        model.requires_grad_(True)
        return model, [p for p in model.parameters()]

    model.requires_grad_(False)
    if method == "head":
        head.requires_grad_(True)
        return model, list(head.parameters())

    if method == "peft-locon":
        from peft import LoraConfig, get_peft_model

        # peft's LoRA on a Conv2d: lora_A = Conv2d(in, r, k, stride, padding, no bias),
        # lora_B = Conv2d(r, out, 1x1, no bias), B zero-initialised; y = base(x) + s*B(A(x)).
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=conv_names(model))
        wrapped = get_peft_model(model, config)
        head.requires_grad_(True)  # peft froze it; the head is not a LoRA target
        return wrapped, [p for p in wrapped.parameters() if p.requires_grad]

    # LyCORIS 4.1.3 (read from lycoris/wrapper.py and lycoris/modules/locon.py):
    # * create_lycoris() always applies a named preset (default "full", whose targets are
    #   diffusers/transformers block classes), so it would match nothing here; the network is
    #   built with LycorisNetwork directly after apply_preset({"target_module": ["Conv2d"]}).
    #   The walk then wraps every nn.Conv2d (stems, both convs of every residual block) and
    #   nothing else: the Linear head, BatchNorm and Scale layers stay unwrapped.
    # * algo "locon" and "lora" are the same class (LoConModule).  For a conv with a kernel
    #   other than 1x1 and use_tucker=True it builds lora_down = Conv(in, r, 1x1),
    #   lora_mid = Conv(r, r, kxk, the conv's stride/padding), lora_up = Conv(r, out, 1x1):
    #   a Tucker (CP-style) factorisation; without tucker lora_down = Conv(in, r, kxk, stride,
    #   padding) and lora_up = Conv(r, out, 1x1).  up is zero-initialised, down/mid kaiming.
    #   3x3 and 7x7 convs all get the Tucker form (a 1x1 conv would fall back to plain LoCon).
    # * Forward, default (bypass_mode None -> off for Conv2d): y = conv(x, W) + conv(x, dW),
    #   dW = scale * up @ (mid x) down rebuilt at full kernel size every step, i.e. a second
    #   full-size conv per layer; bypass_mode=True (--lycoris-bypass) runs the low-rank chain
    #   up(mid(down(x))) on the activations instead.
    from lycoris import LycorisNetwork

    for handler in logging.getLogger("LyCORIS").handlers:  # it logs to stdout by default
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    LycorisNetwork.apply_preset({"target_module": ["Conv2d"], "target_name": []})
    network = LycorisNetwork(
        model,
        multiplier=1.0,
        lora_dim=rank,
        conv_lora_dim=rank,
        alpha=rank,
        conv_alpha=rank,
        use_tucker=(method == "lycoris-tucker"),
        network_module="locon",
        bypass_mode=True if lycoris_bypass else None,  # None is its own default
    )
    network.apply_to()
    wrapped = {lora.org_module[0] for lora in network.loras}
    missing = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m not in wrapped]
    assert not missing, f"LyCORIS left convs unwrapped: {missing}"
    if method == "lycoris-tucker":
        assert all(lora.tucker for lora in network.loras), "use_tucker did not build a Tucker"
    network.requires_grad_(True)
    head.requires_grad_(True)
    # Keep the network reachable from the model so .train() reaches it too.
    model.add_module("lycoris", network)
    params = list(network.parameters()) + list(head.parameters())
    return model, params


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------
def version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_shapes():
    """ResNet-29 forwards at 150 and 112 (the odd-size padding paths)."""
    model = ResNet29(classes=4).eval()
    shapes = {}
    with torch.no_grad():
        for size in (150, 112):
            x = torch.randn(2, 3, size, size)
            shapes[size] = [list(model.features(x).shape), list(model(x).shape)]
    return shapes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="cnn")
    ap.add_argument("--method", choices=METHODS, default="full")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--batch", type=int, help="default: 64 for cnn, 32 for resnet29")
    ap.add_argument("--size", type=int, help="image side; default: 28 for cnn, 150 for resnet29")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (interop threads = 1)")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lycoris-bypass", action="store_true",
                    help="LyCORIS bypass_mode=True (low-rank chain on activations) instead of "
                         "its default weight-rebuild forward")
    ap.add_argument("--check-shapes", action="store_true",
                    help="print ResNet-29 feature/output shapes at 150 and 112 and exit")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    if args.check_shapes:
        print(json.dumps({"resnet29_shapes": check_shapes()}))
        return
    if args.steps < 1 or args.warmup < 0 or args.rank < 1:
        ap.error("need --steps >= 1, --warmup >= 0, --rank >= 1")

    batch = args.batch or DEFAULTS[args.model]["batch"]
    size = args.size or DEFAULTS[args.model]["size"]
    torch.manual_seed(args.seed)

    model, in_channels, classes = build_model(args.model)
    runner, params = apply_method(model, args.method, args.rank, args.lycoris_bypass)
    runner.train()
    trainable = sum(p.numel() for p in params)
    assert all(p.requires_grad for p in params)
    frozen_grad = [n for n, p in runner.named_parameters()
                   if p.requires_grad and not any(p is q for q in params)]
    assert not frozen_grad, f"parameters outside the optimizer require grad: {frozen_grad}"

    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.randn(batch, in_channels, size, size)
    y = torch.arange(batch) % classes

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(runner(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1e3)
    if not torch.isfinite(loss):
        print(f"warning: non-finite loss {loss.item()}", file=sys.stderr)

    print(json.dumps({
        "model": args.model,
        "method": args.method,
        "rank": args.rank,
        "batch": batch,
        "size": size,
        "threads": torch.get_num_threads(),
        "step_ms_min": round(min(times), 3),
        "step_ms_median": round(statistics.median(times), 3),
        "step_ms_all": [round(t, 3) for t in times],
        "trainable_params": trainable,
        "lycoris_bypass": args.lycoris_bypass if args.method.startswith("lycoris") else None,
        "final_loss": round(float(loss), 5),
        "torch_version": torch.__version__,
        "peft_version": version("peft"),
        "lycoris_version": version("lycoris-lora"),
    }))


if __name__ == "__main__":
    main()
