//! Convolution geometry: what an adapter needs to know about the layer it adapts.

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

    /// Number of spatial axes.
    pub fn dims(&self) -> usize {
        self.kernel.len()
    }

    /// `s / g`: the input channels each output channel sees.
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups.max(1)
    }

    /// `Π k_j`.
    pub fn kernel_volume(&self) -> usize {
        self.kernel.iter().product()
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
    /// padding and dilation: what weight-space adapters need.
    pub fn from_weight_shape(shape: &[usize], groups: usize) -> Option<Self> {
        match shape {
            [t, c, kernel @ ..] if !kernel.is_empty() => Some(Self {
                groups,
                ..Self::new(c * groups, *t, kernel.to_vec())
            }),
            _ => None,
        }
    }
}

/// burn's `Same` padding for one axis: `(begin, end)`.
pub fn same_padding(kernel: usize, stride: usize, size_in: usize) -> (usize, usize) {
    let size_out = size_in.div_ceil(stride.max(1));
    let total = if size_out > 0 {
        ((size_out - 1) * stride + kernel).saturating_sub(size_in)
    } else {
        0
    };
    (total / 2, total - total / 2)
}
