//! Run a 2D layer on every depth slice of a volume.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
use burn::tensor::Tensor;

/// A layer that maps `[N, C, H, W]` to `[N, C', H', W']`, one image at a time.
///
/// Implement it for your own per-image layer (attention in a bottleneck, say) to run it on
/// volumes through [`PerSlice`].
pub trait SliceLayer {
    /// The layer's forward pass on a batch of images.
    fn forward_slices(&self, x: Tensor<4>) -> Tensor<4>;
}

macro_rules! slice_layer {
    ($($t:ty),*) => {$(
        impl SliceLayer for $t {
            fn forward_slices(&self, x: Tensor<4>) -> Tensor<4> {
                self.forward(x)
            }
        }
    )*};
}
slice_layer!(MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Conv2d);

/// A 2D layer applied to each depth slice: depth is folded into the batch,
/// `[B, C, D, H, W] -> [B·D, C, H, W]`, the layer runs, and the result is unfolded.
///
/// This is how 2D pooling becomes 3D pooling with depth kernel and stride 1, exactly.
///
/// # Shapes
/// - input: `[B, C, D, H, W]`
/// - output: `[B, C', D, H', W']`
#[derive(Module, Debug)]
pub struct PerSlice<M> {
    /// The 2D layer.
    pub inner: M,
}

impl<M> PerSlice<M> {
    /// Wrap a 2D layer.
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<M: SliceLayer> PerSlice<M> {
    /// Forward pass.
    ///
    /// # Panics
    /// If the inner layer rejects the folded `[B·D, C, H, W]` input.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, c, d, h, w] = x.dims();
        let folded = x.swap_dims(1, 2).reshape([b * d, c, h, w]);
        let y = self.inner.forward_slices(folded);
        let [_, c2, h2, w2] = y.dims();
        y.reshape([b, d, c2, h2, w2]).swap_dims(1, 2)
    }
}
