//! The outside type, written to LyCORIS as full diffs, is what the real LyCORIS 4.1.3 loads to
//! our outputs. `tests/fixtures/lycoris-full/` was made by `cargo run -p custom-adapter --
//! --fixture` and checked by `scripts/fixtures/custom_full.py` (its `output_lycoris` is the real
//! LyCORIS's forward). This test checks that today's writer still writes that file from the
//! same native adapter, and that the native adapter on the same base gives LyCORIS's output.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use custom_adapter::{Net, SeparableAdapter, full_diff};
use lora_conv::ConvVariant;
use lora_files::StateDict;
use lora_files::format::{self, ReadOptions};
use lora_files::model::{PathMap, attach_file};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lycoris-full")
        .join(name)
}

fn read(name: &str) -> StateDict {
    StateDict::read(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn real_lycoris_loads_the_full_diff_to_our_output() {
    lora_conv::register(ConvVariant::of::<SeparableAdapter>()).unwrap_or_else(|e| panic!("{e}"));
    let base = read("base.safetensors");
    let native = format::read(&fixture("native.safetensors"), &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = native.layers.iter().map(|l| l.algorithm.name()).collect();
    assert_eq!(names, ["separable", "separable"]);

    // Today's writer gives the file LyCORIS was checked on, tensor for tensor.
    let out = std::env::temp_dir().join(format!("custom-full-{}.safetensors", std::process::id()));
    let moved = full_diff::write(&native, &base, "base", &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(moved, ["a", "b"]);
    let written = StateDict::read(&out).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&out);
    let committed = read("lycoris.safetensors");
    let keys: Vec<&String> = written.tensors.keys().collect();
    assert_eq!(keys, committed.tensors.keys().collect::<Vec<_>>());
    assert_eq!(keys, ["lycoris_a.diff", "lycoris_b.diff"]);
    for (k, v) in &written.tensors {
        assert_eq!(v.to_f32(), committed.tensors[k].to_f32(), "{k}");
    }

    // The native adapter on the base, against the real LyCORIS's forward of that file.
    let device = Device::flex();
    let net =
        Net::from_state_dict(&base, "base.safetensors", &device).unwrap_or_else(|e| panic!("{e}"));
    let adapted = attach_file(&net, &native, &PathMap::identity(), Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let reference = read("reference.safetensors");
    let tensor = |name: &str| {
        let (shape, values) = reference
            .f32("reference", name, "the fixture has it")
            .unwrap_or_else(|e| panic!("{e}"));
        Tensor::<4>::from_data(
            TensorData::new(values, [shape[0], shape[1], shape[2], shape[3]]),
            &device,
        )
    };
    let ours = adapted.forward(tensor("input"));
    let theirs = tensor("output_lycoris");
    let top = theirs.clone().abs().max().into_scalar::<f32>();
    let diff = (ours - theirs).abs().max().into_scalar::<f32>();
    assert!(
        diff <= 1e-5 * top.max(1.0),
        "ours vs the real LyCORIS: max |diff| {diff:e} (largest |output| {top})"
    );
}

/// A downstream algorithm that reads the outside type in some other key layout does not take
/// over its native layers: those hold the module's own factor names, which it does not claim,
/// so the reader keeps the generic module algorithm (`Registry::named`).
#[test]
fn an_algorithm_for_another_layout_leaves_native_layers_alone() {
    use lora_files::Registry;
    use lora_files::algorithm::{Algorithm, Delta, Factors, Site};

    #[derive(Debug)]
    struct OtherLayout;
    impl Algorithm for OtherLayout {
        fn name(&self) -> &'static str {
            "separable"
        }
        fn claims(&self, names: &[&str]) -> bool {
            names == ["sep_a", "sep_b"]
        }
        fn rank(&self, site: Site<'_>, _: &Factors) -> lora_files::Result<usize> {
            Err(site.shape_error("sep_a", "never used here", &[]))
        }
        fn delta(&self, site: Site<'_>, _: &Factors) -> lora_files::Result<Delta> {
            Err(site.shape_error("sep_a", "never used here", &[]))
        }
    }
    static OTHER: OtherLayout = OtherLayout;

    lora_conv::register(ConvVariant::of::<SeparableAdapter>()).unwrap_or_else(|e| panic!("{e}"));
    let options = ReadOptions {
        registry: Registry::builtin().with(&OTHER),
        ..ReadOptions::default()
    };
    // By name alone, the registered algorithm answers; for the native layers, the module.
    let by_name = options.registry.by_name("separable").expect("an algorithm");
    assert!(std::ptr::addr_eq(
        by_name as *const dyn Algorithm,
        &OTHER as *const OtherLayout
    ));
    let with_other =
        format::read(&fixture("native.safetensors"), &options).unwrap_or_else(|e| panic!("{e}"));
    let plain = format::read(&fixture("native.safetensors"), &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    for (a, b) in with_other.layers.iter().zip(&plain.layers) {
        assert_eq!(a.algorithm.name(), "separable");
        let (da, db) = (
            a.delta("with other").map(|d| d.matrix.into_data()),
            b.delta("plain").map(|d| d.matrix.into_data()),
        );
        assert_eq!(
            da.map_err(|e| e.to_string()),
            db.map_err(|e| e.to_string()),
            "{}",
            a.module
        );
    }
}
