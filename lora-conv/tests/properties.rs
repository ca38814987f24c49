//! Property tests over random conv geometries.
//!
//! Every case draws a geometry (1, 2 or 3 spatial axes; one group, two groups or depthwise;
//! strides 1 to 3 and dilations 1 to 2 per axis; kernel sizes 1 to 4, so 1 and even sizes
//! included; symmetric, asymmetric (Conv1d/2d, which take it) or `Same` padding), a variant
//! (LoCon, Tucker-2, CP), a rank from 1 to the variant's limit on that kernel (the limit itself a
//! quarter of the time), random base weights, random non-zero factors and a random input, all
//! from one seeded `StdRng`, and checks:
//! - merge then unmerge gives back the base to a few ulps of the magnitudes involved, and
//!   merge writes `W + scale·ΔK` and sets the flag;
//! - the merged forward equals the unmerged forward;
//! - weight-space equals bypass (groups = 1; grouped convs must be refused by the bypass);
//! - `param_count` equals the counted trainable parameters and the adapter's own count.
//!
//! Knobs (environment variables): `LORA_PROPTEST_CASES` (cases per property, default 32) and
//! `LORA_PROPTEST_SEED` (first case seed, default 0x5eed). A failure prints the case and its
//! seed; `LORA_PROPTEST_SEED=<seed> LORA_PROPTEST_CASES=1` replays it alone.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Conv3d, Conv3dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d, PaddingConfig3d};
use burn::tensor::{Device, Shape, Tensor, TensorData};
use lora_conv::bounds::{kernel_rank_limit, param_count};
use lora_conv::{AnyAdapter, ConvFactory, ConvLayer, ConvVariant, LoraConv, conv_config};
use lora_core::testing::{Tol, check_close};
use lora_core::{
    Adapter, AdapterSpec, LoraError, LoraParam, adapted_params, attach, merge, param_counts,
    unmerge,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cases per property: `LORA_PROPTEST_CASES`, default 32.
fn cases() -> u64 {
    std::env::var("LORA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

/// First case seed: `LORA_PROPTEST_SEED`, default 0x5eed.
fn first_seed() -> u64 {
    std::env::var("LORA_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed)
}

#[derive(Debug, Clone)]
enum Pad {
    /// Per-axis (begin, end).
    Explicit(Vec<(usize, usize)>),
    Same,
}

/// One random conv layer, adapter and input.
#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    s: usize,
    t: usize,
    groups: usize,
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    pad: Pad,
    input: Vec<usize>,
    batch: usize,
    variant: ConvVariant,
    rank: usize,
}

impl Case {
    fn draw(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = rng.random_range(1..=3usize);
        let (s, t, groups) = match rng.random_range(0..4) {
            // Depthwise: one input channel per group.
            0 => {
                let s = rng.random_range(2..=4);
                (s, s * rng.random_range(1..=2), s)
            }
            1 => (2 * rng.random_range(1..=3), 2 * rng.random_range(1..=3), 2),
            _ => (rng.random_range(1..=5), rng.random_range(1..=5), 1),
        };
        let max_k = if d == 3 { 3 } else { 4 };
        let kernel: Vec<usize> = (0..d).map(|_| rng.random_range(1..=max_k)).collect();
        // Conv1d takes one stride and one dilation; keep them per axis for 2D and 3D.
        let stride: Vec<usize> = (0..d).map(|_| rng.random_range(1..=3)).collect();
        let dilation: Vec<usize> = (0..d).map(|_| rng.random_range(1..=2)).collect();
        let odd_unit_stride = kernel.iter().all(|k| k % 2 == 1) && stride.iter().all(|&s| s == 1);
        let pad = match rng.random_range(0..3) {
            // burn's Conv3d pads symmetrically, so `Same` only where that is symmetric.
            0 if d < 3 || odd_unit_stride => Pad::Same,
            // Padding at most the dilated kernel's reach, `dilation·(k − 1)`, per side: more
            // would give outputs that see only padding (bias only, whatever the adapter).
            1 if d < 3 => Pad::Explicit(
                (0..d)
                    .map(|j| {
                        let reach = dilation[j] * (kernel[j] - 1);
                        (
                            rng.random_range(0..=2).min(reach),
                            rng.random_range(0..=2).min(reach),
                        )
                    })
                    .collect(),
            ),
            _ => Pad::Explicit(
                (0..d)
                    .map(|j| {
                        let p = rng.random_range(0..=2).min(dilation[j] * (kernel[j] - 1));
                        (p, p)
                    })
                    .collect(),
            ),
        };
        // At least the dilated kernel, so that every output is non-empty without padding.
        let extra = if d == 3 { 2 } else { 4 };
        let input = (0..d)
            .map(|j| dilation[j] * (kernel[j] - 1) + 1 + rng.random_range(0..=extra))
            .collect();
        let variant = ConvVariant::BUILTIN[rng.random_range(0..ConvVariant::BUILTIN.len())];
        let mut shape = vec![t, s / groups];
        shape.extend_from_slice(&kernel);
        let limit = kernel_rank_limit(variant, &shape);
        let rank = if rng.random_bool(0.25) {
            limit
        } else {
            rng.random_range(1..=limit)
        };
        Self {
            seed,
            s,
            t,
            groups,
            kernel,
            stride,
            dilation,
            pad,
            input,
            batch: rng.random_range(1..=2),
            variant,
            rank,
        }
    }

    fn d(&self) -> usize {
        self.kernel.len()
    }

    fn pairs(&self) -> Vec<(usize, usize)> {
        match &self.pad {
            Pad::Explicit(p) => p.clone(),
            Pad::Same => vec![],
        }
    }
}

/// What a property needs from a conv layer beyond [`ConvLayer`].
trait Probe: ConvLayer + Clone {
    fn adapter(&self) -> AnyAdapter;
    fn base_weight<const N: usize>(&self) -> Tensor<N>;
}

macro_rules! probe {
    ($($t:ty),*) => {$(
        impl Probe for $t {
            fn adapter(&self) -> AnyAdapter {
                self.weight
                    .reparameterization::<LoraParam<AnyAdapter>>()
                    .expect("the weight carries an adapter")
                    .adapter
                    .clone()
            }
            fn base_weight<const N: usize>(&self) -> Tensor<N> {
                let w = self.weight.base();
                let shape = w.shape();
                w.reshape(shape)
            }
        }
    )*};
}
probe!(Conv1d, Conv2d, Conv3d);

/// A tensor of `N(0, std²)`-ish draws (uniform with that standard deviation) from `rng`.
fn random_tensor<const D: usize>(
    rng: &mut StdRng,
    shape: Vec<usize>,
    std: f32,
    device: &Device,
) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let half_width = std * 3f32.sqrt();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-half_width..=half_width))
        .collect();
    Tensor::from_data(TensorData::new(values, Shape::from(shape)), device)
}

