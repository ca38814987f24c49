//! The fine-tuning methods, applied to any model: what trains and what adapters go where, and
//! what each adapter costs against the weight it adapts.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use lora_conv::bounds::{full_count, max_rank, param_count, rank_limit};
use lora_conv::{
    AnyAdapter, ConvFactory, ConvGeometry, ConvVariant, ForwardMode, LoraConv, conv_config,
};
use lora_core::{Adapter, AdapterSpec, LoraConfig, LoraParam, attach};

use crate::error::{ExpError, Result};
use crate::harness::record::LayerRank;
use crate::model::{Block, Cnn};

pub use crate::harness::record::share_of_adapted;

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

/// Initialise every lazily initialised float parameter of a module now, in module order.
///
/// burn initialises a parameter on its first use, drawing from the device's RNG at that
/// moment, so without this a module built right after `device.seed(k)` gets values that depend
/// on whatever else draws from the RNG before its first forward pass (adapters built for a
/// bypass twin, say): the same seed would not give every method the same head.
pub fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// The rank each conv gets when `rank` is asked for: capped at what the variant accepts on the
/// layer ([`rank_limit`]) and strictly below break-even ([`max_rank`]: the largest rank with
/// fewer parameters than the full kernel). A layer where even rank 1 is not below break-even
/// gets rank 0: it is not adapted. `prefix` names the convs: `{prefix}{i}.conv.weight`.
pub fn plan_ranks(
    variant: ConvVariant,
    rank: usize,
    geometries: &[ConvGeometry],
    prefix: &str,
) -> Vec<LayerRank> {
    geometries
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let accepted = rank_limit(variant, g);
            let below_break_even = max_rank(variant, g);
            let r = rank.min(accepted).min(below_break_even);
            let capped = (r < rank).then(|| {
                if below_break_even <= accepted {
                    format!(
                        "rank {rank} is at or past break-even on this {}x{} layer ({} >= {} \
                         kernel parameters); capped at {r}, the largest rank below it",
                        g.in_channels,
                        g.out_channels,
                        param_count(variant, g, rank),
                        full_count(g)
                    )
                } else {
                    format!("{variant} accepts rank {accepted} at most on this layer")
                }
            });
            let weight_params = full_count(g);
            let adapter_params = if r == 0 {
                0
            } else {
                param_count(variant, g, r)
            };
            LayerRank {
                path: format!("{prefix}{i}.conv.weight"),
                requested_rank: rank,
                rank: r,
                weight_params,
                adapter_params,
                share: adapter_params as f64 / weight_params.max(1) as f64,
                capped,
                forward: "weight".into(),
            }
        })
        .collect()
}

fn escape(path: &str) -> String {
    path.replace('.', "\\.")
}

/// Adapter config for the planned layers (rank 0: not targeted), `alpha = rank` per layer (scale
/// 1 at every rank), the head trainable, and with `train_norm` the batch norms' gamma and beta.
///
/// # Errors
/// [`ExpError::Input`] when no layer can be adapted.
pub fn adapter_config(layers: &[LayerRank], train_norm: bool) -> Result<LoraConfig> {
    let adapted: Vec<&LayerRank> = layers.iter().filter(|l| l.rank > 0).collect();
    let first = adapted
        .first()
        .ok_or_else(|| ExpError::Input("no layer can take an adapter below break-even".into()))?;
    let targets = adapted.iter().map(|l| escape(&l.path)).collect();
    let ranks = adapted.iter().map(|l| (escape(&l.path), l.rank)).collect();
    let alphas = adapted
        .iter()
        .map(|l| (escape(&l.path), l.rank as f64))
        .collect();
    let mut trainable = vec!["head\\..*".to_string()];
    if train_norm {
        trainable.push("blocks\\.\\d+\\.norm\\.(gamma|beta)".into());
    }
    Ok(conv_config(first.rank, first.rank as f64)
        .with_targets(targets)
        .with_trainable(trainable)
        .with_rank_pattern(ranks)
        .with_alpha_pattern(alphas))
}

/// Weight-space adapters of `variant` on the planned convs of a model, the head (and with
/// `train_norm` the batch-norm affine parameters) trainable, the rest frozen.
///
/// # Errors
/// As `lora_core::attach`, or no layer to adapt.
pub fn with_adapters<M: Module>(
    model: &M,
    variant: ConvVariant,
    layers: &[LayerRank],
    train_norm: bool,
) -> Result<M> {
    let config = adapter_config(layers, train_norm)?;
    Ok(attach(model, &config, &ConvFactory::new(variant))?)
}

