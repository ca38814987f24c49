//! The `adapter` binary end to end on the model-level fixtures of PEFT 0.21.2 and LyCORIS
//! 4.1.3: `merge` reproduces every `merged.<name>` entry to 1e-5, `convert` round-trips, and
//! failures are one line and a non-zero status, with nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lora_files::StateDict;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lora-files/tests/fixtures")
        .join(name)
}

fn adapter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adapter"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running adapter: {e}"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adapter-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn read(path: &Path) -> StateDict {
    StateDict::read(path).unwrap_or_else(|e| panic!("{e}"))
}

fn check_merged(merged: &Path, reference: &Path) {
    let merged = read(merged);
    let reference = read(reference);
    for (key, stored) in &merged.tensors {
        let expected = &reference.tensors[&format!("merged.{key}")];
        assert_eq!(
            (stored.dtype, &stored.shape),
            (expected.dtype, &expected.shape),
            "{key}"
        );
        match (stored.to_f32(), expected.to_f32()) {
            (Some(a), Some(b)) => {
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= 1e-5 * scale, "{key}: {worst:e} > 1e-5 · {scale:e}");
            }
            _ => assert_eq!(stored.bytes, expected.bytes, "{key}"),
        }
    }
}

#[test]
fn merge_reproduces_both_model_fixtures() {
    for (name, path) in [
        ("model-peft-lora", ""),
        ("model-lycoris-tucker", "adapter.safetensors"),
    ] {
        let dir = fixture(name);
        let out = tmp(name).join("merged.safetensors");
        let o = adapter(&[
            "merge",
            "--base",
            &dir.join("base.safetensors").display().to_string(),
            "--adapter",
            &dir.join(path).display().to_string(),
            "--out",
            &out.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        check_merged(&out, &dir.join("reference.safetensors"));
    }
}

#[test]
fn convert_then_merge_gives_the_same_weights() {
    let dir = fixture("model-lycoris-tucker");
    let work = tmp("convert");
    let native = work.join("native.safetensors");
    let base = dir.join("base.safetensors").display().to_string();
    let o = adapter(&[
        "convert",
        "--adapter",
        &dir.join("adapter.safetensors").display().to_string(),
        "--base",
        &base,
        "--to",
        "native",
        "--out",
        &native.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged = work.join("merged.safetensors");
    let o = adapter(&[
        "merge",
        "--base",
        &base,
        "--adapter",
        &native.display().to_string(),
        "--out",
        &merged.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_merged(&merged, &dir.join("reference.safetensors"));
    let o = adapter(&["inspect", &native.display().to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["format"], "native");
    assert_eq!(v["layers"].as_array().map(Vec::len), Some(5));
    assert_eq!(v["layers"][1]["module"], "block.3");
    assert_eq!(v["layers"][1]["algorithm"], "tucker2");
    assert_eq!(v["layers"][1]["rank"], 4);
    assert_eq!(v["layers"][1]["scale"], 0.5);
}

#[test]
fn failures_are_one_line_and_write_nothing() {
    let dir = fixture("model-lycoris-tucker");
    let work = tmp("failures");
    let base = dir.join("base.safetensors").display().to_string();
    let lyco = dir.join("adapter.safetensors").display().to_string();
    let peft_out = work.join("peft");
    let missing = work.join("nope.safetensors").display().to_string();
    let merged = work.join("m.safetensors");
    let merged_s = merged.display().to_string();
    let peft_s = peft_out.display().to_string();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec![
                "convert",
                "--adapter",
                &lyco,
                "--base",
                &base,
                "--to",
                "peft",
                "--out",
                &peft_s,
            ],
            "layer `block.0` (tucker2)",
        ),
        (
            vec![
                "merge",
                "--base",
                &missing,
                "--adapter",
                &lyco,
                "--out",
                &merged_s,
            ],
            "nope.safetensors",
        ),
        (
            vec![
                "merge",
                "--base",
                &lyco,
                "--adapter",
                &lyco,
                "--out",
                &merged_s,
            ],
            "lycoris_block_0",
        ),
        (
            vec![
                "merge",
                "--base",
                &base,
                "--adapter",
                &lyco,
                "--out",
                &merged_s,
                "--multiplier",
                "NaN",
            ],
            "--multiplier",
        ),
    ];
    for (args, needle) in cases {
        let o = adapter(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        // A file error exits 1; a command-line error (the NaN multiplier) exits 2.
        let code = if needle == "--multiplier" { 2 } else { 1 };
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(
        !peft_out.exists() && !merged.exists(),
        "a failed run leaves no output"
    );
}

/// `--multiplier -1` is taken as written and subtracts the adapter: merged(+1) + merged(-1) is
/// twice the base, entry by entry (1e-5 of each tensor's scale).
#[test]
fn a_negative_multiplier_subtracts_the_adapter() {
    let dir = fixture("model-peft-lora");
    let work = tmp("negative");
    let base = dir.join("base.safetensors");
    let (plus, minus) = (
        work.join("plus.safetensors"),
        work.join("minus.safetensors"),
    );
    for (m, out) in [("1", &plus), ("-1", &minus)] {
        let o = adapter(&[
            "merge",
            "--base",
            &base.display().to_string(),
            "--adapter",
            &dir.display().to_string(),
            "--out",
            &out.display().to_string(),
            "--multiplier",
            m,
        ]);
        assert!(
            o.status.success(),
            "{m}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (b, p, n) = (read(&base), read(&plus), read(&minus));
    let mut changed = 0;
    for (key, t) in &b.tensors {
        let (Some(b), Some(p), Some(n)) =
            (t.to_f32(), p.tensors[key].to_f32(), n.tensors[key].to_f32())
        else {
            continue;
        };
        let scale = b
            .iter()
            .chain(&p)
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1e-30);
        let worst = (0..b.len())
            .map(|i| (p[i] + n[i] - 2.0 * b[i]).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5 * scale, "{key}: {worst:e}");
        changed += usize::from(p != b);
    }
    assert!(changed > 0, "the adapter changed nothing");
}

/// The paper cuts of the command line: an `--out` naming an input is refused (exit 2) and the
/// input keeps its bytes; files of the wrong kind say what they are and what was expected
/// (exit 1); `--to` is case-insensitive.
#[test]
fn wrong_outputs_and_wrong_files_are_named() {
    let dir = fixture("model-peft-lora");
    let work = tmp("kinds");
    // A copy of the base, so that a regression cannot overwrite the fixture itself.
    let base = work.join("base.safetensors");
    std::fs::copy(dir.join("base.safetensors"), &base).unwrap();
    let before = std::fs::read(&base).unwrap();
    let base_s = base.display().to_string();
    let dir_s = dir.display().to_string();
    let o = adapter(&[
        "merge",
        "--base",
        &base_s,
        "--adapter",
        &dir_s,
        "--out",
        &base_s,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--out") && err.contains("--base input"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&base).unwrap(),
        before,
        "the base was overwritten"
    );
    let empty = work.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let json = work.join("notes.json");
    std::fs::write(&json, b"{\"r\": 4}").unwrap();
    let cases = [
        (dir.join("adapter_model.safetensors"), "pass that directory"),
        (dir.join("adapter_config.json"), "pass that directory"),
        (empty, "an empty file"),
        (json, "a JSON file"),
        (
            fixture("model-peft-lora/../../fixtures.rs"),
            "not a safetensors file",
        ),
    ];
    for (path, needle) in cases {
        let out = work.join("m.safetensors");
        let o = adapter(&[
            "merge",
            "--base",
            &base_s,
            "--adapter",
            &path.display().to_string(),
            "--out",
            &out.display().to_string(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{path:?}: {err}");
        assert!(err.contains(needle), "{path:?}: `{needle}` not in {err}");
        assert!(err.contains("expected a PEFT adapter directory"), "{err}");
        assert!(!out.exists());
    }
    let out = work.join("native.safetensors");
    let o = adapter(&[
        "convert",
        "--adapter",
        &dir_s,
        "--base",
        &base_s,
        "--to",
        "Native",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A base of another model (a weight of another shape, a module missing) is named as the
/// culprit, with the key and both shapes, by merge and by convert (which used to write the
/// file), and nothing is written.
#[test]
fn a_wrong_base_is_blamed_not_the_adapter() {
    let dir = fixture("model-peft-lora");
    let work = tmp("wrong-base");
    let mut wrong = read(&dir.join("base.safetensors"));
    wrong.tensors.insert(
        "block.0.weight".to_string(),
        lora_files::Stored::from_f32(vec![16, 8, 5, 5], &vec![0.0; 16 * 8 * 25]),
    );
    let wrong_path = work.join("other-model.safetensors");
    wrong.write(&wrong_path).unwrap_or_else(|e| panic!("{e}"));
    let mut short = read(&dir.join("base.safetensors"));
    short.tensors.retain(|k, _| !k.starts_with("block.5."));
    let short_path = work.join("short-model.safetensors");
    short.write(&short_path).unwrap_or_else(|e| panic!("{e}"));
    let out = work.join("out.safetensors");
    let (adapter_s, out_s) = (dir.display().to_string(), out.display().to_string());
    let cases = [
        (
            &wrong_path,
            "merge",
            "block.0.weight",
            "has shape [16, 8, 5, 5]",
            "shape [16, 8, 3, 3]",
        ),
        (
            &wrong_path,
            "convert",
            "block.0.weight",
            "has shape [16, 8, 5, 5]",
            "shape [16, 8, 3, 3]",
        ),
        (
            &short_path,
            "merge",
            "block.5.weight",
            "is missing",
            "a module `block.5`",
        ),
    ];
    for (base, command, key, found, expected) in cases {
        let base_s = base.display().to_string();
        let mut args = vec![
            command,
            "--base",
            &base_s,
            "--adapter",
            &adapter_s,
            "--out",
            &out_s,
        ];
        if command == "convert" {
            args.extend(["--to", "native"]);
        }
        let o = adapter(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{command}: {err}");
        for needle in [
            format!("{base_s}: the base does not match the adapter"),
            format!("`{key}` {found}"),
            format!("expects {expected}"),
            "check that the base (--base)".to_string(),
        ] {
            assert!(err.contains(&needle), "{command}: `{needle}` not in {err}");
        }
        assert!(!out.exists(), "{command} wrote {out:?}");
    }
}

/// `convert --to lycoris --full-diff` writes a layer LyCORIS has no layout for (CP) as a full
/// diff, says so, and merging that file gives the weights merging the native file gives;
/// without the flag the layer is refused and the message names the flag; with another target
/// the flag is a usage error (status 2). Nothing is written on a refusal.
#[test]
fn full_diff_writes_what_lycoris_cannot_hold_and_says_so() {
    use lora_files::algorithm::{Cp, Factor, Factors};
    use lora_files::format;
    use lora_files::{AdapterFile, Format, LayerAdapter};
    let dir = fixture("model-peft-lora");
    let base = dir.join("base.safetensors").display().to_string();
    let work = tmp("full-diff");
    // A CP adapter on block.0 ([16, 8, 3, 3]) at rank 2, from a fixed generator.
    let mut s = 7u64;
    let mut factor = |shape: &[usize]| {
        let values = (0..shape.iter().product::<usize>())
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Factor {
            shape: shape.to_vec(),
            values,
        }
    };
    let mut factors = Factors::new();
    for (name, shape) in [
        ("cp_up", [16, 2]),
        ("cp_down", [2, 8]),
        ("cp_spatial_0", [3, 2]),
        ("cp_spatial_1", [3, 2]),
    ] {
        factors.insert(name.to_string(), factor(&shape));
    }
    let cp = AdapterFile {
        source: "test".into(),
        format: Format::Native,
        layers: vec![LayerAdapter {
            module: "block.0".into(),
            key_prefix: "block.0".into(),
            algorithm: &Cp,
            factors,
            rank: 2,
            alpha: Some(1.0),
            scale: 0.5,
            magnitude: None,
            base_shape: Some(vec![16, 8, 3, 3]),
            groups: 1,
        }],
        // block.0's bias replaced too (a model trained with its bias trainable): the module
        // gets one difference, the update plus the replaced bias's.
        replacements: [(
            "block.0.bias".to_string(),
            lora_files::Stored::from_f32(vec![16], &[0.25; 16]),
        )]
        .into(),
        rslora: false,
        diffs: Default::default(),
    };
    let native = work.join("cp.safetensors");
    format::write(&cp, Format::Native, &native).unwrap_or_else(|e| panic!("{e}"));
    let native = native.display().to_string();
    let out = work.join("cp-lycoris.safetensors");
    let convert = |extra: &[&str]| {
        let mut args = vec!["convert", "--adapter", &native, "--base", &base, "--out"];
        let out = out.display().to_string();
        args.push(&out);
        args.extend_from_slice(extra);
        adapter(&args)
    };
    let o = convert(&["--to", "lycoris"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("block.0") && err.contains("--full-diff"),
        "{err}"
    );
    assert!(!out.exists());
    let o = convert(&["--to", "native", "--full-diff"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.exists());
    let o = convert(&["--to", "lycoris", "--full-diff"]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        said.contains("1 layer(s) as full diffs, their factors lost: block.0"),
        "{said}"
    );
    assert_eq!(
        read(&out).tensors.keys().collect::<Vec<_>>(),
        ["lycoris_block_0.diff", "lycoris_block_0.diff_b"]
    );
    let merged = |adapter_path: &str, name: &str| {
        let m = work.join(name);
        let o = adapter(&[
            "merge",
            "--base",
            &base,
            "--adapter",
            adapter_path,
            "--out",
            &m.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read(&m)
    };
    let by_factors = merged(&native, "by-factors.safetensors");
    let by_diff = merged(&out.display().to_string(), "by-diff.safetensors");
    let (a, b) = (
        by_factors.tensors["block.0.weight"].to_f32(),
        by_diff.tensors["block.0.weight"].to_f32(),
    );
    let bias = by_diff.tensors["block.0.bias"].to_f32().unwrap_or_default();
    assert_eq!(bias.len(), 16);
    assert!(
        bias.iter().all(|v| (v - 0.25).abs() < 1e-6),
        "the replaced bias, as base + diff_b: {bias:?}"
    );
    assert!(a.is_some());
    assert_eq!(
        a, b,
        "the full diff merges to the factors' merge, bit for bit"
    );
    assert_ne!(
        by_factors.tensors["block.0.weight"].bytes,
        read(&dir.join("base.safetensors")).tensors["block.0.weight"].bytes
    );
}
