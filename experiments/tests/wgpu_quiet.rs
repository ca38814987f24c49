//! A headless wgpu run (Mesa lavapipe on a CPU-only box) prints no "XDG_RUNTIME_DIR is invalid
//! or not set" lines: the binaries give it a private runtime dir when the environment has none.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

#[test]
fn wgpu_demo_prints_no_xdg_runtime_dir_warning() {
    let output = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--device", "wgpu", "--steps", "1"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}
