//! Budgets become ranks: `lora_conv::budget` on grids of geometries and every registered type,
//! the energy rule on kernels with planted spectra, the SVD on known matrices, and the plans of
//! ResNet-29 (printed with `--nocapture`).

#![allow(clippy::unwrap_used, missing_docs)]

use burn::module::{Module, Param};
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use lora_conv::bounds::{full_count, max_rank, param_count, rank_limit};
use lora_conv::budget::allocation::{kernel_singular_values, singular_values};
use lora_conv::budget::{
    Allocation, LayerInfo, LeftOutReason, RankPlan, admissible_rank, allocate, model_kernels,
};
use lora_conv::{ConvFactory, ConvGeometry, ConvVariant};
use lora_core::{LoraConfig, LoraError, attach, param_counts};

const RULES: [Allocation; 3] = [Allocation::Uniform, Allocation::Energy, Allocation::Filled];

/// A mixed list: channel counts from 1 to 96, 1x1/3x3/7x7, 1D and 3D, grouped and depthwise, and
/// a 1x1 1->1 conv no type can adapt below break-even. Each layer has a made-up spectrum whose
/// decay differs from layer to layer.
fn grid() -> Vec<LayerInfo> {
    let grouped = |s, t, k: Vec<usize>, g| ConvGeometry {
        groups: g,
        ..ConvGeometry::new(s, t, k)
    };
    let geometries = vec![
        ConvGeometry::new(3, 16, vec![7, 7]),
        ConvGeometry::new(16, 16, vec![3, 3]),
        ConvGeometry::new(16, 48, vec![1, 1]),
        ConvGeometry::new(48, 96, vec![3, 3]),
        ConvGeometry::new(96, 33, vec![1, 1]),
        ConvGeometry::new(8, 12, vec![5]),
        ConvGeometry::new(4, 8, vec![3, 3, 3]),
        ConvGeometry::new(6, 6, vec![1, 3, 3]),
        grouped(32, 64, vec![3, 3], 4),
        grouped(24, 24, vec![3, 3], 24),
        ConvGeometry::new(1, 1, vec![1, 1]),
        ConvGeometry::new(2, 64, vec![1]),
    ];
    geometries
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let n = g.out_channels.min(g.in_per_group() * g.kernel_volume());
            let decay = [0.0, 0.5, 1.0, 2.0][i % 4];
            let values = (0..n).map(|j| (j as f64 + 1.0).powf(-decay)).collect();
            LayerInfo::new(format!("layers.{i}.conv.weight"), g).with_singular_values(values)
        })
        .collect()
}

fn cost(v: ConvVariant, g: &ConvGeometry, r: usize) -> usize {
    if r == 0 { 0 } else { param_count(v, g, r) }
}

/// What every plan must satisfy, whatever the rule.
fn check_plan(plan: &RankPlan, layers: &[LayerInfo], budget: usize) {
    let v = plan.variant;
    assert!(plan.total <= budget, "{v}: total {} > {budget}", plan.total);
    assert_eq!(plan.budget, budget);
    assert_eq!(
        plan.total,
        plan.layers.iter().map(|l| l.params).sum::<usize>()
    );
    assert_eq!(plan.layers.len() + plan.left_out.len(), layers.len());
    for layer in layers {
        let g = &layer.geometry;
        let cap = admissible_rank(v, g);
        assert!(cap <= rank_limit(v, g) && cap <= max_rank(v, g));
        match plan.layers.iter().find(|l| l.path == layer.path) {
            Some(l) => {
                assert!(l.rank >= 1 && l.rank <= rank_limit(v, g), "{v} {l:?}");
                assert_eq!(l.params, param_count(v, g, l.rank), "{v} {l:?}");
                assert!(
                    l.params < full_count(g),
                    "{v} {l:?}: at or above break-even"
                );
                assert_eq!((l.kernel, l.cap), (full_count(g), cap));
            }
            None => {
                let out = plan.left_out.iter().find(|l| l.path == layer.path).unwrap();
                let reason = if cap == 0 {
                    LeftOutReason::NoLowRank
                } else {
                    LeftOutReason::Budget
                };
                assert_eq!(out.reason, reason, "{v} {}", layer.path);
            }
        }
    }
}

