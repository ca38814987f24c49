//! The brain task's splits: the validation slab cut out of the training hemisphere, the test
//! hemisphere as it comes, and the centre slices the 2D method trains on.

use super::plan::Plan;
use crate::data::Images;
use crate::data::brain::BrainSplit;
use crate::data::brain::tissue::Agreement;

/// The patches, split into training, validation slab and mirrored test hemisphere.
#[derive(Debug, Clone)]
pub struct BrainData {
    /// Training patches (left hemisphere, outside the slab and its guard band).
    pub train: Images,
    /// Validation patches (the slab of the left hemisphere).
    pub val: Images,
    /// Test patches (right hemisphere, mirrored).
    pub test: Images,
    /// Patch centres (world mm) of the training patches.
    pub train_centres: Vec<[f32; 3]>,
    /// Patch centres of the test patches (x mirrored).
    pub test_centres: Vec<[f32; 3]>,
    /// Left-hemisphere patches dropped in the guard band around the slab.
    pub dropped_guard: usize,
    /// Patches dropped at the midline.
    pub dropped_midline: usize,
    /// World y range of the slab (mm).
    pub slab_y: (f32, f32),
    /// The labelling procedure's agreement with a reference, where there is one.
    pub labelling: Vec<Agreement>,
}

/// Cut the validation slab out of the training hemisphere.
pub fn split_slab(split: BrainSplit, plan: &Plan) -> BrainData {
    let mut ys: Vec<f32> = split.train_centres.iter().map(|c| c[1]).collect();
    ys.sort_by(f32::total_cmp);
    let q = |f: f64| {
        ys.get(((ys.len().saturating_sub(1)) as f64 * f).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (lo, hi) = (q(plan.val_slab.0), q(plan.val_slab.1));
    let guard = (plan.val_guard * (plan.patches.size * plan.patches.factor) as f64) as f32;
    let (mut train, mut val, mut centres) = (Vec::new(), Vec::new(), Vec::new());
    let mut dropped = 0;
    for (i, c) in split.train_centres.iter().enumerate() {
        if c[1] >= lo && c[1] <= hi {
            val.push(i);
        } else if c[1] < lo - guard || c[1] > hi + guard {
            train.push(i);
            centres.push(*c);
        } else {
            dropped += 1;
        }
    }
    BrainData {
        train: split.train.select(&train),
        val: split.train.select(&val),
        test: split.test,
        train_centres: centres,
        test_centres: split.test_centres,
        dropped_guard: dropped,
        dropped_midline: split.dropped_midline,
        slab_y: (lo, hi),
        labelling: split.labelling,
    }
}

/// The centre depth slice of every patch, as images.
pub fn centre_slices(volumes: &Images) -> Images {
    let [d, h, w] = [volumes.dims[0], volumes.dims[1], volumes.dims[2]];
    let size = d * h * w;
    let mut pixels = Vec::with_capacity(volumes.len() * h * w);
    for i in 0..volumes.len() {
        let start = i * size + (d / 2) * h * w;
        pixels.extend_from_slice(&volumes.pixels[start..start + h * w]);
    }
    Images {
        pixels,
        dims: vec![h, w],
        labels: volumes.labels.clone(),
    }
}

/// Examples per class `0..classes`.
pub fn class_counts(set: &Images, classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &l in &set.labels {
        if l < counts.len() {
            counts[l] += 1;
        }
    }
    counts
}
