//! Property test: centre inflation of an adapted Conv2d is exact on every depth slice, over
//! random geometries (one group, two groups or depthwise; strides 1 to 3 and dilations 1 to 2
//! per axis; kernel sizes 1 to 4; symmetric, asymmetric or `Same` padding), every variant,
//! ranks from 1 to the limit, depth kernels 1, 3 and 5, and random volumes. Geometries burn's
//! Conv3d cannot express (asymmetric padding, `Same` that is not symmetric) must be refused
//! with `InflateError::Padding`.
//!
//! Knobs: `LORA_PROPTEST_CASES` (default 32) and `LORA_PROPTEST_SEED` (first case seed,
//! default 0x5eed); `LORA_PROPTEST_SEED=<seed> LORA_PROPTEST_CASES=1` replays a failing case.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Shape, Tensor, TensorData};
use lora_3d::{InflateError, InflateOptions, inflate};
use lora_conv::bounds::kernel_rank_limit;
use lora_conv::{AnyAdapter, ConvFactory, ConvVariant, conv_config};
use lora_core::testing::{Tol, check_close};
use lora_core::{Adapter, LoraParam, attach};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn cases() -> u64 {
    std::env::var("LORA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

fn first_seed() -> u64 {
    std::env::var("LORA_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed)
}

#[derive(Debug, Clone)]
enum Pad {
    /// (top, left, bottom, right), as burn's `PaddingConfig2d::Explicit`.
    Explicit([usize; 4]),
    Same,
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    s: usize,
    t: usize,
    groups: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: Pad,
    depth_kernel: usize,
    volume: [usize; 3],
    batch: usize,
    variant: ConvVariant,
    rank: usize,
}

impl Case {
    fn draw(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let (s, t, groups) = match rng.random_range(0..4) {
            0 => {
                let s = rng.random_range(2..=4);
                (s, s * rng.random_range(1..=2), s)
            }
            1 => (2 * rng.random_range(1..=3), 2 * rng.random_range(1..=3), 2),
            _ => (rng.random_range(1..=5), rng.random_range(1..=5), 1),
        };
        let kernel = [rng.random_range(1..=4), rng.random_range(1..=4)];
        let stride = [rng.random_range(1..=3), rng.random_range(1..=3)];
        let dilation = [rng.random_range(1..=2), rng.random_range(1..=2)];
        // Padding at most the dilated kernel's reach, `dilation·(k − 1)`, per side: more would
        // give outputs that see only padding (bias only, whatever the adapter).
        let reach = [dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)];
        let kind = rng.random_range(0..3);
        let mut p = |axis: usize| rng.random_range(0..=2).min(reach[axis]);
        let pad = match kind {
            0 => Pad::Same,
            1 => Pad::Explicit([p(0), p(1), p(0), p(1)]),
            _ => {
                let (h, w) = (p(0), p(1));
                Pad::Explicit([h, w, h, w])
            }
        };
        let size = |j: usize, rng: &mut StdRng| {
            dilation[j] * (kernel[j] - 1) + 1 + rng.random_range(0..=3)
        };
        let volume = [
            rng.random_range(1..=4),
            size(0, &mut rng),
            size(1, &mut rng),
        ];
        let variant = ConvVariant::BUILTIN[rng.random_range(0..ConvVariant::BUILTIN.len())];
        let limit = kernel_rank_limit(variant, &[t, s / groups, kernel[0], kernel[1]]);
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
            depth_kernel: [1, 3, 5][rng.random_range(0..3)],
            volume,
            batch: rng.random_range(1..=2),
            variant,
            rank,
        }
    }

    /// Whether burn's Conv3d can express the padding (what inflation must accept).
    fn inflatable(&self) -> bool {
        match self.pad {
            Pad::Explicit([top, left, bottom, right]) => top == bottom && left == right,
            Pad::Same => self.stride == [1, 1] && self.kernel.iter().all(|k| k % 2 == 1),
        }
    }
}

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

fn max_abs<const N: usize>(t: Tensor<N>) -> f32 {
    t.abs().max().into_scalar::<f32>()
}

fn run_case(case: &Case) -> Result<(), String> {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(case.seed ^ 0x9e37_79b9_7f4a_7c15);
    let c = case.s / case.groups;
    let [kh, kw] = case.kernel;
    let padding = match case.pad {
        Pad::Same => PaddingConfig2d::Same,
        Pad::Explicit([top, left, bottom, right]) => {
            PaddingConfig2d::Explicit(top, left, bottom, right)
        }
    };
    let mut conv = Conv2dConfig::new([case.s, case.t], case.kernel)
        .with_stride(case.stride)
        .with_dilation(case.dilation)
        .with_groups(case.groups)
        .with_padding(padding)
        .init(&device);
    let w_std = 1.0 / ((c * kh * kw) as f32).sqrt();
    let w = random_tensor::<4>(&mut rng, vec![case.t, c, kh, kw], w_std, &device);
    conv.weight = conv.weight.map(|_| w);
    let config = conv_config(case.rank, 2.0 * case.rank as f64).with_targets(vec!["weight".into()]);
    let adapted =
        attach(&conv, &config, &ConvFactory::new(case.variant)).map_err(|e| e.to_string())?;
    let adapted = randomize_factors(adapted, &mut rng, 0.5);
    let [depth, h, w] = case.volume;
    let x = random_tensor::<5>(
        &mut rng,
        vec![case.batch, case.s, depth, h, w],
        1.0,
        &device,
    );

    let inflated = inflate(adapted.clone(), &InflateOptions::new(case.depth_kernel));
    if !case.inflatable() {
        return match inflated {
            Err(InflateError::Padding { .. }) => Ok(()),
            other => Err(format!(
                "padding burn's Conv3d cannot express must be refused, got {other:?}"
            )),
        };
    }
    let conv3d = inflated.map_err(|e| e.to_string())?;
    if conv3d.kernel_size != [case.depth_kernel, kh, kw] {
        return Err(format!("kernel size {:?}", conv3d.kernel_size));
    }
    let adapter = adapted
        .weight
        .reparameterization::<LoraParam<AnyAdapter>>()
        .expect("adapted")
        .adapter
        .clone();
    let delta: Tensor<4> = adapter.delta_weight::<4>();
    // 1e-5 of the largest output, absolute floor 1e-6 times a bound on the summed terms.
    let bound = max_abs(x.clone())
        * (max_abs(adapted.weight.base()) + max_abs(delta))
        * (c * kh * kw) as f32;
    let tol = Tol {
        rel: 1e-5,
        abs: 1e-6 * bound,
    };
    let y3 = conv3d.forward(x.clone());
    let [b, t, d_out, ho, wo] = y3.dims();
    if d_out != depth {
        return Err(format!("{d_out} output slices for {depth} input slices"));
    }
    for d in 0..depth {
        let slice = x
            .clone()
            .slice([0..b, 0..case.s, d..d + 1, 0..h, 0..w])
            .reshape([b, case.s, h, w]);
        let want = adapted.forward(slice);
        let got = y3
            .clone()
            .slice([0..b, 0..t, d..d + 1, 0..ho, 0..wo])
            .reshape([b, t, ho, wo]);
        // The adapter changes this slice's output (so the comparison is not vacuous).
        let plain = conv.forward(
            x.clone()
                .slice([0..b, 0..case.s, d..d + 1, 0..h, 0..w])
                .reshape([b, case.s, h, w]),
        );
        let change = max_abs(want.clone() - plain);
        if change <= tol.bound(max_abs(want.clone())) {
            return Err(format!(
                "depth slice {d}: the adapter did not change the output ({change:e})"
            ));
        }
        check_close(got, want, tol, &format!("depth slice {d}"))?;
    }
    Ok(())
}

#[test]
fn centre_inflation_is_exact_per_slice() {
    let first = first_seed();
    let mut failures = Vec::new();
    let mut inflatable = 0;
    for i in 0..cases() {
        let case = Case::draw(first.wrapping_add(i));
        inflatable += usize::from(case.inflatable());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&case)));
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
        "{} of {} cases failed (replay one with LORA_PROPTEST_SEED=<seed> \
         LORA_PROPTEST_CASES=1):\n{}",
        failures.len(),
        cases(),
        failures.join("\n")
    );
    eprintln!(
        "centre inflation: {} cases passed ({inflatable} inflated, the rest refused)",
        cases()
    );
}