/// Filled tops the uniform ranks up until no step fits: every rank at least the uniform one,
/// no layer below its cap with a step that fits what is left, and the lower ranks raised
/// first (no layer two ranks above another that could still rise). On every registered type,
/// on the grid, at every budget.
#[test]
fn filled_spends_the_budget_left_by_uniform_evenly() {
    let layers = grid();
    for v in ConvVariant::all() {
        for budget in budgets(v, &layers) {
            let (Ok(u), Ok(f)) = (
                allocate(v, &layers, budget, Allocation::Uniform),
                allocate(v, &layers, budget, Allocation::Filled),
            ) else {
                continue;
            };
            check_plan(&f, &layers, budget);
            assert!(f.total >= u.total, "{v} {budget}");
            let left = budget - f.total;
            for layer in &layers {
                let g = &layer.geometry;
                let (ru, rf) = (
                    u.rank_of(&layer.path).unwrap_or(0),
                    f.rank_of(&layer.path).unwrap_or(0),
                );
                assert!(rf >= ru, "{v} {budget} {}: {rf} < {ru}", layer.path);
                if rf < admissible_rank(v, g) {
                    let step = cost(v, g, rf + 1) - cost(v, g, rf);
                    assert!(
                        step > left,
                        "{v} {budget} {}: a step of {step} fits {left}",
                        layer.path
                    );
                }
            }
        }
    }
}

/// Budgets from a sliver of rank 1 everywhere to most of the full kernels.
fn budgets(v: ConvVariant, layers: &[LayerInfo]) -> Vec<usize> {
    let rank1: usize = layers
        .iter()
        .filter(|l| admissible_rank(v, &l.geometry) > 0)
        .map(|l| param_count(v, &l.geometry, 1))
        .sum();
    let full: usize = layers.iter().map(|l| full_count(&l.geometry)).sum();
    let mut out = vec![rank1 / 3, rank1 - 1, rank1, rank1 + 1, 3 * rank1];
    out.extend([full / 100, full / 10, full / 3, full, 10 * full]);
    out
}

#[test]
fn every_plan_fits_its_budget_below_break_even_on_a_grid_for_every_registered_type() {
    let layers = grid();
    for v in ConvVariant::all() {
        for budget in budgets(v, &layers) {
            for rule in RULES {
                match allocate(v, &layers, budget, rule) {
                    Ok(plan) => check_plan(&plan, &layers, budget),
                    // Only when not even the cheapest rank-1 adapter fits.
                    Err(LoraError::InvalidRank { .. }) => assert!(layers.iter().all(|l| {
                        admissible_rank(v, &l.geometry) == 0
                            || param_count(v, &l.geometry, 1) > budget
                    })),
                    Err(e) => panic!("{v} {budget} {rule:?}: {e}"),
                }
            }
        }
        // The 1x1 1->1 conv never gets an adapter.
        let plan = allocate(v, &layers, usize::MAX, Allocation::Uniform).unwrap();
        assert!(
            plan.left_out
                .iter()
                .any(|l| l.path == "layers.10.conv.weight" && l.reason == LeftOutReason::NoLowRank)
        );
    }
}

#[test]
fn uniform_is_the_largest_common_rank_and_drops_the_costliest_layers_first() {
    let layers = grid();
    for v in ConvVariant::all() {
        let caps: Vec<usize> = layers
            .iter()
            .map(|l| admissible_rank(v, &l.geometry))
            .collect();
        // Budgets that rank r everywhere spends exactly, and one parameter either side.
        let exact = (1..=6).map(|r| {
            let at = |(l, &cap): (&LayerInfo, &usize)| cost(v, &l.geometry, r.min(cap));
            layers.iter().zip(&caps).map(at).sum::<usize>()
        });
        let exact: Vec<usize> = exact.flat_map(|b| [b - 1, b, b + 1]).collect();
        let cheapest = layers
            .iter()
            .zip(&caps)
            .filter(|&(_, &cap)| cap > 0)
            .map(|(l, _)| param_count(v, &l.geometry, 1))
            .min()
            .unwrap();
        for budget in budgets(v, &layers).into_iter().chain(exact) {
            let plan = match allocate(v, &layers, budget, Allocation::Uniform) {
                Ok(plan) => plan,
                Err(e) => {
                    assert!(cheapest > budget, "{v} {budget}: {e}");
                    continue;
                }
            };
            let kept: Vec<&LayerInfo> = layers
                .iter()
                .filter(|l| plan.rank_of(&l.path).is_some())
                .collect();
            let r = plan.layers.iter().map(|l| l.rank).max().unwrap();
            let total_at = |r: usize| -> usize {
                kept.iter()
                    .map(|l| cost(v, &l.geometry, r.min(admissible_rank(v, &l.geometry))))
                    .sum()
            };
            for l in &kept {
                let cap = admissible_rank(v, &l.geometry);
                assert_eq!(plan.rank_of(&l.path), Some(r.min(cap)), "{v} {budget}");
            }
            // Maximal: one more rank exceeds the budget, unless every kept layer is capped.
            let capped = kept.iter().all(|l| admissible_rank(v, &l.geometry) <= r);
            assert!(capped || total_at(r + 1) > budget, "{v} {budget}: r = {r}");
            // Layers dropped for the budget cost at least as much at rank 1 as any kept one,
            // and adding the cheapest of them at rank 1 would not have fitted.
            let dropped: Vec<usize> = plan
                .left_out
                .iter()
                .filter(|l| l.reason == LeftOutReason::Budget)
                .map(|l| {
                    let g = &layers.iter().find(|x| x.path == l.path).unwrap().geometry;
                    param_count(v, g, 1)
                })
                .collect();
            if let Some(&cheapest) = dropped.iter().min() {
                let kept_rank1: Vec<usize> = kept
                    .iter()
                    .map(|l| param_count(v, &l.geometry, 1))
                    .collect();
                assert!(kept_rank1.iter().all(|&c| c <= cheapest), "{v} {budget}");
                assert!(
                    kept_rank1.iter().sum::<usize>() + cheapest > budget,
                    "{v} {budget}"
                );
            }
        }
    }
}

