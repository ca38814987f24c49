//! The brain task's validation slab: which left-hemisphere patches validate, which train, and
//! which the guard band drops, on a synthetic line of patch centres along y.

use experiments::data::Images;
use experiments::data::brain::BrainSplit;
use experiments::inflate3d::{Plan, split_slab};

/// 21 patches with centres every 8 mm along y (0..160 mm), labelled by position.
fn split() -> BrainSplit {
    let n = 21;
    let images = |n: usize| Images {
        pixels: vec![0.0; n],
        dims: vec![1, 1, 1],
        labels: (0..n).map(|i| i * 3 / n).collect(),
    };
    BrainSplit {
        train: images(n),
        test: images(2),
        dropped_midline: 0,
        train_centres: (0..n).map(|i| [-10.0, 8.0 * i as f32, 0.0]).collect(),
        test_centres: vec![[-10.0, 0.0, 0.0]; 2],
        labelling: Vec::new(),
    }
}

#[test]
fn guard_band_widths() {
    let mut plan = Plan::new(false, &Default::default());
    assert_eq!(
        (plan.val_slab, plan.val_guard),
        ((0.45, 0.55), 0.0),
        "the defaults"
    );
    // Quantiles 45%-55% of 21 centres: indices 9..=11, y 72..88 mm.
    let data = split_slab(split(), &plan);
    assert_eq!(data.slab_y, (72.0, 88.0));
    assert_eq!(
        (data.train.len(), data.val.len(), data.dropped_guard),
        (18, 3, 0)
    );
    // A guard of one patch side (16 voxels at 2 mm = 32 mm): centres within 32 mm of the slab
    // (y 40..64 and 96..120) go, 4 on each side.
    plan.val_guard = 1.0;
    let data = split_slab(split(), &plan);
    assert_eq!(
        (data.train.len(), data.val.len(), data.dropped_guard),
        (10, 3, 8)
    );
    // Every training centre is more than one patch side from every validation centre.
    let side = (plan.patches.size * plan.patches.factor) as f32;
    for c in &data.train_centres {
        assert!(c[1] < 72.0 - side || c[1] > 88.0 + side, "{c:?}");
    }
    plan.val_guard = -1.0;
    assert!(plan.check().is_err());
    plan.val_guard = 0.0;
    plan.val_slab = (0.6, 0.4);
    assert!(plan.check().is_err());
}
