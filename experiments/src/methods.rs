//! The fine-tuning methods, applied to any model: what trains and what adapters go where.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use lora_conv::functional::rank_limit;
use lora_conv::{ConvFactory, ConvGeometry, ConvVariant, LoraConv, conv_config};
use lora_core::{LoraConfig, attach};

use crate::error::Result;
use crate::model::{Block, Cnn};

/// Freeze every float parameter, leaving module flags alone (so batch norm keeps using batch
/// statistics in training and keeps updating its running statistics).
pub fn freeze<M: Module>(model: M) -> M {
    struct Freeze;
    impl ModuleMapper for Freeze {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.set_require_grad(false)
        }
    }
    model.map(&mut Freeze)
}

/// Adapter config for conv weights named `blocks.N.conv.weight` (rank capped per layer at what
/// the variant accepts, e.g. Tucker-2 on a 1-channel input conv has rank 1), with the head
/// trainable. `alpha = rank` (per layer), so the scale is 1 at every rank.
pub fn adapter_config(
    variant: ConvVariant,
    rank: usize,
    geometries: &[ConvGeometry],
    prefix: &str,
) -> LoraConfig {
    let caps: Vec<(String, usize)> = geometries
        .iter()
        .enumerate()
        .filter(|(_, g)| rank_limit(variant, g) < rank)
        .map(|(i, g)| {
            (
                format!("{prefix}{i}\\.conv\\.weight"),
                rank_limit(variant, g),
            )
        })
        .collect();
    let alphas = caps.iter().map(|(p, r)| (p.clone(), *r as f64)).collect();
    conv_config(rank, rank as f64)
        .with_targets(vec![format!("{prefix}\\d+\\.conv\\.weight")])
        .with_trainable(vec!["head\\..*".to_string()])
        .with_rank_pattern(caps)
        .with_alpha_pattern(alphas)
}

/// Weight-space adapters on every conv of a model, the head trainable, the rest frozen.
///
/// # Errors
/// As `lora_core::attach`.
pub fn with_adapters<M: Module>(
    model: &M,
    variant: ConvVariant,
    rank: usize,
    geometries: &[ConvGeometry],
) -> Result<M> {
    let config = adapter_config(variant, rank, geometries, "blocks\\.");
    Ok(attach(model, &config, &ConvFactory::new(variant))?)
}

/// The bypass form of the same adapters: each conv wrapped in a `LoraConv`.
///
/// # Errors
/// As `LoraConv::wrap`.
pub fn with_bypass(
    model: Cnn<Conv2d>,
    variant: ConvVariant,
    rank: usize,
    device: &Device,
) -> Result<Cnn<LoraConv<Conv2d>>> {
    // The same per-layer rank and alpha as the weight-space form.
    let geometries: Vec<ConvGeometry> = model
        .blocks
        .iter()
        .map(|b| lora_conv::ConvLayer::geometry(&b.conv))
        .collect();
    let config = adapter_config(variant, rank, &geometries, "blocks\\.");
    let head = model.head;
    let blocks = model
        .blocks
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let path = format!("blocks.{i}.conv.weight");
            let spec = config.spec_for(&path)?;
            Ok(Block {
                conv: LoraConv::wrap(&path, b.conv, variant, &spec, 0.0, device)?,
                norm: freeze(b.norm),
                pool: b.pool,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Cnn {
        blocks,
        head,
        act: model.act,
    })
}
