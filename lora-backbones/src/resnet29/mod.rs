//! dlib's ResNet-29 face-descriptor network, as face-api (`@vladmandic/face-api` 1.7.15) runs it.
//!
//! - a 7x7 stride-2 conv 3->32 with no padding, then a 3x3 stride-2 max pool with no padding;
//! - 14 residual blocks of two 3x3 convs each, at 32, 64, 128 and 256 channels (see
//!   [`BLOCKS`]). A plain block pads its convs by one. A down block's first conv has stride 2
//!   and no padding; its shortcut is a 2x2 average pool of the input, zero-padded in channels,
//!   and when the conv branch comes out one row and column smaller than the shortcut (at a
//!   150 px input: 3 against 4, then 1 against 2), the branch gets a zero row at the bottom and
//!   a zero column at the right;
//! - after every conv, its bias and then a per-channel affine `scale` ([`Affine`]) where a
//!   ResNet would have BatchNorm; ReLU after every unit but a block's second, and after the sum;
//! - a global mean over height and width gives 256 features; `fc` (256->128, no bias) gives
//!   face-api's descriptor.
//!
//! 29 convs, 5,571,168 conv weights (and 3,552 conv biases). The smallest input that runs through
//! is 103 px (the last down block's stride-2 conv needs 3x3).
//!
//! The network is generic over its conv layer `C` ([`Conv2dLike`]): `ResNet29<Conv2d>` is the
//! plain network, which `lora_core::attach` adapts in weight space by parameter path
//! (`blocks.4.conv1.conv.weight`), and `ResNet29<LoraConv<Conv2d>>` runs adapted convs in their
//! bypass or auto form.

pub mod faceapi;

use burn::module::{Module, ModuleDisplay, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};
use lora_conv::{ConvLayer, LoraConv};

/// The per-channel mean face-api subtracts from 0..255 RGB pixels before dividing by 255.
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// Features before the descriptor layer.
pub const FEATURES: usize = 256;

/// Output size of face-api's descriptor layer `fc`.
pub const DESCRIPTOR: usize = 128;

/// The smallest input height and width that runs through the network.
pub const MIN_INPUT: usize = 103;

/// The residual blocks in order: face-api's name, input channels, output channels, and whether
/// it is a down block (stride 2, pooled shortcut).
pub const BLOCKS: [(&str, usize, usize, bool); 14] = [
    ("conv32_1", 32, 32, false),
    ("conv32_2", 32, 32, false),
    ("conv32_3", 32, 32, false),
    ("conv64_down", 32, 64, true),
    ("conv64_1", 64, 64, false),
    ("conv64_2", 64, 64, false),
    ("conv64_3", 64, 64, false),
    ("conv128_down", 64, 128, true),
    ("conv128_1", 128, 128, false),
    ("conv128_2", 128, 128, false),
    ("conv256_down", 128, 256, true),
    ("conv256_1", 256, 256, false),
    ("conv256_2", 256, 256, false),
    ("conv256_down_out", 256, 256, true),
];

/// Every conv's path (as [`ResNet29::map_convs`] names it) and geometry, in network order,
/// without building the network: what a budget allocation needs before any weight is loaded.
pub fn conv_geometries() -> Vec<(String, lora_conv::ConvGeometry)> {
    let mut out = vec![(
        "stem.conv".to_string(),
        lora_conv::ConvGeometry::new(3, 32, vec![7, 7]),
    )];
    for (i, &(_, cin, cout, _)) in BLOCKS.iter().enumerate() {
        out.push((
            format!("blocks.{i}.conv1.conv"),
            lora_conv::ConvGeometry::new(cin, cout, vec![3, 3]),
        ));
        out.push((
            format!("blocks.{i}.conv2.conv"),
            lora_conv::ConvGeometry::new(cout, cout, vec![3, 3]),
        ));
    }
    out
}

/// A 2D conv layer the network can hold: a plain `Conv2d` or its LoRA-wrapped form.
pub trait Conv2dLike: Module + ModuleDisplay {
    /// `[B, C, H, W] -> [B, C', H', W']`.
    fn run(&self, x: Tensor<4>) -> Tensor<4>;
}

impl Conv2dLike for Conv2d {
    /// burn's forward, with the faster weight gradient of `lora_conv::kernels` where it applies.
    fn run(&self, x: Tensor<4>) -> Tensor<4> {
        lora_conv::kernels::conv2d_forward(self, x)
    }
}

impl<C: ConvLayer> Conv2dLike for LoraConv<C> {
    fn run(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward(x)
    }
}

