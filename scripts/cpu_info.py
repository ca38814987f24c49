#!/usr/bin/env python3
"""Print one JSON line describing this machine's CPU (stdlib only).

Fields: model_name, vendor, flags (the ISA extensions that matter for CPU
training kernels: true/false each), logical_cpus, threads_per_core, cores_per_socket,
sockets, loadavg (1, 5, 15 min).  Linux first (/proc/cpuinfo, lscpu); elsewhere the
fields it cannot read are null.
"""
import json
import os
import platform
import shutil
import subprocess

FLAGS_OF_INTEREST = ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "avx_vnni"]


def read_cpuinfo():
    """The first processor block of /proc/cpuinfo as a dict, plus the processor count."""
    first, count = {}, 0
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return first, 0
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        if "processor" in fields:
            count += 1
            if not first:
                first = fields
    return first, count


def read_lscpu():
    """lscpu's `Key: value` lines as a dict (empty when lscpu is missing or fails)."""
    if not shutil.which("lscpu"):
        return {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                             env=dict(os.environ, LC_ALL="C")).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for line in out.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def as_int(value):
    try:
        return int(str(value).split()[0])
    except (TypeError, ValueError, IndexError):
        return None


def main():
    cpuinfo, nproc_cpuinfo = read_cpuinfo()
    lscpu = read_lscpu()

    model = lscpu.get("Model name") or cpuinfo.get("model name") or platform.processor() or None
    vendor = lscpu.get("Vendor ID") or cpuinfo.get("vendor_id") or None
    flag_text = lscpu.get("Flags") or cpuinfo.get("flags") or ""
    present = set(flag_text.split())
    flags = {name: name in present for name in FLAGS_OF_INTEREST} if present else \
        {name: None for name in FLAGS_OF_INTEREST}

    logical = os.cpu_count() or nproc_cpuinfo or None
    threads_per_core = as_int(lscpu.get("Thread(s) per core"))
    if threads_per_core is None:
        # siblings = logical CPUs per package, cpu cores = physical cores per package.
        siblings, cores = as_int(cpuinfo.get("siblings")), as_int(cpuinfo.get("cpu cores"))
        if siblings and cores:
            threads_per_core = siblings // cores
    cores_per_socket = as_int(lscpu.get("Core(s) per socket")) or as_int(cpuinfo.get("cpu cores"))
    sockets = as_int(lscpu.get("Socket(s)"))

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None

    print(json.dumps({
        "model_name": model,
        "vendor": vendor,
        "flags": flags,
        "logical_cpus": logical,
        "usable_cpus": affinity,
        "threads_per_core": threads_per_core,
        "cores_per_socket": cores_per_socket,
        "sockets": sockets,
        "loadavg": load,
    }))


if __name__ == "__main__":
    main()
