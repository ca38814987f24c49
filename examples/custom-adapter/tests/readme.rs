//! The README's quick start is the compiled example `examples/quickstart.rs`: the first Rust
//! block of README.md must be that file, header comment aside.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[test]
fn the_readme_shows_the_compiled_quick_start() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/quickstart.rs")).unwrap();
    let start = readme.find("```rust\n").expect("a rust block in README.md") + 8;
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let code: String = example
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        block, code,
        "README.md's quick start differs from examples/quickstart.rs"
    );
}