/// Random values of magnitude between 0.5 and 1 times `std·√3`, with random signs: bounded
/// away from zero, so that a product of several factors (CP has `2 + d`) cannot make the
/// update vanishingly small and the non-vacuity checks meaningless.
fn random_factor<const D: usize>(
    rng: &mut StdRng,
    shape: Vec<usize>,
    std: f32,
    device: &Device,
) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let half_width = std * 3f32.sqrt();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let magnitude = rng.random_range(0.5 * half_width..=half_width);
            if rng.random_bool(0.5) {
                magnitude
            } else {
                -magnitude
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(values, Shape::from(shape)), device)
}

/// Replace every adapter factor by random values from `rng` (keeping ids and trainability).
fn randomize_factors<M: Module>(model: M, rng: &mut StdRng, std: f32) -> M {
    struct R<'a> {
        rng: &'a mut StdRng,
        std: f32,
        at: lora_core::Position,
    }
    impl ModuleMapper for R<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.at.outside() {
                return param;
            }
            let (rng, std) = (&mut *self.rng, self.std);
            param.map(|old| {
                let require_grad = old.is_require_grad();
                random_factor::<D>(rng, old.shape().to_vec(), std, &old.device())
                    .set_require_grad(require_grad)
            })
        }
    }
    model.map(&mut R {
        rng,
        std,
        at: lora_core::Position::default(),
    })
}

