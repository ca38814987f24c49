//! Convolution geometry: what an adapter needs to know about the layer it adapts.

use lora_core::{LoraError, Result};
use serde::{Deserialize, Serialize};

/// Padding of a convolution, per spatial axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Padding {
    /// `(begin, end)` zeros on each spatial axis; `begin != end` is asymmetric padding.
    Explicit(Vec<(usize, usize)>),
    /// burn's `Same`: output size `ceil(in / stride)`, the extra zero at the end when the total
    /// is odd. Like burn, it ignores dilation when computing the total.
    Same,
}

/// The geometry of a convolution with `d` spatial axes (d = 1, 2, 3).
///
/// The kernel is `[out, in/groups, k_1..k_d]` (PyTorch's layout, which burn uses too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeometry {
    /// Input channels `s`.
    pub in_channels: usize,
    /// Output channels `t`.
    pub out_channels: usize,
    /// Kernel size per spatial axis `k_1..k_d`.
    pub kernel: Vec<usize>,
    /// Stride per axis.
    pub stride: Vec<usize>,
    /// Dilation per axis.
    pub dilation: Vec<usize>,
    /// Padding.
    pub padding: Padding,
    /// Groups `g`: `s` and `t` are both multiples of `g`.
    pub groups: usize,
}

impl ConvGeometry {
    /// Stride 1, no padding, dilation 1, one group.
    pub fn new(in_channels: usize, out_channels: usize, kernel: Vec<usize>) -> Self {
        let d = kernel.len();
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: vec![1; d],
            dilation: vec![1; d],
            padding: Padding::Explicit(vec![(0, 0); d]),
            groups: 1,
        }
    }

    /// Check that this is the geometry of a convolution: 1 to 3 spatial axes, positive channel
    /// counts, kernel sizes, strides, dilations and groups, groups that divide both channel
    /// counts, and one stride, dilation and (explicit) padding pair per axis.
    ///
    /// The counting and bound functions of [`crate::functional`] do not panic on a geometry
    /// that fails this check, but their answers mean nothing for it.
    ///
    /// # Errors
    /// [`LoraError::InvalidGeometry`] naming the first offending field and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(LoraError::InvalidGeometry { reason });
        let d = self.kernel.len();
        if !(1..=3).contains(&d) {
            return bad(format!(
                "kernel {:?} has {d} spatial axes; a Conv1d/2d/3d kernel has 1 to 3",
                self.kernel
            ));
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return bad(format!(
                "in_channels {} and out_channels {} must both be positive",
                self.in_channels, self.out_channels
            ));
        }
        if self.kernel.contains(&0) {
            return bad(format!("kernel {:?} has a zero-size axis", self.kernel));
        }
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return bad(format!(
                "groups {} must be positive and divide in_channels {} and out_channels {}",
                self.groups, self.in_channels, self.out_channels
            ));
        }
        for (name, values) in [("stride", &self.stride), ("dilation", &self.dilation)] {
            if values.len() != d {
                return bad(format!(
                    "{name} {values:?} has {} entries for a kernel with {d} axes",
                    values.len()
                ));
            }
            if values.contains(&0) {
                return bad(format!("{name} {values:?} has a zero entry"));
            }
        }
        if let Padding::Explicit(pairs) = &self.padding
            && pairs.len() != d
        {
            return bad(format!(
                "padding {pairs:?} has {} pairs for a kernel with {d} axes",
                pairs.len()
            ));
        }
        Ok(())
    }

    /// Number of spatial axes.
    pub fn dims(&self) -> usize {
        self.kernel.len()
    }

    /// `s / g`: the input channels each output channel sees.
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups.max(1)
    }

    /// `Π k_j` (saturating at `usize::MAX`).
    pub fn kernel_volume(&self) -> usize {
        self.kernel
            .iter()
            .fold(1usize, |acc, &k| acc.saturating_mul(k))
    }

    /// The base kernel's shape `[t, s/g, k_1..k_d]`.
    pub fn weight_shape(&self) -> Vec<usize> {
        let mut shape = vec![self.out_channels, self.in_per_group()];
        shape.extend_from_slice(&self.kernel);
        shape
    }

    /// The `(begin, end)` padding for an input with these spatial sizes.
    pub fn padding_for(&self, input: &[usize]) -> Vec<(usize, usize)> {
        match &self.padding {
            Padding::Explicit(pairs) => pairs.clone(),
            Padding::Same => input
                .iter()
                .zip(self.kernel.iter().zip(&self.stride))
                .map(|(&size, (&k, &stride))| same_padding(k, stride, size))
                .collect(),
        }
    }

    /// The geometry of a kernel of shape `[t, s/g, k..]` with groups `g` and default stride,
    /// padding and dilation: what weight-space adapters need. `None` for a shape with no
    /// spatial axis, or when `(s/g)·g` overflows.
    pub fn from_weight_shape(shape: &[usize], groups: usize) -> Option<Self> {
        match shape {
            [t, c, kernel @ ..] if !kernel.is_empty() => Some(Self {
                groups,
                ..Self::new(c.checked_mul(groups)?, *t, kernel.to_vec())
            }),
            _ => None,
        }
    }
}

/// burn's `Same` padding for one axis: `(begin, end)`.
pub fn same_padding(kernel: usize, stride: usize, size_in: usize) -> (usize, usize) {
    let size_out = size_in.div_ceil(stride.max(1));
    let total = if size_out > 0 {
        (size_out - 1)
            .saturating_mul(stride)
            .saturating_add(kernel)
            .saturating_sub(size_in)
    } else {
        0
    };
    (total / 2, total - total / 2)
}
