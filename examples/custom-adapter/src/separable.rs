//! Separable LoRA, an adapter type written outside the library: this file is the whole type.
//!
//! `ΔK[t, s, k..] = scale · Σ_r up[t, r] · down[r, s] · g[k..]`: a rank-`r` channel mix times one
//! spatial kernel `g` shared by every rank, `r·(s/g + t) + K` parameters. Its bypass form is a
//! 1x1 conv `s -> r`, one depthwise conv with `g` on each of the `r` channels, and a 1x1 conv
//! `r -> t`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Shape, Tensor};
use lora_conv::functional::conv::{conv_nd, pointwise};
use lora_conv::{ConvAdapter, ConvArgs, Inflater};
use lora_core::init::{input_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, LoraError, Result};

/// `ΔK = scale · (up · down) ⊗ g`.
///
/// # Shapes
/// - `down`: `[r, s/g]`
/// - `up`: `[t, r]`
/// - `g`: `[K]`, the shared spatial kernel, flattened
/// - `delta_weight()`: `[t, s/g, k..]`
#[derive(Module, Debug)]
pub struct SeparableAdapter {
    /// 1x1 down conv `[r, s/g]`.
    pub down: Param<Tensor<2>>,
    /// 1x1 up conv `[t, r]`, zero at init.
    pub up: Param<Tensor<2>>,
    /// The spatial kernel `[K]`.
    pub g: Param<Tensor<1>>,
    /// `alpha / r`.
    pub scale: f64,
    /// The adapted kernel's shape `[t, s/g, k..]`.
    #[module(skip)]
    pub shape: Vec<usize>,
}

impl ConvAdapter for SeparableAdapter {
    const NAME: &'static str = "separable";
    const COUNT: &'static str = "r·(c + t) + K";

    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let [t, c, kernel @ ..] = shape else {
            return Err(LoraError::UnsupportedGeometry {
                path: path.to_string(),
                reason: format!("a separable adapter needs a conv kernel, got {shape:?}"),
            });
        };
        if kernel.is_empty() || shape.contains(&0) {
            return Err(LoraError::UnsupportedGeometry {
                path: path.to_string(),
                reason: format!("a separable adapter needs a conv kernel, got {shape:?}"),
            });
        }
        spec.check(path, shape, Self::rank_limit(shape), "min(out, in/groups)")?;
        let k: usize = kernel.iter().product();
        Ok(Self {
            down: input_factor([spec.rank, *c], *c, spec, device),
            up: zero_factor([*t, spec.rank], device),
            // Unit variance per tap, so ΔK has the scale of the channel mix.
            g: Param::from_tensor(Tensor::random(
                [k],
                Distribution::Normal(0.0, 1.0 / (k as f64).sqrt()),
                device,
            )),
            scale: spec.scale(),
            shape: shape.to_vec(),
        })
    }

    fn param_count(shape: &[usize], rank: usize) -> usize {
        let [t, c, kernel @ ..] = shape else { return 0 };
        rank.saturating_mul(c.saturating_add(*t))
            .saturating_add(kernel.iter().product::<usize>())
    }

    fn rank_limit(shape: &[usize]) -> usize {
        match shape {
            [t, c, _, ..] => (*t).min(*c),
            _ => 0,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn branch<const N: usize>(&self, x: Tensor<N>, conv: &ConvArgs) -> Option<Tensor<N>> {
        let r = self.down.lazy_shape()[0];
        let hidden = pointwise(x, self.down.val());
        // The same kernel g on every one of the r channels: a depthwise conv.
        let mut shape = vec![1, 1];
        shape.extend_from_slice(&self.shape[2..]);
        let g = self
            .g
            .val()
            .reshape::<N, _>(Shape::from(shape))
            .repeat_dim(0, r);
        let hidden = conv_nd(hidden, g, conv.stride, conv.padding, conv.dilation, r);
        Some(pointwise(hidden, self.up.val().mul_scalar(self.scale)))
    }

    /// `g` is the only factor with spatial axes: inflate it like a kernel.
    fn inflate(self, _path: &str, to3d: &Inflater) -> Result<Self> {
        let [t, c, kh, kw] = self.shape[..] else {
            return Ok(self);
        };
        let g = self.g.map(|g| {
            let require_grad = g.is_require_grad();
            to3d.kernel(g.detach().reshape([1, 1, kh, kw]))
                .reshape([to3d.depth() * kh * kw])
                .set_require_grad(require_grad)
        });
        Ok(Self {
            g,
            shape: vec![t, c, to3d.depth(), kh, kw],
            ..self
        })
    }
}

impl Adapter for SeparableAdapter {
    fn rank(&self) -> usize {
        self.up.lazy_shape()[1]
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        let [t, c] = [self.shape[0], self.shape[1]];
        let k = self.g.lazy_shape()[0];
        let mix = self.up.val().mul_scalar(self.scale).matmul(self.down.val());
        (mix.reshape([t * c, 1]) * self.g.val().reshape([1, k]))
            .reshape(Shape::from(self.shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        self.down.lazy_shape().num_elements()
            + self.up.lazy_shape().num_elements()
            + self.g.lazy_shape().num_elements()
    }
}