/// A weight-space adapted CNN (from [`with_adapters`]) rebuilt with each conv wrapped in a
/// `LoraConv` run in `mode` (bypass or auto), holding the very adapter (same initial factors,
/// rank and alpha) that the weight-space form attached, around the same frozen base kernel
/// `base`.
///
/// # Errors
/// A conv without an adapter (the wrapped CNN wraps every conv), or as `LoraConv::new`.
pub fn with_bypass(
    base: Cnn<Conv2d>,
    adapted: &Cnn<Conv2d>,
    variant: ConvVariant,
    mode: ForwardMode,
    device: &Device,
) -> Result<Cnn<LoraConv<Conv2d>>> {
    let head = adapted.head.clone();
    let blocks = base
        .blocks
        .into_iter()
        .zip(&adapted.blocks)
        .enumerate()
        .map(|(i, (b, a))| {
            let path = format!("blocks.{i}.conv.weight");
            let adapter: AnyAdapter = a
                .conv
                .weight
                .reparameterization::<LoraParam<AnyAdapter>>()
                .ok_or_else(|| {
                    ExpError::Input(format!(
                        "{path} has no adapter (rank 0 below break-even); the bypass form \
                         needs one on every conv"
                    ))
                })?
                .adapter
                .clone();
            let spec = AdapterSpec::new(adapter.rank(), adapter.rank() as f64);
            let wrapped = LoraConv::new(&path, b.conv, variant, &spec, 0.0, mode, device)?;
            Ok(Block {
                conv: wrapped.with_adapter(&path, adapter)?,
                norm: a.norm.clone(),
                pool: b.pool,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Cnn {
        blocks,
        head,
        act: base.act,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Widths 32-32-64-64-128: LoCon rank 16 on the 1->32 stem costs 16·(9+32) = 656 >= 288, so
    /// it is capped at 7 (7·41 = 287 < 288); the 32->32 layer (9,216 weights) keeps 16
    /// (16·(288+32) = 5,120). Tucker-2 on the stem is capped at 1 (accepted rank).
    #[test]
    fn ranks_past_break_even_are_capped_below_it() {
        let widths = [32, 32, 64, 64, 128];
        let mut c = 1;
        let geometries: Vec<ConvGeometry> = widths
            .iter()
            .map(|&w| {
                let g = ConvGeometry::new(c, w, vec![3, 3]);
                c = w;
                g
            })
            .collect();
        let layers = plan_ranks(ConvVariant::LoCon, 16, &geometries, "blocks.");
        assert_eq!(layers[0].rank, 7);
        assert!(layers[0].capped.as_deref().unwrap().contains("break-even"));
        assert_eq!(layers[0].adapter_params, 287);
        assert_eq!(layers[1].rank, 16);
        assert_eq!(layers[1].capped, None);
        assert_eq!(layers[1].adapter_params, 5120);
        assert_eq!(layers[1].weight_params, 9216);
        for l in &layers {
            assert!(l.adapter_params < l.weight_params, "{l:?}");
        }
        // Every variant, every rank up to the widths: never at or past break-even.
        for variant in ConvVariant::BUILTIN {
            for rank in [1, 2, 4, 8, 16, 64, 128, 1000] {
                for l in plan_ranks(variant, rank, &geometries, "blocks.") {
                    assert!(l.rank >= 1 && l.rank <= rank, "{variant} {rank} {l:?}");
                    assert!(l.adapter_params < l.weight_params, "{variant} {rank} {l:?}");
                    assert_eq!(l.capped.is_some(), l.rank < rank);
                }
            }
        }
        let t = plan_ranks(ConvVariant::Tucker2, 4, &geometries, "blocks.");
        assert_eq!(t[0].rank, 1);
        assert!(t[0].capped.as_deref().unwrap().contains("accepts"));
        // The overall share: adapter parameters over the adapted weights.
        let a: usize = layers.iter().map(|l| l.adapter_params).sum();
        let w: usize = layers.iter().map(|l| l.weight_params).sum();
        assert!((share_of_adapted(&layers) - a as f64 / w as f64).abs() < 1e-12);
    }
}