/// Two 16 -> 16 3x3 kernels (unfolding 16 x 144): one of rank 2 with σ = (4, 4), one with 16
/// orthonormal rows (σ = 1, sixteen times), as burn layers.
fn planted(device: &Device) -> (Conv2d, Conv2d) {
    let mut low = vec![0.0f32; 16 * 144];
    let mut spread = vec![0.0f32; 16 * 144];
    for i in 0..16 {
        // a xᵀ + b yᵀ with a = ones, b = ±1 (a ⟂ b, both of norm 4), x = e_0, y = e_1.
        low[i * 144] = 1.0;
        low[i * 144 + 1] = if i % 2 == 0 { 1.0 } else { -1.0 };
        spread[i * 144 + 9 * i] = 1.0;
    }
    let layer = |values: Vec<f32>| {
        let conv = Conv2dConfig::new([16, 16], [3, 3]).init(device);
        let kernel = Tensor::<4>::from_data(TensorData::new(values, [16, 16, 3, 3]), device);
        Conv2d {
            weight: Param::from_tensor(kernel),
            ..conv
        }
    };
    (layer(low), layer(spread))
}

#[test]
fn energy_gives_more_rank_to_the_spread_spectrum_and_ignores_scale() {
    let device = Device::flex();
    let (low, spread) = planted(&device);
    let a = LayerInfo::of_layer("low.weight", &low).unwrap();
    let b = LayerInfo::of_layer("spread.weight", &spread).unwrap();
    let sv = a.singular_values.clone().unwrap();
    assert!((sv[0] - 4.0).abs() < 1e-5 && (sv[1] - 4.0).abs() < 1e-5 && sv[2] < 1e-5);
    assert!(
        b.singular_values
            .as_ref()
            .unwrap()
            .iter()
            .all(|s| (s - 1.0).abs() < 1e-6)
    );
    let g = a.geometry.clone();
    for v in ConvVariant::all() {
        // Enough for ranks 2 and 4: the rank-2 kernel saturates, the rest goes to the other.
        let budget = cost(v, &g, 2) + cost(v, &g, 4);
        let layers = [a.clone(), b.clone()];
        let plan = allocate(v, &layers, budget, Allocation::Energy).unwrap();
        check_plan(&plan, &layers, budget);
        assert_eq!(plan.rank_of("low.weight"), Some(2), "{v}: {plan:?}");
        assert_eq!(plan.rank_of("spread.weight"), Some(4), "{v}: {plan:?}");
        // Shares, not raw energy: scaling a kernel by 10 changes nothing.
        let loud = b.clone().with_singular_values(vec![10.0; 16]);
        let scaled = allocate(v, &[a.clone(), loud], budget, Allocation::Energy).unwrap();
        assert_eq!(scaled.layers, plan.layers, "{v}");
    }
}

/// The 8x8 Hadamard matrix over sqrt(8): orthogonal.
fn hadamard8() -> Vec<Vec<f64>> {
    (0..8)
        .map(|i: u32| {
            (0..8)
                .map(|j: u32| {
                    if (i & j).count_ones().is_multiple_of(2) {
                        1.0
                    } else {
                        -1.0
                    }
                })
                .map(|x: f64| x / 8f64.sqrt())
                .collect()
        })
        .collect()
}

