//! The experiments' networks: a small VGG-style 2D CNN, its 3D counterpart (by inflation or from
//! scratch), and the bypass form of the 2D CNN.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, Conv3d, Conv3dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, PaddingConfig3d, Relu,
};
use burn::tensor::{Device, Tensor};
use lora_3d::{Inflate, Inflation, PerSlice};
use lora_conv::ConvGeometry;
use serde::{Deserialize, Serialize};

use crate::norm::batch_norm;

/// The shape of the CNN: conv widths, and after which convs a 2x2 max pool follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    /// Output channels of each 3x3 conv.
    pub widths: Vec<usize>,
    /// Indices of the convs followed by a 2x2 max pool.
    pub pool_after: Vec<usize>,
    /// Input channels.
    pub in_channels: usize,
    /// Classes.
    pub classes: usize,
}

impl CnnConfig {
    /// Five convs, pools after the second and fourth.
    pub fn vgg(widths: [usize; 5], classes: usize) -> Self {
        Self {
            widths: widths.to_vec(),
            pool_after: vec![1, 3],
            in_channels: 1,
            classes,
        }
    }

    /// Parameters of the network itself: conv weights and biases, batch-norm gamma and beta, the
    /// head. No adapters and no buffers (batch-norm running statistics).
    pub fn base_params(&self) -> usize {
        let convs: usize = self
            .channels()
            .iter()
            .map(|(i, o)| i * o * 9 + o + 2 * o)
            .sum();
        let features = self.widths.last().copied().unwrap_or(self.in_channels);
        convs + features * self.classes + self.classes
    }

    /// Check the shape: at least one conv, no zero width, pool indices among the convs.
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn check(&self) -> Result<(), String> {
        if self.widths.is_empty() || self.widths.contains(&0) {
            return Err(format!(
                "--widths {:?}: give one or more positive conv widths, e.g. 32,32,64,64,128",
                self.widths
            ));
        }
        if let Some(bad) = self.pool_after.iter().find(|&&p| p >= self.widths.len()) {
            return Err(format!(
                "--pool-after {}: there are only {} convs (1-based indices 1..={})",
                bad + 1,
                self.widths.len(),
                self.widths.len()
            ));
        }
        Ok(())
    }

    /// `(in, out)` channels of each conv.
    pub fn channels(&self) -> Vec<(usize, usize)> {
        let mut c = self.in_channels;
        self.widths
            .iter()
            .map(|&w| {
                let pair = (c, w);
                c = w;
                pair
            })
            .collect()
    }

    /// The spatial size of each conv's input for an `[h, w]` image (each 2x2 max pool halves
    /// it, rounding down).
    pub fn conv_input_sizes(&self, image: [usize; 2]) -> Vec<[usize; 2]> {
        let mut size = image;
        (0..self.widths.len())
            .map(|i| {
                let here = size;
                if self.pool_after.contains(&i) {
                    size = [size[0] / 2, size[1] / 2];
                }
                here
            })
            .collect()
    }

    /// The geometry of each conv (for parameter counts).
    pub fn geometries(&self) -> Vec<ConvGeometry> {
        self.channels()
            .into_iter()
            .map(|(i, o)| ConvGeometry::new(i, o, vec![3, 3]))
            .collect()
    }

    /// The 2D CNN with fresh weights.
    pub fn init(&self, device: &Device) -> Cnn<Conv2d> {
        let blocks = self
            .channels()
            .into_iter()
            .enumerate()
            .map(|(i, (cin, cout))| Block {
                conv: Conv2dConfig::new([cin, cout], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
                norm: BatchNormConfig::new(cout).init(device),
                pool: self
                    .pool_after
                    .contains(&i)
                    .then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
            })
            .collect();
        Cnn {
            blocks,
            head: self.head(device),
            act: Relu::new(),
        }
    }

    /// A fresh linear head.
    pub fn head(&self, device: &Device) -> Linear {
        let features = self.widths.last().copied().unwrap_or(self.in_channels);
        LinearConfig::new(features, self.classes).init(device)
    }

    /// A 3D CNN of the same shape with fresh 3x3x3 kernels (the from-scratch baseline).
    pub fn init_3d(&self, device: &Device) -> Cnn3d {
        let blocks = self
            .channels()
            .into_iter()
            .enumerate()
            .map(|(i, (cin, cout))| Block3d {
                conv: Conv3dConfig::new([cin, cout], [3, 3, 3])
                    .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                    .init(device),
                norm: BatchNormConfig::new(cout).init(device),
                pool: self.pool_after.contains(&i).then(|| {
                    PerSlice::new(MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init())
                }),
            })
            .collect();
        Cnn3d {
            blocks,
            head: self.head(device),
            act: Relu::new(),
        }
    }
}

/// A 2D conv layer the CNN can hold: a plain `Conv2d` or its LoRA-wrapped form (the trait the
/// ResNet-29 backbone uses too).
pub use lora_backbones::Conv2dLike;

/// conv -> batch norm -> ReLU -> optional 2x2 max pool.
#[derive(Module, Debug)]
pub struct Block<C> {
    /// 3x3 conv, padding 1.
    pub conv: C,
    /// Batch norm.
    pub norm: BatchNorm,
    /// Optional max pool.
    pub pool: Option<MaxPool2d>,
}

/// The 2D CNN: conv blocks, global average pooling, a linear head.
///
/// # Shapes
/// - input: `[B, 1, H, W]`
/// - output: `[B, classes]`
#[derive(Module, Debug)]
pub struct Cnn<C> {
    /// The conv blocks.
    pub blocks: Vec<Block<C>>,
    /// The classifier.
    pub head: Linear,
    /// The activation.
    pub act: Relu,
}

impl<C: Conv2dLike> Cnn<C> {
    /// Logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for block in &self.blocks {
            x = self.act.forward(batch_norm(&block.norm, block.conv.run(x)));
            if let Some(pool) = &block.pool {
                x = pool.forward(x);
            }
        }
        let [b, c, h, w] = x.dims();
        let features = x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]);
        self.head.forward(features)
    }
}

