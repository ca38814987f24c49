//! A type defined outside the library through the `compare` experiment, by its library API
//! (`experiments::compare::run`), on synthetic data in the real file formats: after one
//! `register` line it is swept, trained, counted against the conv weights it adapts and
//! reported like a built-in type.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::tensor::Device;
use custom_adapter::SeparableAdapter;
use experiments::compare::plan::{Overrides, Plan};
use experiments::compare::{RunOptions, run};
use experiments::record::read_runs;
use lora_conv::ConvVariant;
use lora_conv::bounds::param_count;

#[test]
fn an_outside_type_runs_through_compare() {
    lora_conv::register(ConvVariant::of::<SeparableAdapter>()).unwrap();
    let variant: ConvVariant = "separable".parse().unwrap();
    let root = std::env::temp_dir().join(format!("custom-adapter-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (data, out, cache) = (root.join("data"), root.join("out"), root.join("cache"));
    experiments::data::synthetic::write(&data, false).unwrap();
    let plan = Plan::new(
        true,
        &Overrides {
            seeds: Some(1),
            steps: Some(4),
            ranks: Some(vec![1]),
            variants: Some(vec![variant]),
            ..Overrides::default()
        },
    );
    // Training device, as the `compare` binary builds it.
    let device = Device::flex().autodiff();
    run(
        &plan,
        &data,
        &out,
        &cache,
        RunOptions::default(),
        "cpu",
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let runs = read_runs(&out.join("runs.jsonl")).unwrap();
    let ours: Vec<_> = runs
        .iter()
        .filter(|r| r.method == "separable" && r.phase == "final")
        .collect();
    assert!(!ours.is_empty(), "no final run of the separable type");
    let geometries = plan.pretrain.cnn.geometries();
    for r in &ours {
        // Every conv adapted, each counted by the type's own formula at its rank, below
        // break-even, and the run's total is their sum.
        assert_eq!(r.layers.len(), geometries.len(), "{}: adapted layers", r.id);
        for (layer, geometry) in r.layers.iter().zip(&geometries) {
            assert_eq!(
                layer.adapter_params,
                param_count(variant, geometry, layer.rank),
                "{}: {}",
                r.id,
                layer.path
            );
            assert!(layer.share < 1.0, "{}: {} at break-even", r.id, layer.path);
        }
        let total: usize = r.layers.iter().map(|l| l.adapter_params).sum();
        assert_eq!(r.adapter_params, total, "{}: adapter parameters", r.id);
        // What the model really trains: those adapters plus the 10-way linear head.
        let width = plan.pretrain.cnn.widths.last().copied().unwrap_or(0);
        assert_eq!(
            r.trainable_params,
            total + width * 10 + 10,
            "{}: trainable parameters counted on the model",
            r.id
        );
        assert!(
            (0.0..=1.0).contains(&r.test_accuracy),
            "{}: accuracy {}",
            r.id,
            r.test_accuracy
        );
        assert_eq!(r.steps, 4, "{}: steps", r.id);
        assert!(
            !r.loss_curve.is_empty() && r.loss_curve.iter().all(|l| l.is_finite()),
            "{}: loss curve {:?}",
            r.id,
            r.loss_curve
        );
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("separable"),
        "the report has no separable row"
    );
    let _ = std::fs::remove_dir_all(&root);
}
