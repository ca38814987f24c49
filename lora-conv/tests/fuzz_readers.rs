//! Seeded byte mutations of the real adapter and reference files (the PEFT and LyCORIS
//! fixtures) fed to the safetensors reader and the factor import behind it: empty files,
//! truncations, bit flips, random byte runs, a huge declared header length, wrong dtypes and
//! huge declared shapes or offsets. The reader must return `Err` (where the file is certainly
//! broken) and must never panic; what it accepts must go through `take_tensor` and the factor
//! import without panicking.
//!
//! Knobs: `LORA_FUZZ_CASES` (random mutants per file, default 64; each file also gets its
//! fixed mutants) and `LORA_FUZZ_SEED` (default 0xf022). The test prints how many inputs it
//! tried.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, TensorData};
use lora_conv::{LoConAdapter, Tucker2Adapter};
use lora_core::io::{read_safetensors, take_tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixtures() -> Vec<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        here.join("tests/fixtures"),
        here.join("../lora-core/tests/fixtures"),
    ] {
        for case in std::fs::read_dir(&dir).unwrap() {
            let case = case.unwrap().path();
            if !case.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&case).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e == "safetensors") {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    files
}

/// Replace the first occurrence of `from` that is followed by a digit by `to`, in the header
/// (the JSON after the 8-byte length), and fix the length.
fn edit_header(bytes: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into().ok()?) as usize;
    let header = std::str::from_utf8(bytes.get(8..8 + n)?).ok()?;
    let at = header.match_indices(from).map(|(i, _)| i).find(|&i| {
        header[i + from.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || !from.ends_with('['))
    })?;
    let edited = format!("{}{to}{}", &header[..at], &header[at + from.len()..]);
    let mut out = (edited.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(edited.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    Some(out)
}

/// Mutants that are certainly broken: the reader must refuse them.
fn broken(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("empty".to_string(), Vec::new())];
    // Every truncation of the first 64 bytes, and a few of the rest.
    for len in (0..bytes.len().min(64)).chain([bytes.len() / 2, bytes.len() - 4, bytes.len() - 1]) {
        out.push((format!("truncated to {len}"), bytes[..len].to_vec()));
    }
    for declared in [u64::MAX, 1 << 40, bytes.len() as u64, 0, 1] {
        let mut m = bytes.to_vec();
        m[..8].copy_from_slice(&declared.to_le_bytes());
        out.push((format!("header length {declared}"), m));
    }
    for (from, to, what) in [
        ("\"F32\"", "\"F64\"", "dtype F64"),
        ("\"F32\"", "\"I32\"", "dtype I32 (same size, not a float)"),
        ("\"F32\"", "\"U8\"", "dtype U8"),
        ("\"F32\"", "\"BOOL\"", "dtype BOOL"),
        ("\"F32\"", "\"Q99\"", "unknown dtype"),
        (
            "\"shape\":[",
            "\"shape\":[1099511627776,1099511627776,",
            "huge declared shape",
        ),
        (
            "\"shape\":[",
            "\"shape\":[18446744073709551615,18446744073709551615,",
            "overflowing declared shape",
        ),
        (
            "\"data_offsets\":[",
            "\"data_offsets\":[18446744073709551615,",
            "huge offsets",
        ),
        (
            "\"data_offsets\":[0,",
            "\"data_offsets\":[1,",
            "shifted offsets",
        ),
        ("{", "[", "header not an object"),
    ] {
        if let Some(m) = edit_header(bytes, from, to) {
            out.push((what.to_string(), m));
        }
    }
    out
}