/// A property checked on one case: the plain conv, the adapted conv and an input.
trait Property {
    fn check<C: Probe, const N: usize>(
        &self,
        case: &Case,
        conv: C,
        adapted: C,
        x: Tensor<N>,
    ) -> Result<(), String>;
}

/// Build the case's conv (random weights and bias), attach its adapter with random factors,
/// draw an input, and check `property`.
fn run_case<P: Property>(property: &P, case: &Case) -> Result<(), String> {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(case.seed ^ 0x9e37_79b9_7f4a_7c15);
    let c = case.s / case.groups;
    let fan_in = (c * case.kernel.iter().product::<usize>()) as f32;
    let mut weight_shape = vec![case.t, c];
    weight_shape.extend_from_slice(&case.kernel);
    let mut input_shape = vec![case.batch, case.s];
    input_shape.extend_from_slice(&case.input);
    let w_std = 1.0 / fan_in.sqrt();
    let config = conv_config(case.rank, 2.0 * case.rank as f64).with_targets(vec!["weight".into()]);
    let factory = ConvFactory::new(case.variant);
    macro_rules! go {
        ($conv:expr, $n:literal) => {{
            let conv = $conv;
            let conv = {
                let w = random_tensor::<$n>(&mut rng, weight_shape.clone(), w_std, &device);
                let b = random_tensor::<1>(&mut rng, vec![case.t], 0.1, &device);
                let mut conv = conv;
                conv.weight = conv.weight.map(|_| w);
                conv.bias = conv.bias.map(|p| p.map(|_| b));
                conv
            };
            let adapted = attach(&conv, &config, &factory).map_err(|e| e.to_string())?;
            let adapted = randomize_factors(adapted, &mut rng, 0.5);
            let x = random_tensor::<$n>(&mut rng, input_shape.clone(), 1.0, &device);
            property.check(case, conv, adapted, x)
        }};
    }
    let k = &case.kernel;
    match case.d() {
        1 => {
            let padding = match &case.pad {
                Pad::Same => PaddingConfig1d::Same,
                Pad::Explicit(p) => PaddingConfig1d::Explicit(p[0].0, p[0].1),
            };
            go!(
                Conv1dConfig::new(case.s, case.t, k[0])
                    .with_stride(case.stride[0])
                    .with_dilation(case.dilation[0])
                    .with_groups(case.groups)
                    .with_padding(padding)
                    .init(&device),
                3
            )
        }
        2 => {
            let padding = match &case.pad {
                Pad::Same => PaddingConfig2d::Same,
                Pad::Explicit(p) => PaddingConfig2d::Explicit(p[0].0, p[1].0, p[0].1, p[1].1),
            };
            go!(
                Conv2dConfig::new([case.s, case.t], [k[0], k[1]])
                    .with_stride([case.stride[0], case.stride[1]])
                    .with_dilation([case.dilation[0], case.dilation[1]])
                    .with_groups(case.groups)
                    .with_padding(padding)
                    .init(&device),
                4
            )
        }
        _ => {
            let padding = match &case.pad {
                Pad::Same => PaddingConfig3d::Same,
                Pad::Explicit(p) => PaddingConfig3d::Explicit(p[0].0, p[1].0, p[2].0),
            };
            go!(
                Conv3dConfig::new([case.s, case.t], [k[0], k[1], k[2]])
                    .with_stride([case.stride[0], case.stride[1], case.stride[2]])
                    .with_dilation([case.dilation[0], case.dilation[1], case.dilation[2]])
                    .with_groups(case.groups)
                    .with_padding(padding)
                    .init(&device),
                5
            )
        }
    }
}

/// Run `property` on `cases()` cases; panic with every failing case and its seed.
fn for_all<P: Property>(name: &str, property: P) {
    let first = first_seed();
    let mut failures = Vec::new();
    let mut dims = [0usize; 3];
    for i in 0..cases() {
        let case = Case::draw(first.wrapping_add(i));
        dims[case.d() - 1] += 1;
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&property, &case)));
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .map_or("panic".to_string(), |m| format!("panic: {m}")),
        };
        failures.push(format!("seed {}: {case:?}\n  {error}", case.seed));
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases failed (replay one with LORA_PROPTEST_SEED=<seed> \
         LORA_PROPTEST_CASES=1):\n{}",
        failures.len(),
        cases(),
        failures.join("\n")
    );
    eprintln!(
        "{name}: {} cases passed (1D {}, 2D {}, 3D {})",
        cases(),
        dims[0],
        dims[1],
        dims[2]
    );
}

