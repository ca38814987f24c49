//! A headless wgpu run (Mesa lavapipe on a CPU-only box) prints no "XDG_RUNTIME_DIR is invalid
//! or not set" lines: the binaries give it a private runtime dir when the environment has none.
//! It runs the `demo` example, which `cargo test` builds beside the test executables
//! (`<target>/debug/examples/demo`).

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

#[test]
fn wgpu_demo_prints_no_xdg_runtime_dir_warning() {
    // This executable is <target>/debug/deps/wgpu_quiet-<hash>; the examples are in
    // <target>/debug/examples.
    let exe = std::env::current_exe().unwrap();
    let demo = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|debug| debug.join("examples").join("demo"))
        .unwrap();
    assert!(demo.exists(), "{} was not built", demo.display());
    let output = Command::new(&demo)
        .args(["--device", "wgpu", "--steps", "1"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}
