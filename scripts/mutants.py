#!/usr/bin/env python3
"""Hand-planted mutants for lora-core, lora-conv and lora-3d (issue 12; moved to the adapter files
when the extension point landed, then to each type's pure maths in lora-conv/src/functional/).

cargo-mutants does not install offline here, so each mutant is a one-line source edit: the
script applies it, runs the integration tests of the three crates, and puts the file back. A mutant is killed when a
test fails, unviable when it does not compile.

Usage: MUTANTS_ROOT=<copy of the tree> scripts/mutants.py [--baseline | ID...]   (default:
all). Results go to stdout, one line a mutant. Use a copy: while a mutant is in, anyone
building the tree builds the mutant.
"""
import os
import subprocess
import sys
import time

# Run it on a copy of the tree (MUTANTS_ROOT), not on a working tree that others build.
ROOT = os.environ.get("MUTANTS_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = [
    # lora-core
    "testing_helpers", "numerical_safety", "linear_lora", "peft_linear", "training",
    "half_precision", "safetensors_dtypes",
    # lora-conv
    "geometry_grid", "rank_limit", "whole_model", "fixtures", "same_training", "bad_inputs",
    "fuzz_readers", "properties", "recompose", "forward_modes", "bounds_properties",
    "variant_names",
    # lora-3d (bad_inputs and properties above too)
    "adapters", "per_slice", "errors",
]