fn max_abs<const N: usize>(t: Tensor<N>) -> f32 {
    t.abs().max().into_scalar::<f32>()
}

/// Output tolerance: 1e-4 of the largest output, with an absolute floor of 1e-6 times a bound
/// on the terms summed into one output, `|x|_max · (|W|_max + |ΔK|_max) · (s/g)·K`.
fn output_tol<C: Probe, const N: usize>(case: &Case, adapted: &C, x: &Tensor<N>) -> Tol {
    let w: Tensor<N> = adapted.base_weight();
    let delta: Tensor<N> = adapted.adapter().delta_weight::<N>();
    let terms = (case.s / case.groups * case.kernel.iter().product::<usize>()) as f32;
    let bound = max_abs(x.clone()) * (max_abs(w) + max_abs(delta)) * terms;
    Tol {
        rel: 1e-4,
        abs: 1e-6 * bound,
    }
}

struct MergeUnmergeIsIdentity;

impl Property for MergeUnmergeIsIdentity {
    fn check<C: Probe, const N: usize>(
        &self,
        _case: &Case,
        conv: C,
        adapted: C,
        _x: Tensor<N>,
    ) -> Result<(), String> {
        let w: Tensor<N> = conv.base_weight();
        let delta: Tensor<N> = adapted.adapter().delta_weight::<N>();
        if max_abs(delta.clone()) == 0.0 {
            return Err("the random factors give a zero update".into());
        }
        let merged = merge(&adapted).map_err(|e| e.to_string())?;
        if !adapted_params(&merged).iter().all(|a| a.merged) {
            return Err("merge did not set the merged flag".into());
        }
        // Merge writes W + scale·ΔK (the two computations may differ in the last bits).
        check_close(
            merged.base_weight::<N>(),
            w.clone() + delta.clone(),
            Tol {
                rel: 1e-6,
                abs: 1e-7,
            },
            "merged base = W + scale·ΔK",
        )?;
        let restored = unmerge(&merged).map_err(|e| e.to_string())?;
        if adapted_params(&restored).iter().any(|a| a.merged) {
            return Err("unmerge did not clear the merged flag".into());
        }
        // A few ulps of the magnitudes involved: unmerge computes (W+Δ) − ((W+Δ+Δ) − (W+Δ)).
        let magnitude = max_abs(w.clone()) + 2.0 * max_abs(delta);
        check_close(
            restored.base_weight::<N>(),
            w,
            Tol {
                rel: 0.0,
                abs: 4.0 * f32::EPSILON * magnitude,
            },
            "base after merge and unmerge",
        )
    }
}

struct MergedForwardEqualsUnmerged;

impl Property for MergedForwardEqualsUnmerged {
    fn check<C: Probe, const N: usize>(
        &self,
        case: &Case,
        conv: C,
        adapted: C,
        x: Tensor<N>,
    ) -> Result<(), String> {
        let tol = output_tol(case, &adapted, &x);
        let y = adapted.forward_nd(x.clone());
        // The adapter changes the output (so the comparison below is not vacuous).
        let change = max_abs(y.clone() - conv.forward_nd(x.clone()));
        if change <= tol.bound(max_abs(y.clone())) {
            return Err(format!(
                "the adapter did not change the output ({change:e})"
            ));
        }
        let merged = merge(&adapted).map_err(|e| e.to_string())?;
        check_close(
            merged.forward_nd(x.clone()),
            y.clone(),
            tol,
            "merged forward",
        )?;
        let restored = unmerge(&merged).map_err(|e| e.to_string())?;
        check_close(restored.forward_nd(x), y, tol, "unmerged again")
    }
}

struct WeightSpaceEqualsBypass;

