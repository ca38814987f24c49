//! Shared helpers: fixture paths, f32 reads, and a closeness check with a stated tolerance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lora_files::StateDict;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read(path: &Path) -> StateDict {
    match StateDict::read(path) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

pub fn values(dict: &StateDict, key: &str) -> (Vec<usize>, Vec<f32>) {
    match dict.f32("test", key, "test") {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// `|a - b| <= rel · max|b|` elementwise (relative to the reference's largest magnitude), with
/// the shapes equal.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], rel: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let scale = expected
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= rel * scale,
        "{what}: max |diff| {worst:e} > {rel:e} · max|ref| {scale:e}"
    );
}
