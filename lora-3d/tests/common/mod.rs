//! A small 2D CNN with every layer kind inflation supports, its 3D form, and helpers.

#![allow(dead_code, clippy::unwrap_used)]

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig, Conv3d};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Distribution, Tensor};
use lora_3d::{Inflate, Inflation, PerSlice, Result};
use lora_core::testing::{Tol, check_close};

/// The geometry of the middle conv, which the tests vary.
#[derive(Debug, Clone)]
pub struct Mid {
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub kernel: [usize; 2],
    pub padding: PaddingConfig2d,
}

/// The grid of middle-conv geometries.
pub fn grid() -> Vec<Mid> {
    let p = |a, b| PaddingConfig2d::Explicit(a, b, a, b);
    vec![
        Mid {
            stride: [1, 1],
            dilation: [1, 1],
            groups: 1,
            kernel: [3, 3],
            padding: p(1, 1),
        },
        Mid {
            stride: [2, 2],
            dilation: [1, 1],
            groups: 1,
            kernel: [3, 3],
            padding: p(1, 1),
        },
        Mid {
            stride: [1, 2],
            dilation: [2, 1],
            groups: 2,
            kernel: [3, 3],
            padding: p(2, 0),
        },
        Mid {
            stride: [1, 1],
            dilation: [1, 1],
            groups: 8,
            kernel: [3, 3],
            padding: PaddingConfig2d::Same,
        },
        Mid {
            stride: [2, 1],
            dilation: [1, 1],
            groups: 1,
            kernel: [1, 3],
            padding: PaddingConfig2d::Valid,
        },
        Mid {
            stride: [1, 1],
            dilation: [2, 2],
            groups: 1,
            kernel: [5, 3],
            padding: PaddingConfig2d::Same,
        },
    ]
}

#[derive(Module, Debug)]
pub struct Net2d {
    pub c1: Conv2d,
    pub n1: BatchNorm,
    pub pool: MaxPool2d,
    pub c2: Conv2d,
    pub n2: BatchNorm,
    pub c3: Conv2d,
    pub gap: AdaptiveAvgPool2d,
    pub head: Linear,
    pub act: Relu,
}

#[derive(Module, Debug)]
pub struct Net3d {
    pub c1: Conv3d,
    pub n1: BatchNorm,
    pub pool: PerSlice<MaxPool2d>,
    pub c2: Conv3d,
    pub n2: BatchNorm,
    pub c3: Conv3d,
    pub gap: PerSlice<AdaptiveAvgPool2d>,
    pub head: Linear,
    pub act: Relu,
}

impl Net2d {
    /// A net with random weights and random BatchNorm statistics.
    pub fn new(mid: &Mid, device: &Device) -> Self {
        let c1 = Conv2dConfig::new([2, 8], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device);
        let c2 = Conv2dConfig::new([8, 8], mid.kernel)
            .with_stride(mid.stride)
            .with_dilation(mid.dilation)
            .with_groups(mid.groups)
            .with_padding(mid.padding.clone())
            .init(device);
        let c3 = Conv2dConfig::new([8, 6], [3, 1]).init(device);
        Self {
            c1,
            n1: random_norm(8, device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            c2,
            n2: random_norm(8, device),
            c3,
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: LinearConfig::new(6, 5).init(device),
            act: Relu::new(),
        }
    }

    /// `[B, 2, H, W] -> [B, 5]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.act.forward(self.n1.forward(self.c1.forward(x)));
        let x = self.pool.forward(x);
        let x = self.act.forward(self.n2.forward(self.c2.forward(x)));
        let x = self.gap.forward(self.c3.forward(x));
        let [b, c, _, _] = x.dims();
        self.head.forward(x.reshape([b, c])).reshape([b, 5, 1, 1])
    }
}