impl Property for WeightSpaceEqualsBypass {
    fn check<C: Probe, const N: usize>(
        &self,
        case: &Case,
        conv: C,
        adapted: C,
        x: Tensor<N>,
    ) -> Result<(), String> {
        let device = Device::flex();
        let spec = AdapterSpec::new(case.rank, 1.0);
        let wrapped = LoraConv::wrap("conv", conv, case.variant, &spec, 0.0, &device);
        if case.groups > 1 {
            return match wrapped {
                Err(LoraError::UnsupportedGeometry { .. }) => Ok(()),
                other => Err(format!(
                    "a grouped conv must refuse the bypass, got {other:?}"
                )),
            };
        }
        let bypass = wrapped
            .map_err(|e| e.to_string())?
            .with_adapter("conv", adapted.adapter())
            .map_err(|e| e.to_string())?;
        let tol = output_tol(case, &adapted, &x);
        check_close(
            bypass.forward(x.clone()),
            adapted.forward_nd(x),
            tol,
            "bypass vs weight-space",
        )
    }
}

struct ParamCountIsCounted;

impl Property for ParamCountIsCounted {
    fn check<C: Probe, const N: usize>(
        &self,
        case: &Case,
        conv: C,
        adapted: C,
        _x: Tensor<N>,
    ) -> Result<(), String> {
        let geometry = conv.geometry();
        let formula = param_count(case.variant, &geometry, case.rank);
        let adapter = adapted.adapter();
        let counts = param_counts(&adapted);
        let counted = [
            ("param_counts().trainable", counts.trainable),
            ("param_counts().adapter", counts.adapter),
            ("Adapter::trainable_params", adapter.trainable_params()),
            ("num_params of the adapter", Module::num_params(&adapter)),
            ("total - base", counts.total - Module::num_params(&conv)),
        ];
        for (what, n) in counted {
            if n != formula {
                return Err(format!("{what} = {n}, param_count = {formula}"));
            }
        }
        if adapter.rank() != case.rank {
            return Err(format!("rank {} != {}", adapter.rank(), case.rank));
        }
        Ok(())
    }
}

#[test]
fn merge_then_unmerge_is_the_identity() {
    for_all("merge then unmerge", MergeUnmergeIsIdentity);
}

#[test]
fn merged_forward_equals_unmerged_forward() {
    for_all("merged forward", MergedForwardEqualsUnmerged);
}

#[test]
fn weight_space_equals_bypass() {
    for_all("weight-space vs bypass", WeightSpaceEqualsBypass);
}

#[test]
fn param_count_equals_counted_parameters() {
    for_all("parameter count", ParamCountIsCounted);
}

/// The generator reaches every corner it claims to: each dimension, grouping, padding kind,
/// variant, kernel sizes 1 and even, strides and dilations above 1, and ranks at the limit.
#[test]
fn the_generator_covers_the_parameter_space() {
    let cases: Vec<Case> = (0..400).map(|i| Case::draw(0x5eed + i)).collect();
    let any = |f: &dyn Fn(&Case) -> bool| cases.iter().any(f);
    for d in 1..=3 {
        assert!(any(&|c| c.d() == d), "d = {d}");
    }
    assert!(any(&|c| c.groups == c.s && c.s > 1), "depthwise");
    assert!(any(&|c| c.groups == 2 && c.s > 2), "groups 2");
    assert!(any(&|c| matches!(c.pad, Pad::Same)), "same");
    assert!(
        any(&|c| c.pairs().iter().any(|(b, e)| b != e)),
        "asymmetric"
    );
    assert!(any(&|c| c.kernel.contains(&1)), "kernel 1");
    assert!(any(&|c| c.kernel.iter().any(|k| k % 2 == 0)), "even kernel");
    assert!(any(&|c| c.stride.iter().any(|&s| s > 1)), "stride");
    assert!(any(&|c| c.dilation.iter().any(|&s| s > 1)), "dilation");
    for v in ConvVariant::BUILTIN {
        assert!(any(&|c| c.variant == v), "{v}");
        assert!(
            any(&|c| {
                let mut shape = vec![c.t, c.s / c.groups];
                shape.extend_from_slice(&c.kernel);
                c.variant == v && c.rank == kernel_rank_limit(v, &shape) && c.rank > 1
            }),
            "{v} at its rank limit"
        );
    }
    assert!(any(&|c| c.rank == 1), "rank 1");
}
