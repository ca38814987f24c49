//! The op-profile binary runs and prints one JSON line per op and block, with a finite time,
//! and this project's weight gradient beside burn's for every block.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn prints_every_op_of_every_block() {
    let out = Command::new(env!("CARGO_BIN_EXE_ops"))
        .args(["--batch", "2", "--runs", "1"])
        .output()
        .expect("run ops");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let count = |op: &str, which: &str| {
        lines
            .iter()
            .filter(|l| l["op"] == op && l["which"] == which)
            .filter(|l| {
                l["ms"]
                    .as_f64()
                    .is_some_and(|ms| ms.is_finite() && ms >= 0.0)
            })
            .count()
    };
    for (op, which) in [
        ("conv forward", "burn"),
        ("conv input gradient", "burn"),
        ("conv weight gradient", "burn"),
        ("conv weight gradient", "ours"),
        ("matmul of the conv's FLOPs", "burn"),
        ("batch norm", "ours"),
        ("relu", "burn"),
    ] {
        assert_eq!(count(op, which), 5, "{op} ({which})");
    }
    assert_eq!(count("max pool", "burn"), 2);
    assert!(lines.iter().all(|l| l["batch"] == 2));
}
