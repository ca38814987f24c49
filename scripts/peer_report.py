#!/usr/bin/env python3
"""Turn one scripts/peer-bench.sh run (a .jsonl file) into a markdown section of
benches/REPORT.md: this project's step against PyTorch's, with ratios, for one CPU.

    python3 scripts/peer_report.py benches/peer/DATE-HOST.jsonl benches/REPORT.md

The section is headed by the CPU model and ISA; a section for the same CPU model and date is
replaced, any other is kept, so the report holds one section per CPU met. Each time is the median
over rounds of the run's median step; ratios are taken within this one run.
"""
import json
import os
import statistics
import sys
from collections import defaultdict

BEGIN = "<!-- peer-bench: {key} -->"
END = "<!-- /peer-bench: {key} -->"


def load(path):
    cpu, runs = None, defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "cpu" in row:
                cpu = row["cpu"]
            elif "case" in row:
                runs[(row["case"], row["side"])].append(row["result"])
    return cpu, runs


def ms(runs, case, side):
    results = runs.get((case, side))
    if not results:
        return None
    return statistics.median(r["step_ms_median"] for r in results)


def fmt(v):
    return "—" if v is None else f"{v:,.0f}"


def ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}x"


def section(path, cpu, runs):
    models = sorted({case.split()[0] for case, _ in runs}, key=lambda m: m != "cnn")
    flags = ", ".join(k for k, v in (cpu or {}).get("flags", {}).items() if v) or "unknown"
    any_result = next(iter(runs.values()))[0]
    threads = any_result.get("rayon_threads") or "?"
    rounds = max(len(v) for v in runs.values())
    date = os.path.basename(path)[:10]
    name = (cpu or {}).get("model_name", "unknown CPU")
    out = [
        f"### {name} ({flags}; {cpu.get('threads_per_core', '?')} thread(s) per core), {date}",
        "",
        f"{threads} threads on both sides, {rounds} alternating round(s), load average before "
        f"{cpu.get('loadavg')}. Raw lines: `{path}`. Each time is the median over rounds of one "
        "run's median step (ms); ratios are this project over PyTorch, from this run alone.",
        "",
    ]
    for model in models:
        def t(case, side):
            return ms(runs, f"{model} {case}", side)

        full, full_t = t("full", "burn"), t("full", "torch")
        head, head_t = t("head", "burn"), t("head", "torch")
        forms = {}
        for kind in ["locon-r4", "tucker2-r4", "cp-r4"]:
            forms[kind] = {
                f: ms(runs, f"{model} {kind} ours-{f}", "burn") for f in ["weight", "bypass", "auto"]
            }
        peft = t("locon-r4 peft", "torch")
        lyco = t("tucker2-r4 lycoris", "torch")
        lyco_b = t("tucker2-r4 lycoris-bypass", "torch")
        best = {k: min((v for v in f.values() if v is not None), default=None) for k, f in forms.items()}
        best_any = min((v for v in best.values() if v is not None), default=None)
        out += [
            f"**{model}** (batch {any_batch(runs, model)})",
            "",
            "| step | this project (weight / bypass / auto) | PyTorch | ratio |",
            "|---|---|---|---|",
            f"| full fine-tuning | {fmt(full)} | {fmt(full_t)} | {ratio(full, full_t)} |",
            f"| head only | {fmt(head)} | {fmt(head_t)} | {ratio(head, head_t)} |",
        ]
        peers = {"locon-r4": [("PEFT LoCon", peft)],
                 "tucker2-r4": [("LyCORIS Tucker-2", lyco), ("LyCORIS Tucker-2, bypass_mode", lyco_b)],
                 "cp-r4": []}
        for kind, label in [("locon-r4", "LoCon r4"), ("tucker2-r4", "Tucker-2 r4"), ("cp-r4", "CP r4")]:
            f = forms[kind]
            ours = " / ".join(fmt(f[x]) for x in ["weight", "bypass", "auto"])
            if peers[kind]:
                for peer_name, peer in peers[kind]:
                    out.append(f"| {label} | {ours} | {peer_name}: {fmt(peer)} | {ratio(best[kind], peer)} |")
            else:
                out.append(f"| {label} | {ours} | — | — |")
        out += [
            "",
            "Targets (issue 20):",
            f"- full step ≤ 1.2x PyTorch's: {ratio(full, full_t)} "
            f"({'met' if full and full_t and full / full_t <= 1.2 else 'not met'});",
            f"- best adapter step at rank 4 ({fmt(best_any)} ms) ≤ PEFT LoCon's: {ratio(best_any, peft)}; "
            f"≤ LyCORIS Tucker-2's: {ratio(best_any, lyco)} (bypass_mode: {ratio(best_any, lyco_b)});",
            f"- best adapter step ≤ 0.75x our own full step: {ratio(best_any, full)}.",
            "",
        ]
    return "\n".join(out)


def any_batch(runs, model):
    for (case, _), results in runs.items():
        if case.startswith(model + " ") and results:
            r = results[0]
            b, s = r.get("batch"), r.get("size")
            return f"{b or 'default'}, {s or 'default'} px"
    return "?"


def main():
    src, report = sys.argv[1], sys.argv[2]
    cpu, runs = load(src)
    if not runs:
        sys.exit(f"{src}: no results")
    key = f"{(cpu or {}).get('model_name', 'unknown')} {os.path.basename(src)[:10]}"
    body = section(src, cpu, runs)
    begin, end = BEGIN.format(key=key), END.format(key=key)
    text = open(report, encoding="utf-8").read() if os.path.exists(report) else ""
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        marker = "## Side by side with PyTorch"
        if marker not in text:
            text = text.rstrip() + f"\n\n{marker}\n\nWritten by `scripts/peer-bench.sh`, one section per CPU met.\n"
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(report, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