/// Random mutants: each may or may not still be a valid file.
fn random(bytes: &[u8], rng: &mut StdRng, count: u64) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let mut m = bytes.to_vec();
            let what = match rng.random_range(0..3) {
                0 => {
                    let flips = rng.random_range(1..=4);
                    for _ in 0..flips {
                        // Mostly in the header, where the structure is.
                        let limit = if rng.random_bool(0.7) {
                            m.len().min(512)
                        } else {
                            m.len()
                        };
                        let at = rng.random_range(0..limit);
                        m[at] ^= 1 << rng.random_range(0..8);
                    }
                    format!("{flips} bit flips")
                }
                1 => {
                    let at = rng.random_range(0..m.len());
                    let run = rng.random_range(1..=16).min(m.len() - at);
                    for b in &mut m[at..at + run] {
                        *b = rng.random();
                    }
                    format!("{run} random bytes at {at}")
                }
                _ => {
                    let at = rng.random_range(0..m.len());
                    let extra: Vec<u8> =
                        (0..rng.random_range(1..=8)).map(|_| rng.random()).collect();
                    let n = extra.len();
                    m.splice(at..at, extra);
                    format!("{n} bytes inserted at {at}")
                }
            };
            (format!("random {i}: {what}"), m)
        })
        .collect()
}

/// Read `bytes` as a file and push everything that was read through `take_tensor` and the
/// factor import. `Ok(true)` when the file was accepted.
fn exercise(path: &Path, bytes: &[u8], device: &Device) -> Result<bool, String> {
    std::fs::write(path, bytes).map_err(|e| e.to_string())?;
    let Ok(mut tensors) = read_safetensors(path) else {
        return Ok(false);
    };
    let keys: Vec<(String, usize)> = tensors
        .iter()
        .map(|(k, v): (&String, &TensorData)| (k.clone(), v.shape().len()))
        .collect();
    let mut taken4 = Vec::new();
    for (key, rank) in keys {
        macro_rules! take {
            ($($d:literal),*) => {
                match rank {
                    $($d => { let _ = take_tensor::<$d>(&mut tensors, &key, "fuzz", device); })*
                    4 => {
                        if let Ok(t) = take_tensor::<4>(&mut tensors, &key, "fuzz", device) {
                            taken4.push(t);
                        }
                    }
                    _ => {}
                }
            };
        }
        take!(1, 2, 3, 5);
    }
    // Pairs and triples of 4-D tensors as conv factors: the import must refuse or accept,
    // never panic.
    if taken4.len() >= 2 {
        let _ = LoConAdapter::from_peft("fuzz", taken4[0].clone(), taken4[1].clone(), 1.0);
    }
    if taken4.len() >= 3 {
        let _ = Tucker2Adapter::from_lycoris(
            "fuzz",
            taken4[0].clone(),
            taken4[1].clone(),
            taken4[2].clone(),
            1.0,
        );
    }
    Ok(true)
}

#[test]
fn mutated_safetensors_files_are_errors_never_panics() {
    let device = Device::flex();
    let count = env_u64("LORA_FUZZ_CASES", 64);
    let mut rng = StdRng::seed_from_u64(env_u64("LORA_FUZZ_SEED", 0xf022));
    let dir = std::env::temp_dir().join(format!("lora-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = dir.join("mutant.safetensors");
    let (mut tried, mut accepted) = (0usize, 0usize);
    let mut problems = Vec::new();
    let files = fixtures();
    assert!(files.len() >= 10, "fixtures not found: {files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let parent = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        let label = format!("{parent}/{name}");
        // The original reads.
        assert!(exercise(&scratch, &bytes, &device).unwrap(), "{label}");
        let must_fail = broken(&bytes);
        let maybe = random(&bytes, &mut rng, count);
        for (mutant, m, must) in must_fail
            .into_iter()
            .map(|(w, m)| (w, m, true))
            .chain(maybe.into_iter().map(|(w, m)| (w, m, false)))
        {
            tried += 1;
            match catch_unwind(AssertUnwindSafe(|| exercise(&scratch, &m, &device))) {
                Err(_) => problems.push(format!("{label}, {mutant}: panicked")),
                Ok(Err(e)) => problems.push(format!("{label}, {mutant}: {e}")),
                Ok(Ok(true)) if must => {
                    problems.push(format!("{label}, {mutant}: a broken file was accepted"));
                }
                Ok(Ok(ok)) => accepted += usize::from(ok),
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!(
        "fuzzed readers: {tried} mutated inputs over {} files, {accepted} accepted as valid",
        files.len()
    );
    assert!(
        problems.is_empty(),
        "{} of {tried} mutants went wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