/// A per-channel affine map `y = x·weight + bias` (dlib's `affine` layer, face-api's `scale`).
///
/// # Shapes
/// `[B, C, H, W] -> [B, C, H, W]`, with `weight` and `bias` `[C]`.
#[derive(Module, Debug)]
pub struct Affine {
    /// Per-channel factor `[C]`.
    pub weight: Param<Tensor<1>>,
    /// Per-channel offset `[C]`.
    pub bias: Param<Tensor<1>>,
}

impl Affine {
    /// The identity map on `channels` channels.
    pub fn identity(channels: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
        }
    }

    /// Apply it to `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = self.weight.shape().dims::<1>()[0];
        let w = self.weight.val().reshape([1, c, 1, 1]);
        let b = self.bias.val().reshape([1, c, 1, 1]);
        x * w + b
    }
}

/// A conv (with its bias) followed by its affine scale.
#[derive(Module, Debug)]
pub struct ConvUnit<C> {
    /// The conv.
    pub conv: C,
    /// The per-channel affine map after it.
    pub scale: Affine,
}

impl<C: Conv2dLike> ConvUnit<C> {
    /// conv, then the affine map.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.scale.forward(self.conv.run(x))
    }
}

/// A residual block: two conv units, and a pooled shortcut in a down block.
#[derive(Module, Debug)]
pub struct Residual<C> {
    /// The first unit (stride 2 and no padding in a down block), followed by ReLU.
    pub conv1: ConvUnit<C>,
    /// The second unit (no ReLU before the sum).
    pub conv2: ConvUnit<C>,
    /// The shortcut's 2x2 average pool; `None` in a plain block (identity shortcut).
    pub shortcut: Option<AvgPool2d>,
}

impl<C: Conv2dLike> Residual<C> {
    /// `relu(branch(x) + shortcut(x))`.
    pub fn forward(&self, x: Tensor<4>, act: &Relu) -> Tensor<4> {
        let branch = self
            .conv2
            .forward(act.forward(self.conv1.forward(x.clone())));
        let sum = match &self.shortcut {
            None => branch + x,
            Some(pool) => {
                let pooled = pool.forward(x);
                pad_to(branch, &pooled) + pad_channels(pooled, self.out_channels())
            }
        };
        act.forward(sum)
    }

    fn out_channels(&self) -> usize {
        self.conv2.scale.weight.shape().dims::<1>()[0]
    }
}

/// `branch` padded with zeros at the bottom and right to the height and width of `like`, when it
/// is smaller (face-api appends one zero row, then one zero column).
fn pad_to(branch: Tensor<4>, like: &Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = branch.dims();
    let [_, _, th, tw] = like.dims();
    let device = branch.device();
    let mut out = branch;
    if th > h {
        out = Tensor::cat(vec![out, Tensor::zeros([b, c, th - h, w], &device)], 2);
    }
    if tw > w {
        out = Tensor::cat(
            vec![out, Tensor::zeros([b, c, th.max(h), tw - w], &device)],
            3,
        );
    }
    out
}

/// `x` with zero channels appended up to `channels`.
fn pad_channels(x: Tensor<4>, channels: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    if channels <= c {
        return x;
    }
    let zeros = Tensor::zeros([b, channels - c, h, w], &x.device());
    Tensor::cat(vec![x, zeros], 1)
}

/// The network.
///
/// # Shapes
/// - input: `[B, 3, H, W]` RGB pixels in 0..255, `H, W >= 103` (150 is face-api's size)
/// - [`features`](Self::features): `[B, 256]`; [`forward`](Self::forward): `[B, 128]`
#[derive(Module, Debug)]
pub struct ResNet29<C> {
    /// face-api's `conv32_down`: 7x7, stride 2, no padding, 3->32.
    pub stem: ConvUnit<C>,
    /// 3x3 max pool, stride 2, no padding.
    pub pool: MaxPool2d,
    /// The 14 residual blocks, in [`BLOCKS`] order.
    pub blocks: Vec<Residual<C>>,
    /// face-api's descriptor layer, 256->128, no bias.
    pub fc: Linear,
    /// The activation.
    pub act: Relu,
}

impl<C: Conv2dLike> ResNet29<C> {
    /// The 256 features before the descriptor layer: the global mean of the last block's output.
    pub fn features(&self, pixels: Tensor<4>) -> Tensor<2> {
        let mut x = self
            .pool
            .forward(self.act.forward(self.stem.forward(normalize(pixels))));
        for block in &self.blocks {
            x = block.forward(x, &self.act);
        }
        let [b, c, h, w] = x.dims();
        x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
    }

    /// face-api's 128-d face descriptor.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.features(pixels))
    }
}

