//! The experiment CNN in every form the benches time, and one training step of it.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::Conv2d;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Int, Tensor};
use experiments::model::{Block, Cnn, CnnConfig, Conv2dLike};
use lora_conv::bounds::rank_limit;
use lora_conv::{ConvVariant, ForwardMode, LoraConv, conv_config};
use lora_core::{AdapterSpec, LoraConfig, Result};

/// The CNN of the op profile in `../shared/measurements` (the one PyTorch's step time there was
/// measured on): 3x3 convs 32-32-64-64-128 with BatchNorm and ReLU, 2x2 max pools after the
/// second and fourth convs, global average pooling, a 10-way linear head. The experiments'
/// reference CNN has the same widths but pools after the first and third convs
/// (`compare --widths 32-32-64-64-128 --pool-after 2,4` runs this one).
pub fn config() -> CnnConfig {
    CnnConfig::vgg([32, 32, 64, 64, 128], 10)
}

/// Batch size and image size of the training-step benches (MNIST-sized).
pub const BATCH: usize = 64;
/// Image height and width.
pub const SIZE: usize = 28;

/// A random `[BATCH, 1, SIZE, SIZE]` batch and its labels.
pub fn batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let x = Tensor::random(
        [BATCH, 1, SIZE, SIZE],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 10).collect();
    (x, Tensor::from_data(labels.as_slice(), device))
}

/// The CNN with every conv wrapped in a `variant` adapter of rank `rank` (capped per layer at
/// what the variant accepts, `alpha = rank`), run in `mode`; convs and norms frozen, the head
/// trainable. Up factors are randomised so the update is not zero.
///
/// # Errors
/// As [`LoraConv::new`].
pub fn adapted(
    base: &Cnn<Conv2d>,
    variant: ConvVariant,
    rank: usize,
    mode: ForwardMode,
    device: &Device,
) -> Result<Cnn<LoraConv<Conv2d>>> {
    let blocks = base
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let conv = b.conv.clone();
            let geometry = lora_conv::ConvLayer::geometry(&conv);
            let r = rank.min(rank_limit(variant, &geometry)).max(1);
            let spec = AdapterSpec::new(r, r as f64);
            let name = format!("blocks.{i}.conv");
            let wrapped = LoraConv::new(&name, conv, variant, &spec, 0.0, mode, device)?;
            Ok(Block {
                conv: wrapped,
                norm: b.norm.clone().no_grad(),
                pool: b.pool.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let model = Cnn {
        blocks,
        head: base.head.clone(),
        act: base.act.clone(),
    };
    Ok(randomize_branch(model, 0.05))
}

/// The attach config of the weight-space (reparameterized) form of [`adapted`]: every conv
/// of `base`, with the same per-layer rank caps and `alpha = rank`.
pub fn attach_config(base: &Cnn<Conv2d>, variant: ConvVariant, rank: usize) -> LoraConfig {
    let ranks: Vec<(String, usize)> = base
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let geometry = lora_conv::ConvLayer::geometry(&b.conv);
            let r = rank.min(rank_limit(variant, &geometry)).max(1);
            (format!("blocks\\.{i}\\.conv\\.weight"), r)
        })
        .collect();
    let alphas = ranks.iter().map(|(p, r)| (p.clone(), *r as f64)).collect();
    conv_config(rank, rank as f64)
        .with_targets(vec!["blocks\\.\\d+\\.conv\\.weight".into()])
        .with_rank_pattern(ranks)
        .with_alpha_pattern(alphas)
}

/// Redraw every float parameter under a module field named `adapter` from `N(0, std²)`,
/// keeping ids and trainability (fresh adapters have a zero up factor).
pub fn randomize_branch<M: Module>(model: M, std: f64) -> M {
    struct Randomize {
        std: f64,
        path: Vec<String>,
    }
    impl ModuleMapper for Randomize {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if !self.path.iter().any(|p| p == "adapter") {
                return param;
            }
            let std = self.std;
            param.map(|old| {
                let require_grad = old.is_require_grad();
                Tensor::random(old.shape(), Distribution::Normal(0.0, std), &old.device())
                    .set_require_grad(require_grad)
            })
        }
    }
    model.map(&mut Randomize {
        std,
        path: Vec::new(),
    })
}

/// Mean cross-entropy.
pub fn loss(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, labels.reshape([b, 1]))
        .mean()
        .neg()
}

/// A model and its Adam state, stepping on one fixed batch.
pub struct Trainer<C: Conv2dLike> {
    model: Option<Cnn<C>>,
    optim: burn::optim::ModuleOptimizer,
    x: Tensor<4>,
    y: Tensor<1, Int>,
}

impl<C: Conv2dLike> Trainer<C> {
    /// A trainer for `model` (on an autodiff device) on a random batch.
    pub fn new(model: Cnn<C>, device: &Device) -> Self {
        let (x, y) = batch(device);
        Self {
            model: Some(model),
            optim: AdamConfig::new().init(),
            x,
            y,
        }
    }

    /// One step: forward, backward, Adam. Returns the loss (read back, so the step is done).
    pub fn step(&mut self) -> f32 {
        let Some(model) = self.model.take() else {
            return f32::NAN;
        };
        let loss = loss(model.forward(self.x.clone()), self.y.clone());
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optim.step(1e-4, model, grads));
        value
    }

    /// The model, after the steps taken.
    pub fn model(&self) -> Option<&Cnn<C>> {
        self.model.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lora_core::testing::{Tol, assert_close};

    /// The three forms compute the same logits from the same parameters, so the benches time
    /// equal work (relative 1e-4 of the largest logit, absolute floor 1e-5).
    #[test]
    fn forms_agree_on_the_cnn() {
        let device = Device::flex();
        device.seed(3);
        let base = config().init(&device);
        let (x, _) = batch(&device);
        let x = x.narrow(0, 0, 4);
        for variant in ConvVariant::DECOMPOSITIONS {
            let bypass = adapted(&base, variant, 4, ForwardMode::Bypass, &device).unwrap();
            let reference = bypass.forward(x.clone());
            for mode in [ForwardMode::WeightSpace, ForwardMode::Auto] {
                let other = Cnn {
                    blocks: bypass
                        .blocks
                        .iter()
                        .map(|b| Block {
                            conv: b.conv.clone().with_mode("conv", mode).unwrap(),
                            norm: b.norm.clone(),
                            pool: b.pool.clone(),
                        })
                        .collect(),
                    head: bypass.head.clone(),
                    act: bypass.act.clone(),
                };
                assert_close(
                    other.forward(x.clone()),
                    reference.clone(),
                    Tol {
                        rel: 1e-4,
                        abs: 1e-5,
                    },
                    "forms",
                );
            }
        }
    }
}
