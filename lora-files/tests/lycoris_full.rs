//! Replaced Linear and conv modules as LyCORIS full-diff modules (fixture lycoris-full-diff,
//! made by scripts/fixtures/lycoris_full.py): the export is the file the real LyCORIS 4.1.3
//! loaded (its output matched PEFT's to 3e-8), it merges to the weights the PEFT file merges
//! to, and what LyCORIS cannot hold, or cannot hold without a base, is refused by name.

mod common;

use common::{assert_close, fixture, read, values};
use lora_files::format::{self, ReadOptions};
use lora_files::{AdapterFile, FileError, Format, StateDict, merge};

fn load(path: &std::path::Path, base: &StateDict) -> AdapterFile {
    let options = ReadOptions::default();
    let mut a = format::read(path, &options).unwrap_or_else(|e| panic!("{e}"));
    merge::resolve(&mut a, base, &options.prefixes).unwrap_or_else(|e| panic!("{e}"));
    a
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lycoris-full-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn modules_to_save_export_is_the_file_lycoris_loaded() {
    let dir = fixture("lycoris-full-diff");
    let base = read(&dir.join("base.safetensors"));
    let mut peft = load(&dir.join("peft"), &base);
    merge::replacements_to_diffs(&mut peft, &base, "base").unwrap_or_else(|e| panic!("{e}"));
    let out = tmp("export").join("a.safetensors");
    format::write(&peft, Format::Lycoris, &out).unwrap_or_else(|e| panic!("{e}"));
    let ours = read(&out);
    let theirs = read(&dir.join("lycoris.safetensors"));
    assert_eq!(ours.tensors, theirs.tensors, "the tensors LyCORIS loaded");
    for key in [
        "lycoris_head.diff",
        "lycoris_head.diff_b",
        "lycoris_block_5.diff",
    ] {
        assert!(ours.tensors.contains_key(key), "{key}");
    }
}

#[test]
fn full_diff_file_merges_to_the_peft_files_weights() {
    let dir = fixture("lycoris-full-diff");
    let base = read(&dir.join("base.safetensors"));
    let lycoris = load(&dir.join("lycoris.safetensors"), &base);
    assert_eq!(
        lycoris.diffs.keys().collect::<Vec<_>>(),
        ["block.5.bias", "block.5.weight", "head.bias", "head.weight"]
    );
    let a = merge::merge(&base, "base", &lycoris, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let peft = load(&dir.join("peft"), &base);
    let b = merge::merge(&base, "base", &peft, 1.0).unwrap_or_else(|e| panic!("{e}"));
    for key in b.tensors.keys() {
        if let (Some(_), Some(_)) = (b.tensors[key].to_f32(), a.tensors[key].to_f32()) {
            let (_, x) = values(&a, key);
            let (_, y) = values(&b, key);
            assert_close(key, &x, &y, 1e-6);
        }
    }
    // Back to replacements, as a PEFT or native export does with the base.
    let mut back = lycoris.clone();
    merge::diffs_to_replacements(&mut back, &base, "base").unwrap_or_else(|e| panic!("{e}"));
    let (_, h) = values(&b, "head.weight");
    let r = back.replacements["head.weight"]
        .to_f32()
        .unwrap_or_default();
    assert_close("head.weight", &r, &h, 1e-6);
}

#[test]
fn what_lycoris_cannot_hold_is_refused_by_module() {
    let dir = fixture("lycoris-full-diff");
    let base = read(&dir.join("base.safetensors"));
    let peft = load(&dir.join("peft"), &base);
    // Without a base: replacements cannot become differences.
    let out = tmp("refuse").join("a.safetensors");
    let err = format::write(&peft, Format::Lycoris, &out).map(|_| ());
    assert!(
        matches!(&err, Err(e @ FileError::Inexpressible { .. }) if e.to_string().contains("a base is needed")),
        "{err:?}"
    );
    assert!(!out.exists());
    // BatchNorm statistics and a norm layer's 1-D affine weight.
    for (key, needle) in [
        ("stem.1.running_mean", "BatchNorm statistic"),
        ("stem.1.weight", "Linear and Conv1d/2d/3d only"),
    ] {
        let mut a = peft.clone();
        a.replacements
            .insert(key.to_string(), base.tensors[key].clone());
        let err = merge::replacements_to_diffs(&mut a, &base, "base.safetensors");
        let text = err
            .as_ref()
            .map_err(ToString::to_string)
            .err()
            .unwrap_or_default();
        assert!(
            text.contains("layer `stem.1`") && text.contains(needle),
            "{key}: {text}"
        );
    }
    // Differences cannot go to PEFT or native without the base.
    let lycoris = load(&dir.join("lycoris.safetensors"), &base);
    for f in [Format::Peft, Format::Native] {
        let err = format::write(&lycoris, f, &tmp("diffs").join("x")).map(|_| ());
        assert!(
            matches!(&err, Err(e @ FileError::Inexpressible { .. }) if e.to_string().contains("head") || e.to_string().contains("block.5")),
            "{err:?}"
        );
    }
}
