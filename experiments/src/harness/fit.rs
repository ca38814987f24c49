//! The one way a study trains a model for a spec and records it: Adam for the spec's steps, the
//! best validation checkpoint kept, the test split scored on final runs only.

use burn::tensor::Device;

use super::protocol::{Cell, Phase, Spec};
use super::record::{LayerRank, RecordBuilder, RunRecord};
use crate::data::Images;
use crate::error::Result;
use crate::train::{
    Augment, Classifier, Metric, Schedule, TrainConfig, confusion, peak_memory_bytes, predict,
    reset_peak_memory, train,
};

/// What a run trains on and how it is scored.
#[derive(Debug, Clone, Copy)]
pub struct FitData<'a> {
    /// Training examples.
    pub train: &'a Images,
    /// Validation examples (checkpoint choice, and the sweep's score).
    pub val: &'a Images,
    /// Test examples, scored on final runs only.
    pub test: &'a Images,
    /// The score on validation and test.
    pub metric: Metric,
    /// Record per-class recall and the confusion matrix over this many classes.
    pub per_class: Option<usize>,
}

/// How a run trains, besides the spec's steps, rate and seed.
#[derive(Debug, Clone, Copy)]
pub struct FitSettings {
    /// Examples per step.
    pub batch_size: usize,
    /// Evaluation periods.
    pub evals: usize,
    /// The rate over the steps.
    pub schedule: Schedule,
    /// Augmentation of training examples.
    pub augment: Augment,
}

/// Train `model` for `spec`, keep the best validation checkpoint, test it when the spec is a
/// final run, and build the record (parameters counted on the model as given: `base_params`
/// and `layers` are the study's).
///
/// # Errors
/// As [`train`].
pub fn fit<const N: usize, M: Classifier<N>, C: Cell>(
    spec: &Spec<C>,
    model: M,
    layers: Vec<LayerRank>,
    base_params: usize,
    data: FitData<'_>,
    settings: FitSettings,
    device: &Device,
) -> Result<RunRecord> {
    let counts = lora_core::param_counts(&model);
    let config = TrainConfig {
        steps: spec.steps,
        batch_size: settings.batch_size,
        lr: spec.lr,
        seed: spec.seed,
        evals: settings.evals,
        schedule: settings.schedule,
        augment: settings.augment,
    };
    reset_peak_memory();
    let trained = train::<N, M>(
        model,
        data.train,
        Some((data.val, data.metric)),
        &config,
        device,
        &spec.label(),
    )?;
    let peak = peak_memory_bytes();
    let mut record = RecordBuilder::new(spec.head())
        .data(
            data.train.len(),
            data.val.len(),
            config.batch_size.min(data.train.len()),
        )
        .params(counts.trainable, base_params, layers)
        .trained(&trained)
        .peak_memory(peak);
    // Sweeps never look at the test split.
    if spec.phase == Phase::Final {
        let test = data.test;
        let pred = predict::<N, M>(&trained.model, test, device);
        let per_class = data.per_class.map(|c| confusion(&pred, &test.labels, c));
        record = record.tested(
            test.len(),
            data.metric.score(&pred, &test.labels),
            per_class,
        );
    }
    Ok(record.build())
}
