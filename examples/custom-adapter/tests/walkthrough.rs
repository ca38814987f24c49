//! The walkthrough of `main.rs`, as a test, so that `cargo test --workspace` (CI) runs it: a
//! type defined in this crate gets attach, training, merge/unmerge, the bypass form, native
//! files and 3D inflation from the library with nothing but its registration.

#[test]
fn an_outside_type_gets_every_library_feature() {
    if let Err(e) = custom_adapter::walkthrough::run() {
        panic!("{e}");
    }
}