/// A 5x5 rotation: a product of Givens rotations with fixed angles (orthogonal).
fn rotation5() -> Vec<Vec<f64>> {
    let mut q: Vec<Vec<f64>> = (0..5)
        .map(|i| (0..5).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for (k, (p, r)) in [(0, 1), (1, 3), (2, 4), (0, 4), (3, 2)]
        .into_iter()
        .enumerate()
    {
        let (c, s) = ((0.3 + k as f64).cos(), (0.3 + k as f64).sin());
        for row in &mut q {
            let (x, y) = (row[p], row[r]);
            row[p] = c * x - s * y;
            row[r] = s * x + c * y;
        }
    }
    q
}

#[test]
fn svd_matches_a_known_spectrum_to_1e_9() {
    // A = U diag(σ) Vᵀ, U the first 5 columns of H8, V a 5x5 rotation: 8x5 with spectrum σ.
    let sigma = [7.0, 3.0, 2.5, 0.5, 1e-3];
    let (u, v) = (hadamard8(), rotation5());
    let a: Vec<f64> = (0..8)
        .flat_map(|i| {
            let (u, v) = (&u, &v);
            (0..5).map(move |j| (0..5).map(|k| u[i][k] * sigma[k] * v[j][k]).sum::<f64>())
        })
        .collect();
    let transposed: Vec<f64> = (0..5)
        .flat_map(|j| (0..8).map(move |i| (i, j)))
        .map(|(i, j)| a[i * 5 + j])
        .collect();
    for (data, rows, cols) in [(&a, 8, 5), (&transposed, 5, 8)] {
        let got = singular_values("a", data, rows, cols).unwrap();
        assert_eq!(got.len(), 5);
        for (g, want) in got.iter().zip(sigma) {
            assert!((g - want).abs() < 1e-9, "{rows}x{cols}: {got:?}");
        }
    }
    // Through a burn kernel [4, 2, 1, 4] (unfolding 4 x 8): rows of H8 scaled, in f32.
    let device = Device::flex();
    let scale = [3.0, 2.0, 1.0, 0.25];
    let values: Vec<f32> = (0..4)
        .flat_map(|i| u[i].iter().map(move |x| (x * scale[i]) as f32))
        .collect();
    let kernel = Tensor::<4>::from_data(TensorData::new(values, [4, 2, 1, 4]), &device);
    let got = kernel_singular_values("k", kernel).unwrap();
    for (g, want) in got.iter().zip(scale) {
        assert!((g - want).abs() < 1e-6, "{got:?}");
    }
}

#[derive(Module, Debug)]
struct Net {
    audio: Conv1d,
    blocks: Vec<Conv2d>,
}

#[test]
fn plans_become_configs_that_attach_exactly_the_planned_parameters() {
    let device = Device::flex();
    let net = Net {
        audio: Conv1dConfig::new(4, 8, 3).init(&device),
        blocks: vec![
            Conv2dConfig::new([3, 16], [3, 3]).init(&device),
            Conv2dConfig::new([16, 32], [3, 3]).init(&device),
            Conv2dConfig::new([32, 32], [1, 1]).init(&device),
        ],
    };
    let layers = model_kernels(&net, true).unwrap();
    let paths: Vec<&str> = layers.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "audio.weight",
            "blocks.0.weight",
            "blocks.1.weight",
            "blocks.2.weight"
        ]
    );
    for v in ConvVariant::all() {
        for rule in RULES {
            let plan = allocate(v, &layers, 900, rule).unwrap();
            let config = plan.lora_config(2.0).unwrap();
            for l in &plan.layers {
                let spec = config.spec_for(&l.path).unwrap();
                assert_eq!((spec.rank, spec.alpha), (l.rank, 2.0 * l.rank as f64));
            }
            // The dots are escaped: a look-alike path gets the default, not a pattern.
            let look_alike = LoraConfig {
                rank: 999,
                ..config.clone()
            };
            assert_eq!(look_alike.spec_for("blocksX1.weight").unwrap().rank, 999);
            let adapted = attach(&net, &config, &ConvFactory::new(v)).unwrap();
            assert_eq!(param_counts(&adapted).trainable, plan.total, "{v} {rule:?}");
        }
    }
}

