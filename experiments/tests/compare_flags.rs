//! `compare`'s command line: flags that contradict each other.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

/// Flags that contradict each other are refused, not silently half-obeyed.
#[test]
fn compare_refuses_estimate_with_pretrain_only() {
    let o = Command::new(env!("CARGO_BIN_EXE_compare"))
        .args(["--estimate", "--pretrain-only"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}
