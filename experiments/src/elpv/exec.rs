//! Running one spec of the ELPV study: its split, the model of its method on the pretrained
//! backbone, and the harness's one fit.

use burn::module::{Module, Param};
use burn::nn::LinearConfig;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use lora_backbones::resnet29::{Affine, Conv2dLike, FEATURES};
use lora_backbones::{Classifier as Net, ResNet29};
use lora_conv::budget::{LayerInfo, RankPlan, allocate};
use lora_conv::{ConvVariant, ForwardMode, LoraConv};
use lora_core::AdapterSpec;

use super::plan::{Cell, Method, Plan};
use super::probe::{self, ProbeHead, Standardize};
use super::split::Split;
use crate::data::Images;
use crate::error::{ExpError, Result};
use crate::harness::fit::{FitData, FitSettings, fit};
use crate::harness::record::LayerRank;
use crate::harness::{RunRecord, SWEEP_SEED, Spec};
use crate::methods::materialize;
use crate::train::{Augment, Classifier, Metric};

/// ELPV's four classes (defect probability 0, 1/3, 2/3, 1).
pub const CLASSES: usize = 4;

/// What every run shares.
#[derive(Debug)]
pub struct Context {
    /// Every image, `[size, size]` grayscale in 0..1, labelled with its class.
    pub images: Images,
    /// The paired splits: seed `k` runs on `splits[k]`; sweeps on `splits[0]`.
    pub splits: Vec<Split>,
    /// face-api's pretrained ResNet-29, on the training device.
    pub base: ResNet29<Conv2d>,
    /// The convs to adapt (paths as `map_convs` names them), with the pretrained kernels'
    /// singular values when a plan allocates by energy.
    pub layers: Vec<LayerInfo>,
    /// The pretrained backbone's features of every image under every view
    /// ([`super::probe::features`]): the probe's data, and the heads' standardization.
    pub features: Images,
    /// The training (autodiff) device.
    pub device: Device,
}

/// A ResNet-29 classifier on ELPV's grayscale images: the gray value (0..1) goes to all three
/// RGB channels as 0..255, the pixels face-api's network expects; the features are
/// standardized (frozen, [`Standardize`]) before the head.
///
/// # Shapes
/// `[B, 1, H, W]` in 0..1 -> `[B, 4]`
#[derive(Module, Debug)]
pub struct ElpvNet<C> {
    /// The backbone and its head.
    pub net: Net<C>,
    /// The head's frozen input standardization.
    pub norm: Standardize,
}

impl<C: Conv2dLike> Classifier<4> for ElpvNet<C> {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let features = self
            .net
            .backbone
            .features(x.repeat_dim(1, 3).mul_scalar(255.0));
        self.net.head.forward(self.norm.forward(features))
    }
}

/// Every parameter of the backbone frozen but the affine maps after the convs.
fn affine_only(backbone: ResNet29<Conv2d>) -> ResNet29<Conv2d> {
    fn open(a: Affine) -> Affine {
        Affine {
            weight: Param::from_tensor(a.weight.val()).set_require_grad(true),
            bias: Param::from_tensor(a.bias.val()).set_require_grad(true),
        }
    }
    let mut b = backbone.no_grad();
    b.stem.scale = open(b.stem.scale);
    b.blocks = b
        .blocks
        .into_iter()
        .map(|mut block| {
            block.conv1.scale = open(block.conv1.scale);
            block.conv2.scale = open(block.conv2.scale);
            block
        })
        .collect();
    b
}

/// The ranks `variant` gets on the backbone's convs at `budget` (a share of the conv weights),
/// allocated by `allocation`.
///
/// # Errors
/// The allocation's errors, and [`ExpError::Input`] when the budget leaves a conv unadapted
/// (this study adapts every conv; budgets below rank 1 everywhere are refused).
pub fn rank_plan(
    layers: &[LayerInfo],
    variant: ConvVariant,
    budget: f64,
    allocation: lora_conv::budget::Allocation,
) -> Result<RankPlan> {
    let weights: usize = layers
        .iter()
        .map(|l| lora_conv::bounds::full_count(&l.geometry))
        .sum();
    let target = (budget * weights as f64).floor() as usize;
    let plan = allocate(variant, layers, target, allocation).map_err(ExpError::from)?;
    if let Some(out) = plan.left_out.first() {
        return Err(ExpError::Input(format!(
            "{variant} at budget {} ({target} of {weights} conv weights) leaves {} unadapted \
             ({:?}); raise the budget so every conv gets rank 1 or more",
            super::plan::percent(budget),
            out.path,
            out.reason
        )));
    }
    Ok(plan)
}

/// The record's per-layer view of a rank plan: `requested_rank` is the plan's largest rank, and
/// a layer held at its admissible rank below that is marked capped.
fn layer_ranks(plan: &RankPlan) -> Vec<LayerRank> {
    let top = plan.layers.iter().map(|l| l.rank).max().unwrap_or(0);
    plan.layers
        .iter()
        .map(|l| LayerRank {
            path: format!("{}.weight", l.path),
            requested_rank: top,
            rank: l.rank,
            weight_params: l.kernel,
            adapter_params: l.params,
            share: l.params as f64 / l.kernel.max(1) as f64,
            capped: (l.rank == l.cap && l.rank < top).then(|| {
                format!(
                    "held at its admissible rank {} (the type's limit on this layer, or the \
                     largest rank below break-even) while others reach {top}",
                    l.cap
                )
            }),
            forward: "auto".into(),
        })
        .collect()
}