#[test]
fn budgets_too_small_leave_layers_out_and_nothing_to_do_is_an_error() {
    let layers = grid();
    let v = ConvVariant::LoCon;
    let rank1: Vec<usize> = layers
        .iter()
        .map(|l| param_count(v, &l.geometry, 1))
        .collect();
    // Room for the two cheapest rank-1 adapters only (the 1x1 1->1 conv aside).
    let mut sorted: Vec<usize> = rank1
        .iter()
        .copied()
        .enumerate()
        .filter(|&(i, _)| admissible_rank(v, &layers[i].geometry) > 0)
        .map(|(_, c)| c)
        .collect();
    sorted.sort_unstable();
    let budget = sorted[0] + sorted[1];
    let plan = allocate(v, &layers, budget, Allocation::Uniform).unwrap();
    check_plan(&plan, &layers, budget);
    assert_eq!(plan.layers.len(), 2, "{plan:?}");
    assert_eq!(plan.left_out.len(), layers.len() - 2);
    assert!(plan.layers.iter().all(|l| l.rank == 1));

    // Zero budget, a budget below the cheapest rank-1 adapter, no layers: clear errors.
    for budget in [0, sorted[0] - 1] {
        let err = allocate(v, &layers, budget, Allocation::Uniform).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("a budget of {budget} ")), "{text}");
        assert!(text.contains(&format!("costs {}", sorted[0])), "{text}");
    }
    let err = allocate(v, &[], 1000, Allocation::Uniform).unwrap_err();
    assert!(err.to_string().contains("the layer list is empty"), "{err}");
    // Nothing below break-even at all.
    let tiny = [LayerInfo::new("t.weight", ConvGeometry::new(1, 1, vec![1]))];
    let err = allocate(v, &tiny, 1000, Allocation::Uniform).unwrap_err();
    assert!(err.to_string().contains("below break-even"), "{err}");
    // The energy rule needs spectra; paths must be unique.
    let bare = [LayerInfo::new(
        "b.weight",
        ConvGeometry::new(8, 8, vec![3, 3]),
    )];
    let err = allocate(v, &bare, 1000, Allocation::Energy).unwrap_err();
    assert!(err.to_string().contains("`b.weight`") && err.to_string().contains("singular"));
    let twice = [bare[0].clone(), bare[0].clone()];
    let err = allocate(v, &twice, 1000, Allocation::Uniform).unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
}

/// dlib's ResNet-29 as face-api runs it: (group, in, out, kernel, count).
const RESNET29: [(&str, usize, usize, usize, usize); 9] = [
    ("stem", 3, 32, 7, 1),
    ("conv32", 32, 32, 3, 6),
    ("conv64_down", 32, 64, 3, 1),
    ("conv64", 64, 64, 3, 7),
    ("conv128_down", 64, 128, 3, 1),
    ("conv128", 128, 128, 3, 5),
    ("conv256_down", 128, 256, 3, 1),
    ("conv256", 256, 256, 3, 7),
    ("", 0, 0, 0, 0),
];

#[test]
fn resnet29_uniform_plans_at_1_3_and_8_percent() {
    let layers: Vec<LayerInfo> = RESNET29
        .iter()
        .filter(|g| g.4 > 0)
        .flat_map(|&(name, s, t, k, n)| {
            (0..n).map(move |i| {
                LayerInfo::new(
                    format!("{name}.{i}.weight"),
                    ConvGeometry::new(s, t, vec![k, k]),
                )
            })
        })
        .collect();
    assert_eq!(layers.len(), 29);
    let weights: usize = layers.iter().map(|l| full_count(&l.geometry)).sum();
    println!("{} convs, {weights} conv weights", layers.len());
    let base = 5_573_952usize;
    for v in ConvVariant::DECOMPOSITIONS {
        for percent in [1, 3, 8] {
            let budget = base * percent / 100;
            let plan = allocate(v, &layers, budget, Allocation::Uniform).unwrap();
            check_plan(&plan, &layers, budget);
            let groups: Vec<String> = RESNET29
                .iter()
                .filter(|g| g.4 > 0)
                .map(|g| {
                    format!(
                        "{}={}",
                        g.0,
                        plan.rank_of(&format!("{}.0.weight", g.0)).unwrap_or(0)
                    )
                })
                .collect();
            println!(
                "{v:>8} {percent}% (budget {budget}): total {} ({:.3}%), {} left out; {}",
                plan.total,
                100.0 * plan.total as f64 / base as f64,
                plan.left_out.len(),
                groups.join(" ")
            );
        }
    }
}