# (id, file, old, new, what). `old` must occur exactly once in the file.
MUTANTS = [
    ('merge-noop-unmerge', 'lora-core/src/merge.rs',
     '        bases,\n        flag: merge_state::UNMERGED,',
     '        bases: HashMap::new(),\n        flag: merge_state::UNMERGED,',
     'unmerge clears the flag but leaves the merged base'),
    ("merge-returns-input", "lora-core/src/merge.rs",
     "    refuse_non_finite(&effective, &adapted)?;",
     "    refuse_non_finite(&effective, &adapted)?;\n    if adapted.len() < usize::MAX { return Ok(model.clone()); }",
     "merge returns its input unchanged"),
    ('merge-no-base-write', 'lora-core/src/merge.rs',
     '        bases: effective,\n        flag: merge_state::MERGED,',
     '        bases: HashMap::new(),\n        flag: merge_state::MERGED,',
     'merge sets the flag but does not write W + scale·ΔW'),
    ('merge-no-flag', 'lora-core/src/merge.rs',
     '        bases: effective,\n        flag: merge_state::MERGED,',
     '        bases: effective,\n        flag: merge_state::UNMERGED,',
     'merge writes the base but leaves the flag at 0 (double add)'),
    ("merge-unsafe", "lora-core/src/merge.rs",
     "    if paths.is_empty() {\n        Ok(())", "    if paths.len() < usize::MAX {\n        Ok(())",
     "safe merge check off"),
    ("unmerge-adds", "lora-core/src/merge.rs",
     "return Box::new(now.clone() - delta);", "return Box::new(now.clone() + delta);",
     "unmerge adds the update again"),
    ("unmerge-drops-delta", "lora-core/src/merge.rs",
     "return Box::new(now.clone() - delta);", "return Box::new(now.clone() - delta * 0.0);",
     "unmerge subtracts nothing (dropped term)"),
    ("all-finite-true", "lora-core/src/merge.rs",
     "return t.clone().is_finite().all().into_scalar::<bool>();",
     "return t.clone().is_finite().all().into_scalar::<bool>() || true;",
     "finiteness check always true"),
    ("merge-twice-ok", "lora-core/src/merge.rs",
     "    if !merged.is_empty() {", "    if merged.is_empty() && !merged.is_empty() {",
     "merging the merged is allowed"),
    ("unmerge-unmerged-ok", "lora-core/src/merge.rs",
     "    if !unmerged.is_empty() {", "    if unmerged.is_empty() && !unmerged.is_empty() {",
     "unmerging the unmerged is allowed"),
    ("finder-flag-false", "lora-core/src/merge.rs",
     "found.merged = flag_value(param) == merge_state::MERGED;", "found.merged = false;",
     "adapted_params never reports merged"),
    ("tol-old-floor", "lora-core/src/testing.rs",
     "(self.rel * scale).max(self.abs)", "(self.rel * scale.max(1.0)).max(self.abs)",
     "Tol back to rel·max(|b|, 1)"),
    ("check-close-nan", "lora-core/src/testing.rs",
     "if nan || diff.is_nan() || diff > bound {", "if diff > bound {",
     "check_close ignores NaN"),
    ("check-close-shapes", "lora-core/src/testing.rs",
     "    if sa != sb {", "    if sa != sb && sa.num_dims() != sb.num_dims() {",
     "check_close broadcasts different shapes"),
    ("copy-factors-keeps-old", "lora-core/src/testing.rs",
     "                if old.shape() != new.shape() {", "                if old.shape() == old.shape() {",
     "copy_adapter_factors copies nothing"),
    ("peft-linear-rank0", "lora-core/src/linear/adapter.rs",
     "        if r == 0 {", "        if r == usize::MAX {",
     "PEFT linear import accepts rank 0"),
    ('count-adapter-depth', 'lora-core/src/params.rs',
     '        if !self.at.outside() {\n            self.counts.adapter += n;',
     '        if self.at.depth() > 1 {\n            self.counts.adapter += n;',
     'param_counts counts no adapter parameters'),
    ("count-trainable-all", "lora-core/src/params.rs",
     "        if param.is_require_grad() {", "        if param.is_require_grad() || n > 0 {",
     "param_counts counts frozen parameters as trainable"),
    ("io-f16-exponent", "lora-core/src/io.rs",
     "        _ => sign | ((exp + 112) << 23) | (frac << 13),", "        _ => sign | ((exp + 111) << 23) | (frac << 13),",
     "f16 reader halves every value"),
    ("io-take-rank-check", "lora-core/src/io.rs",
     "    if data.shape().len() != D {", "    if data.shape().len() > D {",
     "take_tensor accepts a lower-rank tensor"),
    ('count-locon-drop-t', 'lora-conv/src/functional/locon.rs',
     'rank.saturating_mul(product(rest).saturating_add(*t))',
     'rank.saturating_mul(product(rest))',
     'LoCon count drops r·t'),
    ('count-tucker-drop-core', 'lora-conv/src/functional/tucker2.rs',
     '        .saturating_add(rank.saturating_mul(rank).saturating_mul(product(kernel)))',
     '        .saturating_add(0)',
     'Tucker-2 count drops r²K'),
    ('count-cp-drop-spatial', 'lora-conv/src/functional/cp.rs',
     'rank.saturating_mul(c.saturating_add(*t).saturating_add(sum(kernel)))',
     'rank.saturating_mul(c.saturating_add(*t))',
     'CP count drops Σk'),
    ("full-count-groups", "lora-conv/src/bounds/count.rs",
     "        .saturating_mul(geometry.in_per_group())", "        .saturating_mul(geometry.in_channels)",
     "full count ignores groups"),
    ('limit-locon', 'lora-conv/src/functional/shape.rs',
     '    (*t).min(product(rest))',
     '    (*t).min(rest[0])',
     'LoCon/LoHa/DoRA cap min(t, c)'),
    ('limit-tucker', 'lora-conv/src/functional/shape.rs',
     '[t, c, ..] => (*t).min(*c),',
     '[t, c, ..] => (*t).max(*c),',
     'Tucker-2 cap max(t, c)'),
    ('limit-cp-all-modes', 'lora-conv/src/functional/cp.rs',
     '.filter(|&(i, _)| largest.is_none_or(|(j, _)| i != j))',
     '.filter(|&(i, _)| largest.is_none_or(|(j, _)| i != j || i == j))',
     'CP cap is the product of every mode'),
    ("tucker-below-locon", "lora-conv/src/bounds.rs",
     "c.saturating_mul(k.saturating_sub(1)).saturating_sub(1) / k.max(1)", "c.saturating_mul(k.saturating_sub(1)) / k.max(1)",
     "Tucker-2 below LoCon off by one"),
    ("geometry-groups", "lora-conv/src/geometry.rs",
     "|| !self.in_channels.is_multiple_of(self.groups)", "|| !self.in_channels.is_multiple_of(1)",
     "validate accepts groups that do not divide in_channels"),
    ("in-per-group", "lora-conv/src/geometry.rs",
     "        self.in_channels / self.groups.max(1)", "        self.in_channels",
     "in_per_group ignores groups"),
    ('variant-cp-name', 'lora-conv/src/adapters/cp.rs',
     '    const NAME: &\'static str = "cp";',
     '    const NAME: &\'static str = "tucker2";',
     "CP registers under Tucker-2's name"),
    ('recompose-locon-scale', 'lora-conv/src/functional/locon.rs',
     '    up.mul_scalar(scale).matmul(down)',
     '    up.matmul(down)',
     'LoCon update drops the scale'),
    ('recompose-tucker-layout', 'lora-conv/src/functional/tucker2.rs',
     '    let m = m.reshape([r, k, c]).swap_dims(1, 2).reshape([r, c * k]);',
     '    let m = m.reshape([r, c * k]);',
     'Tucker-2 update in the wrong layout'),
    ('recompose-cp-transpose', 'lora-conv/src/functional/cp.rs',
     '    let vs = down.reshape([r, c, 1]) * s.reshape([r, 1, kv]);',
     '    let vs = down.transpose().reshape([r, c, 1]) * s.reshape([r, 1, kv]);',
     'CP update reads V transposed'),
    ("import-rank0", "lora-conv/src/import.rs",
     "    if rank == 0 {", "    if rank == usize::MAX {",
     "conv factor import accepts rank 0"),
    ("import-pointwise", "lora-conv/src/import.rs",
     "    if dims[2..].iter().any(|&k| k != 1) {", "    if dims[2..].iter().any(|&k| k == usize::MAX) {",
     "lora_B / lora_up need not be 1x1"),
    ('inflate-cp-not-trainable', 'lora-conv/src/adapter.rs',
     '        Param::initialized(ParamId::new(), value.detach()).set_require_grad(trainable)',
     '        Param::initialized(ParamId::new(), value.detach()).set_require_grad(trainable && false)',
     "a new factor from inflation (CP's depth factor) is frozen"),
    ('inflate-cp-row0', 'lora-conv/src/adapters/cp.rs',
     '.reshape([depth, 1]).repeat_dim(1, r);',
     '.reshape([depth, 1]).repeat_dim(1, r).ones_like();',
     'CP depth factor all ones instead of the inflation profile'),
    ("inflate-kernel-front", "lora-3d/src/functional/kernel.rs",
     "Tensor::cat(vec![zeros.clone(), slice, zeros], 2)", "Tensor::cat(vec![slice, zeros.clone(), zeros], 2)",
     "centre inflation puts the kernel in front"),
    ("inflate-mean-no-div", "lora-3d/src/functional/kernel.rs",
     "slice.repeat_dim(2, depth).div_scalar(depth as f64)", "slice.repeat_dim(2, depth)",
     "mean inflation does not divide by kd"),
    ("centre-padding", "lora-3d/src/functional/kernel.rs",
     "(!kd.is_multiple_of(2)).then(|| (kd - 1) / 2)", "(!kd.is_multiple_of(2)).then(|| kd / 2)",
     "centre padding kd/2 (equivalent for odd kd)"),
    ("options-centre-stride", "lora-3d/src/options.rs",
     "            InflateMode::Centre if self.depth_stride != 1 => Err(inexact(format!(",
     "            InflateMode::Centre if self.depth_stride > 99 => Err(inexact(format!(",
     "centre inflation accepts depth stride 2"),
    ("options-mean-padding", "lora-3d/src/options.rs",
     "            InflateMode::Mean if self.padding() > centre => Err(inexact(format!(",
     "            InflateMode::Mean if self.padding() > centre + 1 => Err(inexact(format!(",
     "mean inflation accepts padding (kd+1)/2"),
]