impl<C> ResNet29<C> {
    /// The same network with every conv replaced by `f(path, conv)`, where `path` is the conv's
    /// module path (`stem.conv`, `blocks.3.conv1.conv`, ...); the affine maps, pools and `fc` are
    /// kept. This is how convs are wrapped in `LoraConv` for the bypass or auto form.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn map_convs<D, E>(
        self,
        mut f: impl FnMut(&str, C) -> std::result::Result<D, E>,
    ) -> std::result::Result<ResNet29<D>, E> {
        let mut unit = |path: String, u: ConvUnit<C>| -> std::result::Result<ConvUnit<D>, E> {
            Ok(ConvUnit {
                conv: f(&format!("{path}.conv"), u.conv)?,
                scale: u.scale,
            })
        };
        let stem = unit("stem".into(), self.stem)?;
        let blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                Ok(Residual {
                    conv1: unit(format!("blocks.{i}.conv1"), b.conv1)?,
                    conv2: unit(format!("blocks.{i}.conv2"), b.conv2)?,
                    shortcut: b.shortcut,
                })
            })
            .collect::<std::result::Result<Vec<_>, E>>()?;
        Ok(ResNet29 {
            stem,
            pool: self.pool,
            blocks,
            fc: self.fc,
            act: self.act,
        })
    }
}

/// The network's features under a new linear head: `head(features(pixels))`. face-api's `fc`
/// stays in the backbone, unused.
///
/// # Shapes
/// `[B, 3, H, W]` pixels in 0..255 -> `[B, classes]`
#[derive(Module, Debug)]
pub struct Classifier<C> {
    /// The backbone.
    pub backbone: ResNet29<C>,
    /// The head, 256 -> classes.
    pub head: Linear,
}

impl<C: Conv2dLike> Classifier<C> {
    /// `backbone` with a fresh head of `classes` outputs.
    pub fn new(backbone: ResNet29<C>, classes: usize, device: &Device) -> Self {
        Self {
            backbone,
            head: LinearConfig::new(FEATURES, classes).init(device),
        }
    }

    /// Logits.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.backbone.features(pixels))
    }
}

/// `(pixels - MEAN_RGB) / 255`, per channel, as face-api does.
pub fn normalize(pixels: Tensor<4>) -> Tensor<4> {
    let mean = Tensor::<1>::from_floats(MEAN_RGB, &pixels.device()).reshape([1, 3, 1, 1]);
    (pixels - mean).div_scalar(255.0)
}

impl ResNet29<Conv2d> {
    /// The network with fresh weights (burn's default conv initialisation, identity affine maps).
    pub fn init(device: &Device) -> Self {
        let unit = |cin: usize, cout: usize, k: usize, stride: usize, pad: usize| ConvUnit {
            conv: Conv2dConfig::new([cin, cout], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(device),
            scale: Affine::identity(cout, device),
        };
        let blocks = BLOCKS
            .iter()
            .map(|&(_, cin, cout, down)| Residual {
                conv1: if down {
                    unit(cin, cout, 3, 2, 0)
                } else {
                    unit(cin, cout, 3, 1, 1)
                },
                conv2: unit(cout, cout, 3, 1, 1),
                shortcut: down.then(|| AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
            })
            .collect();
        Self {
            stem: unit(3, 32, 7, 2, 0),
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            blocks,
            fc: LinearConfig::new(FEATURES, DESCRIPTOR)
                .with_bias(false)
                .init(device),
            act: Relu::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented counts: 29 convs, 5,571,168 conv weights, 3,552 conv biases.
    #[test]
    fn conv_counts() {
        let net = ResNet29::<Conv2d>::init(&Device::flex());
        let mut convs = vec![&net.stem.conv];
        for b in &net.blocks {
            convs.push(&b.conv1.conv);
            convs.push(&b.conv2.conv);
        }
        let weights: usize = convs.iter().map(|c| c.weight.shape().num_elements()).sum();
        let biases: usize = convs
            .iter()
            .filter_map(|c| c.bias.as_ref())
            .map(|b| b.shape().num_elements())
            .sum();
        assert_eq!((convs.len(), weights, biases), (29, 5_571_168, 3_552));
        // The static list names the same convs, in the same order, with the same shapes.
        let mut paths = Vec::new();
        let _ = net.map_convs(|path, conv| {
            paths.push((path.to_string(), conv.weight.shape().dims::<4>().to_vec()));
            Ok::<_, ()>(conv)
        });
        let listed: Vec<(String, Vec<usize>)> = conv_geometries()
            .into_iter()
            .map(|(p, g)| (p, g.weight_shape()))
            .collect();
        assert_eq!(listed, paths);
    }
}