/// The parameters of the backbone a method adapts: every parameter but face-api's unused
/// descriptor layer `fc` (convs, their biases, the affine maps).
pub fn base_params(base: &ResNet29<Conv2d>) -> usize {
    lora_core::param_counts(base).total - lora_core::param_counts(&base.fc).total
}

/// Run one spec: its split (split 0 for a sweep), its method's model with a head drawn from the
/// spec's seed, Adam with the plan's schedule and augmentation, the best validation checkpoint
/// by four-class accuracy, and the test fold on final runs (with the confusion matrix).
///
/// # Errors
/// Allocation and adapter errors, training errors.
pub fn run_spec(plan: &Plan, cx: &Context, spec: &Spec<Cell>) -> Result<RunRecord> {
    let index = if spec.seed == SWEEP_SEED {
        0
    } else {
        spec.seed as usize
    };
    let split = cx.splits.get(index).ok_or_else(|| {
        ExpError::Input(format!(
            "seed {} names split {index}, but the plan has {} splits",
            spec.seed,
            cx.splits.len()
        ))
    })?;
    let (train, val, test) = (
        cx.images.select(&split.train),
        cx.images.select(&split.val),
        cx.images.select(&split.test),
    );
    let data = FitData {
        train: &train,
        val: &val,
        test: &test,
        metric: Metric::Accuracy,
        per_class: Some(CLASSES),
    };
    let settings = FitSettings {
        batch_size: plan.batch_size,
        evals: plan.evals,
        schedule: plan.schedule,
        augment: plan.augment,
    };
    let device = &cx.device;
    let base_params = base_params(&cx.base);
    // One standardization per run, shared by the probe head and the network (it is frozen).
    let norm = Standardize::fit(&cx.features, &probe::rows(&split.train, false), device);
    // The head (and adapter factors) are drawn from the spec's seed, so every method of a seed
    // starts from the same head.
    device.seed(spec.seed);
    // Every method but the probe starts from the head a probe reaches on this split (LP-FT),
    // when the plan says so: a fresh head needs a far larger rate than a pretrained backbone.
    let head = |backbone| -> Result<ElpvNet<Conv2d>> {
        let mut net = Net::new(backbone, CLASSES, device);
        materialize(&net);
        if let Some(init) = plan.probe_init {
            let probe = ProbeHead {
                norm: norm.clone(),
                head: net.head,
            };
            net.head = probe::probed_head(
                probe,
                &cx.features,
                split,
                init,
                plan.batch_size,
                spec.seed,
                device,
            )?;
        }
        Ok(ElpvNet {
            net,
            norm: norm.clone(),
        })
    };
    let mut base = cx.base.clone();
    base.fc = base.fc.no_grad();
    match spec.cell.method {
        Method::Probe => {
            let features = &cx.features;
            let (train, val, test) = (
                features.select(&probe::rows(&split.train, true)),
                features.select(&probe::rows(&split.val, false)),
                features.select(&probe::rows(&split.test, false)),
            );
            let data = FitData {
                train: &train,
                val: &val,
                test: &test,
                ..data
            };
            // The views are the augmentation: the data already holds every symmetry.
            let settings = FitSettings {
                augment: Augment::None,
                ..settings
            };
            // The same head as every other method of this seed (same draws, same order).
            let head = LinearConfig::new(FEATURES, CLASSES).init(device);
            let model = ProbeHead {
                norm: norm.clone(),
                head,
            };
            materialize(&model);
            let mut record =
                fit::<3, _, _>(spec, model, Vec::new(), base_params, data, settings, device)?;
            // Examples are images (each training image stands for its 8 cached views), as for
            // every other method: the corrected intervals read these sizes.
            record.train_examples = split.train.len();
            record.val_examples = split.val.len();
            Ok(record)
        }
        Method::Affine => {
            let model = head(affine_only(base))?;
            fit::<4, _, _>(spec, model, Vec::new(), base_params, data, settings, device)
        }
        Method::Full => {
            let model = head(base)?;
            fit::<4, _, _>(spec, model, Vec::new(), base_params, data, settings, device)
        }
        Method::Adapter {
            variant,
            budget,
            allocation,
        } => {
            let ranks = rank_plan(&cx.layers, variant, budget, allocation)?;
            let net = head(base.no_grad())?;
            // Adapters come after the head, from the same seeded stream.
            let backbone = net.net.backbone.map_convs(|path, conv| {
                let r =
                    ranks
                        .rank_of(path)
                        .ok_or_else(|| lora_core::LoraError::InvalidGeometry {
                            reason: format!("the rank plan has no rank for `{path}`"),
                        })?;
                let adapter = AdapterSpec::new(r, r as f64);
                LoraConv::new(
                    path,
                    conv,
                    variant,
                    &adapter,
                    0.0,
                    ForwardMode::Auto,
                    device,
                )
            })?;
            let model = ElpvNet {
                net: Net {
                    backbone,
                    head: net.net.head,
                },
                norm: net.norm,
            };
            materialize(&model);
            let layers = layer_ranks(&ranks);
            fit::<4, _, _>(spec, model, layers, base_params, data, settings, device)
        }
    }
}