/// A 3D block.
#[derive(Module, Debug)]
pub struct Block3d {
    /// 3x3x3 conv (inflated or fresh).
    pub conv: Conv3d,
    /// Batch norm.
    pub norm: BatchNorm,
    /// Max pool over height and width on each depth slice.
    pub pool: Option<PerSlice<MaxPool2d>>,
}

/// The 3D CNN: the same blocks on volumes, global average pooling over depth, height and width,
/// the same head. Inflated from a 2D CNN (centre mode), its features at each depth slice equal
/// the 2D CNN's on that slice, so its logits are the mean over slices of the 2D logits.
///
/// # Shapes
/// - input: `[B, 1, D, H, W]`
/// - output: `[B, classes]`
#[derive(Module, Debug)]
pub struct Cnn3d {
    /// The conv blocks.
    pub blocks: Vec<Block3d>,
    /// The classifier.
    pub head: Linear,
    /// The activation.
    pub act: Relu,
}

impl Cnn3d {
    /// Logits.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<2> {
        let mut x = x;
        for block in &self.blocks {
            x = self
                .act
                .forward(batch_norm(&block.norm, block.conv.forward(x)));
            if let Some(pool) = &block.pool {
                x = pool.forward(x);
            }
        }
        let [b, c, d, h, w] = x.dims();
        let features = x.reshape([b, c, d * h * w]).mean_dim(2).reshape([b, c]);
        self.head.forward(features)
    }
}

impl Inflate for Cnn<Conv2d> {
    type Output = Cnn3d;

    fn inflate(self, cx: &mut Inflation) -> lora_3d::Result<Cnn3d> {
        let blocks = self
            .blocks
            .into_iter()
            .map(|b| {
                Ok(Block3d {
                    conv: b.conv.inflate(cx)?,
                    norm: b.norm.inflate(cx)?,
                    pool: b.pool.inflate(cx)?,
                })
            })
            .collect::<lora_3d::Result<Vec<_>>>()?;
        Ok(Cnn3d {
            blocks,
            head: self.head.inflate(cx)?,
            act: self.act,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use lora_3d::{InflateOptions, inflate};
    use lora_core::testing::assert_close;

    /// Inflated in centre mode, the 3D CNN's logits on a volume are the mean over slices of the
    /// 2D CNN's logits (each slice's features equal the 2D features, the global pool averages
    /// equal-size slices, and the head is affine).
    #[test]
    fn inflated_cnn_matches_the_2d_cnn() {
        let device = Device::flex();
        let config = CnnConfig::vgg([4, 4, 8, 8, 8], 3);
        // No buffers and no adapters in the base count: total minus the running statistics.
        let counts = lora_core::param_counts(&config.init(&device));
        assert_eq!(config.base_params(), counts.total - 2 * (4 + 4 + 8 + 8 + 8));
        let reference = CnnConfig {
            pool_after: vec![0, 2],
            ..CnnConfig::vgg([32, 32, 64, 64, 128], 10)
        };
        assert_eq!(reference.base_params(), 140_778);
        let cnn = config.init(&device);
        let cnn3d = inflate(cnn.clone(), &InflateOptions::new(3)).unwrap();
        let x = Tensor::<5>::random([2, 1, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        // Logits are affine in the pooled features, so mean over slices commutes with the head.
        let mean_2d = (0..3)
            .map(|d| {
                cnn.forward(
                    x.clone()
                        .slice([0..2, 0..1, d..d + 1, 0..8, 0..8])
                        .reshape([2, 1, 8, 8]),
                )
            })
            .reduce(|a, b| a + b)
            .unwrap()
            .div_scalar(3.0);
        assert_close(cnn3d.forward(x), mean_2d, 1e-5, "inflated CNN");
    }
}