def run_tests():
    cmd = ["cargo", "test", "--workspace", "--features", "lora-core/wgpu", "--no-fail-fast"]
    tests = os.environ.get("MUTANTS_TESTS", "").split() or TESTS
    for t in tests:
        cmd += ["--test", t]
    # Its own target dir (MUTANTS_TARGET, e.g. a copy of the shared one): cargo does not key
    # workspace members by path, so a shared dir would hand mutant builds to other trees.
    target = os.environ.get("MUTANTS_TARGET") or os.path.expanduser("~/.cache/lora-target")
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    out = p.stdout + p.stderr
    if "could not compile" in out:
        return "unviable", []
    failed = sorted({l.split()[1] for l in out.splitlines()
                     if l.startswith("test ") and l.rstrip().endswith("FAILED")})
    return ("killed" if p.returncode != 0 else "survived"), failed


def edit(path, old, new):
    full = os.path.join(ROOT, path)
    text = open(full).read()
    if text.count(old) != 1:
        return False
    open(full, "w").write(text.replace(old, new))
    return True


def main():
    wanted = set(sys.argv[1:])
    if "--baseline" in wanted:
        print("baseline", *run_tests(), flush=True)
        return
    for mid, path, old, new, what in MUTANTS:
        if wanted and mid not in wanted:
            continue
        full = os.path.join(ROOT, path)
        original = open(full).read()
        if not edit(path, old, new):
            print(f"{mid}\tmissing\t{path}: the text to mutate is not there once", flush=True)
            continue
        start = time.time()
        try:
            status, failed = run_tests()
        finally:
            # The copy is this script's alone: put the file back as it was.
            open(full, "w").write(original)
        print(f"{mid}\t{status}\t{time.time() - start:.0f}s\t{what}\t{' '.join(failed)}", flush=True)


if __name__ == "__main__":
    main()
