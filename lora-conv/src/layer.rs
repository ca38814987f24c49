//! burn's Conv1d/2d/3d seen through one trait, so that the bypass module is written once.

use burn::module::{Module, ModuleDisplay, Param};
use burn::nn::conv::{Conv1d, Conv2d, Conv3d};
use burn::nn::{PaddingConfig1d, PaddingConfig2d, PaddingConfig3d};
use burn::tensor::Tensor;

use crate::functional::conv::same_rank;
use crate::geometry::{ConvGeometry, Padding};

/// A convolution layer that conv LoRA can wrap.
pub trait ConvLayer: Module + ModuleDisplay {
    /// Number of spatial axes (1, 2, 3).
    const DIMS: usize;

    /// The layer's geometry.
    fn geometry(&self) -> ConvGeometry;

    /// The layer's forward pass on an input of rank `N = DIMS + 2`.
    ///
    /// # Panics
    /// If `N != DIMS + 2`.
    fn forward_nd<const N: usize>(&self, x: Tensor<N>) -> Tensor<N>;

    /// The layer with `delta` (the kernel's shape, rank `N`) added to its kernel (detached).
    ///
    /// # Panics
    /// If `N != DIMS + 2`.
    fn add_delta<const N: usize>(self, delta: Tensor<N>) -> Self;

    /// The kernel `[t, s/g, k..]`, as a rank-`N` tensor.
    ///
    /// # Panics
    /// If `N != DIMS + 2`.
    fn kernel<const N: usize>(&self) -> Tensor<N>;

    /// The bias `[t]`, if the layer has one.
    fn bias_values(&self) -> Option<Tensor<1>>;

    /// The forward pass with `delta` added to the kernel, differentiable in `delta` (the
    /// weight-space form of an adapted conv). `delta` has the kernel's shape and rank `N`.
    ///
    /// # Panics
    /// If `N != DIMS + 2`.
    fn forward_with_delta<const N: usize>(&self, x: Tensor<N>, delta: Tensor<N>) -> Tensor<N>;
}

impl ConvLayer for Conv1d {
    const DIMS: usize = 1;

    fn geometry(&self) -> ConvGeometry {
        let [t, c, k] = self.weight.lazy_shape().dims();
        ConvGeometry {
            in_channels: c * self.groups,
            out_channels: t,
            kernel: vec![k],
            stride: vec![self.stride],
            dilation: vec![self.dilation],
            padding: match self.padding {
                PaddingConfig1d::Same => Padding::Same,
                PaddingConfig1d::Valid => Padding::Explicit(vec![(0, 0)]),
                PaddingConfig1d::Explicit(a, b) => Padding::Explicit(vec![(a, b)]),
            },
            groups: self.groups,
        }
    }

    fn forward_nd<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        same_rank(self.forward(same_rank::<N, 3>(x)))
    }

    fn forward_with_delta<const N: usize>(&self, x: Tensor<N>, delta: Tensor<N>) -> Tensor<N> {
        let delta = same_rank::<N, 3>(delta);
        let layer = Self {
            weight: self.weight.clone().map(|w| w + delta),
            ..self.clone()
        };
        layer.forward_nd(x)
    }

    fn add_delta<const N: usize>(self, delta: Tensor<N>) -> Self {
        let delta = same_rank::<N, 3>(delta);
        Self {
            weight: self.weight.map(|w| (w + delta).detach()),
            ..self
        }
    }

    fn kernel<const N: usize>(&self) -> Tensor<N> {
        same_rank(self.weight.val())
    }

    fn bias_values(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(Param::val)
    }
}

impl ConvLayer for Conv2d {
    const DIMS: usize = 2;

    fn geometry(&self) -> ConvGeometry {
        let [t, c, kh, kw] = self.weight.lazy_shape().dims();
        ConvGeometry {
            in_channels: c * self.groups,
            out_channels: t,
            kernel: vec![kh, kw],
            stride: self.stride.to_vec(),
            dilation: self.dilation.to_vec(),
            padding: match self.padding {
                PaddingConfig2d::Same => Padding::Same,
                PaddingConfig2d::Valid => Padding::Explicit(vec![(0, 0); 2]),
                PaddingConfig2d::Explicit(top, left, bottom, right) => {
                    Padding::Explicit(vec![(top, bottom), (left, right)])
                }
            },
            groups: self.groups,
        }
    }

    fn forward_nd<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        same_rank(crate::kernels::conv2d::forward(self, same_rank::<N, 4>(x)))
    }

    fn forward_with_delta<const N: usize>(&self, x: Tensor<N>, delta: Tensor<N>) -> Tensor<N> {
        let delta = same_rank::<N, 4>(delta);
        let layer = Self {
            weight: self.weight.clone().map(|w| w + delta),
            ..self.clone()
        };
        layer.forward_nd(x)
    }

    fn add_delta<const N: usize>(self, delta: Tensor<N>) -> Self {
        let delta = same_rank::<N, 4>(delta);
        Self {
            weight: self.weight.map(|w| (w + delta).detach()),
            ..self
        }
    }

    fn kernel<const N: usize>(&self) -> Tensor<N> {
        same_rank(self.weight.val())
    }

    fn bias_values(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(Param::val)
    }
}

impl ConvLayer for Conv3d {
    const DIMS: usize = 3;

    fn geometry(&self) -> ConvGeometry {
        let [t, c, kd, kh, kw] = self.weight.lazy_shape().dims();
        ConvGeometry {
            in_channels: c * self.groups,
            out_channels: t,
            kernel: vec![kd, kh, kw],
            stride: self.stride.to_vec(),
            dilation: self.dilation.to_vec(),
            padding: match self.padding {
                PaddingConfig3d::Same => Padding::Same,
                PaddingConfig3d::Valid => Padding::Explicit(vec![(0, 0); 3]),
                PaddingConfig3d::Explicit(d, h, w) => {
                    Padding::Explicit(vec![(d, d), (h, h), (w, w)])
                }
            },
            groups: self.groups,
        }
    }

    fn forward_nd<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        same_rank(self.forward(same_rank::<N, 5>(x)))
    }

    fn forward_with_delta<const N: usize>(&self, x: Tensor<N>, delta: Tensor<N>) -> Tensor<N> {
        let delta = same_rank::<N, 5>(delta);
        let layer = Self {
            weight: self.weight.clone().map(|w| w + delta),
            ..self.clone()
        };
        layer.forward_nd(x)
    }

    fn add_delta<const N: usize>(self, delta: Tensor<N>) -> Self {
        let delta = same_rank::<N, 5>(delta);
        Self {
            weight: self.weight.map(|w| (w + delta).detach()),
            ..self
        }
    }

    fn kernel<const N: usize>(&self) -> Tensor<N> {
        same_rank(self.weight.val())
    }

    fn bias_values(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(Param::val)
    }
}
