//! The `bounds` binary: JSON fields, the table, and bad arguments.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

fn bounds(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bounds"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn json_gives_counts_and_max_ranks() {
    let out = bounds(&[
        "--in", "64", "--out", "64", "--kernel", "3x3", "--rank", "8", "--json",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim().lines().count(),
        1,
        "exactly one JSON object: {text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["full"], 36_864);
    assert_eq!(v["locon"], 8 * (64 * 9 + 64));
    assert_eq!(v["tucker2"], 8 * 128 + 64 * 9);
    assert_eq!(v["cp"], 8 * (64 + 64 + 6));
    // HF: r < 64·64·9/(64·9+64) = 57.6; CP: r < 36864/134 = 275.1 (no cap at min(s, t)).
    assert_eq!(v["max_rank"]["locon"], 57);
    assert_eq!(v["max_rank"]["cp"], 275);
    // Tucker-2: 9r² + 128r < 36864  ->  r < 57.3.
    assert_eq!(v["max_rank"]["tucker2"], 57);
}

#[test]
fn groups_and_3d_kernels() {
    let out = bounds(&[
        "--in", "32", "--out", "64", "--kernel", "3x3x3", "--rank", "4", "--groups", "4", "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // c = 32/4 = 8, K = 27.
    assert_eq!(v["full"], 64 * 8 * 27);
    assert_eq!(v["locon"], 4 * (8 * 27 + 64));
    assert_eq!(v["loha"], 2 * 4 * (8 * 27 + 64));
    assert_eq!(v["tucker2"], 4 * (8 + 64) + 16 * 27);
    assert_eq!(v["cp"], 4 * (8 + 64 + 9));
}

#[test]
fn table_is_readable() {
    let out = bounds(&["--in", "16", "--out", "32", "--kernel", "5", "--rank", "2"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Conv1d 16 -> 32",
        "locon",
        "tucker2",
        "cp",
        "loha",
        "lokr",
        "max rank < full",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn bad_arguments_fail_with_a_message() {
    for args in [
        vec!["--in", "8", "--out", "8", "--kernel", "3x", "--rank", "2"],
        vec![
            "--in", "8", "--out", "8", "--kernel", "3x3x3x3", "--rank", "2",
        ],
        vec!["--in", "8", "--out", "8", "--kernel", "3", "--rank", "0"],
        vec![
            "--in", "8", "--out", "6", "--kernel", "3", "--rank", "1", "--groups", "4",
        ],
        vec!["--in", "8", "--kernel", "3", "--rank", "1"],
    ] {
        let out = bounds(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!err.trim().is_empty(), "{args:?}: no message");
    }
}