impl Net3d {
    /// `[B, 2, D, H, W] -> [B, 5, D, 1, 1]`: the head on every depth slice.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = self.act.forward(self.n1.forward(self.c1.forward(x)));
        let x = self.pool.forward(x);
        let x = self.act.forward(self.n2.forward(self.c2.forward(x)));
        let x = self.gap.forward(self.c3.forward(x));
        let [b, c, d, _, _] = x.dims();
        let per_slice = self.head.forward(x.reshape([b, c, d]).swap_dims(1, 2));
        per_slice.swap_dims(1, 2).reshape([b, 5, d, 1, 1])
    }
}

impl Inflate for Net2d {
    type Output = Net3d;

    fn inflate(self, cx: &mut Inflation) -> Result<Net3d> {
        Ok(Net3d {
            c1: self.c1.inflate(cx)?,
            n1: self.n1.inflate(cx)?,
            pool: self.pool.inflate(cx)?,
            c2: self.c2.inflate(cx)?,
            n2: self.n2.inflate(cx)?,
            c3: self.c3.inflate(cx)?,
            gap: self.gap.inflate(cx)?,
            head: self.head.inflate(cx)?,
            act: self.act.inflate(cx)?,
        })
    }
}

fn random_norm(n: usize, device: &Device) -> BatchNorm {
    let norm = BatchNormConfig::new(n).init(device);
    let u = |lo, hi| Tensor::<1>::random([n], Distribution::Uniform(lo, hi), device);
    BatchNorm {
        gamma: Param::from_tensor(u(0.5, 1.5)),
        beta: Param::from_tensor(u(-0.5, 0.5)),
        running_mean: RunningState::new(u(-0.3, 0.3)),
        running_var: RunningState::new(u(0.5, 2.0)),
        ..norm
    }
}

/// Depth slice `d` of a volume, as a batch of images.
pub fn slice(x: &Tensor<5>, d: usize) -> Tensor<4> {
    let [b, c, _, h, w] = x.dims();
    x.clone()
        .slice([0..b, 0..c, d..d + 1, 0..h, 0..w])
        .reshape([b, c, h, w])
}

/// A random volume `[2, 2, D, 16, 16]`.
pub fn volume(depth: usize, device: &Device) -> Tensor<5> {
    Tensor::random(
        [2, 2, depth, 16, 16],
        Distribution::Normal(0.0, 1.0),
        device,
    )
}

/// Whether `net3d` on `x` matches `net2d` on every depth slice of `x` within `tol`
/// (`|got − want|_max ≤ max(tol.rel · |want|_max, tol.abs)` per slice); the error names the
/// slice and the numbers.
pub fn per_slice_check(
    net2d: &Net2d,
    net3d: &Net3d,
    x: &Tensor<5>,
    tol: Tol,
) -> std::result::Result<(), String> {
    let y3 = net3d.forward(x.clone());
    let [b, k, depth, _, _] = y3.dims();
    for d in 0..depth {
        let want = net2d.forward(slice(x, d));
        let got = y3
            .clone()
            .slice([0..b, 0..k, d..d + 1, 0..1, 0..1])
            .reshape([b, k, 1, 1]);
        check_close(got, want, tol, &format!("depth slice {d}"))?;
    }
    Ok(())
}

/// The largest absolute difference between `net3d` on `x` and `net2d` on any depth slice of
/// `x` (for negative controls: a change that must show).
pub fn per_slice_max_diff(net2d: &Net2d, net3d: &Net3d, x: &Tensor<5>) -> f32 {
    let y3 = net3d.forward(x.clone());
    let [b, k, depth, _, _] = y3.dims();
    (0..depth)
        .map(|d| {
            let want = net2d.forward(slice(x, d));
            let got = y3
                .clone()
                .slice([0..b, 0..k, d..d + 1, 0..1, 0..1])
                .reshape([b, k, 1, 1]);
            (got - want).abs().max().into_scalar::<f32>()
        })
        .fold(0.0, f32::max)
}
