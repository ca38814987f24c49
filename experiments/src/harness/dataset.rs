//! The input shape as data: what a study's network needs to know about its examples (channels,
//! spatial size, classes) comes from the dataset, never from literals in the execution path.

use serde::{Deserialize, Serialize};

use crate::data::Images;
use crate::error::{ExpError, Result};

/// The shape of a dataset's examples and its number of classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataShape {
    /// Channels of one example.
    pub channels: usize,
    /// Spatial size of one example (`[h, w]` or `[d, h, w]`).
    pub dims: Vec<usize>,
    /// Classes.
    pub classes: usize,
}

impl DataShape {
    /// The shape of a labelled set whose labels lie in `0..classes` ([`Images`] holds one
    /// channel per example).
    pub fn of(images: &Images, classes: usize) -> Self {
        Self {
            channels: 1,
            dims: images.dims.clone(),
            classes,
        }
    }

    /// Values per example.
    pub fn example_size(&self) -> usize {
        self.channels * self.dims.iter().product::<usize>()
    }

    /// The `[h, w]` of 2D examples.
    ///
    /// # Errors
    /// [`ExpError::Input`] for examples that are not 2D.
    pub fn image(&self) -> Result<[usize; 2]> {
        match self.dims[..] {
            [h, w] => Ok([h, w]),
            _ => Err(ExpError::Input(format!(
                "expected 2D examples, got shape {:?}",
                self.dims
            ))),
        }
    }

    /// Refuse data of another shape than `expected` (e.g. fine-tuning data that does not fit
    /// the pretrained network's input).
    ///
    /// # Errors
    /// [`ExpError::Input`] naming both shapes and `what`.
    pub fn expect(&self, expected: &DataShape, what: &str) -> Result<()> {
        if self.channels == expected.channels && self.dims == expected.dims {
            Ok(())
        } else {
            Err(ExpError::Input(format!(
                "{what}: examples of {} channel(s) x {:?}, but the network takes {} x {:?}",
                self.channels, self.dims, expected.channels, expected.dims
            )))
        }
    }
}
