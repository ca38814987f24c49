//! The IDX reader on mangled files: truncated at every length, every header byte and a sample
//! of data bytes flipped, sizes declared far beyond the data (including sizes whose product
//! overflows), and empty files. Every outcome is `Ok` with consistent sizes or an `Err` naming
//! the file, never a panic; and a file whose sizes disagree with its length is always refused,
//! before anything of the declared size is allocated (the reader compares the declared count
//! with the bytes present, in checked arithmetic, first).

#![allow(clippy::unwrap_used, missing_docs)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use experiments::data::idx::{read_idx, write_idx};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fuzz-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Read `bytes` as an IDX file; panics (failing the test) if the reader panics or returns
/// sizes that disagree with its data.
fn check(path: &Path, bytes: &[u8], what: &str) -> bool {
    std::fs::write(path, bytes).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| read_idx(path)));
    match outcome {
        Err(_) => panic!("{what}: the reader panicked"),
        Ok(Ok((dims, data))) => {
            let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            assert_eq!(
                count,
                Some(data.len()),
                "{what}: sizes {dims:?} vs {} bytes",
                data.len()
            );
            true
        }
        Ok(Err(e)) => {
            let message = e.to_string();
            assert!(
                message.contains(&path.display().to_string()),
                "{what}: the error does not name the file: {message}"
            );
            false
        }
    }
}

#[test]
fn mangled_idx_files_are_refused_without_panicking() {
    let path = scratch("images.idx");
    let good = write_idx(&[3, 4, 5], &(0..60).map(|i| i as u8).collect::<Vec<_>>());
    assert!(check(&path, &good, "the intact file"));
    let mut tried = 1;
    // Every truncation, the empty file included.
    for len in 0..good.len() {
        assert!(
            !check(&path, &good[..len], &format!("truncated to {len} bytes")),
            "a file truncated to {len} bytes was accepted"
        );
        tried += 1;
    }
    // Every bit of the header, and of a sample of data bytes.
    let header = 4 + 4 * 3;
    for byte in (0..header).chain([header, header + 17, good.len() - 1]) {
        for bit in 0..8 {
            let mut bytes = good.clone();
            bytes[byte] ^= 1 << bit;
            check(&path, &bytes, &format!("bit {bit} of byte {byte} flipped"));
            tried += 1;
        }
    }
    // Declared sizes far beyond the data, up to ones whose product overflows usize.
    for dims in [
        [u32::MAX, u32::MAX, u32::MAX, u32::MAX],
        [u32::MAX, 1, 1, 1],
        [65536, 65536, 65536, 2],
        [0, 0, 0, 0],
    ] {
        let mut bytes = vec![0, 0, 8, 4];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(&[7; 16]);
        assert!(
            !check(&path, &bytes, &format!("declared sizes {dims:?}")),
            "declared sizes {dims:?} with 16 data bytes were accepted"
        );
        tried += 1;
    }
    // Another element type, and a compressed file that is not gzip.
    let mut wrong_type = good.clone();
    wrong_type[2] = 0x0D; // f32
    assert!(!check(&path, &wrong_type, "f32 element type"));
    let gz = scratch("images.idx.gz");
    assert!(!check(&gz, &good, "plain bytes named .gz"));
    tried += 2;
    eprintln!("{tried} mangled IDX files tried");
}
