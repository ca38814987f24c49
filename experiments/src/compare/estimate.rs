//! `compare --estimate`: measure training and inference throughput of the plan's CNN on this
//! machine with a short probe on random data, and estimate the plan's wall time from it.

use std::fmt::Write as _;
use std::time::Instant;

use burn::tensor::Device;
use lora_conv::{ConvVariant, ForwardMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::plan::{Method, Plan};
use crate::data::Images;
use crate::error::Result;
use crate::harness::dataset::DataShape;
use crate::methods::{freeze, plan_ranks, with_adapters, with_bypass};
use crate::model::Cnn;
use crate::train::{Augment, Classifier, Schedule, TrainConfig, predict, train};

/// Measured throughput.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Training steps per second per probe: `full`, `head`, and each adapter type of the plan
    /// at the probe rank in its three forms: `<type>` (weight-space, as the sweeps and the main
    /// final runs train), `<type>-bypass` and `<type>-auto` (the twins).
    pub train: Vec<(String, f64)>,
    /// Examples per second in inference (batches of 256).
    pub inference: f64,
    /// The rank of the adapter probes.
    pub rank: usize,
    /// Steps per probe.
    pub steps: usize,
}

impl Throughput {
    fn rate(&self, name: &str) -> f64 {
        self.train
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, r)| *r)
    }
}

/// `n` random examples of the shape the plan's CNN takes.
fn random_images(shape: &DataShape, n: usize, seed: u64) -> Images {
    let mut rng = StdRng::seed_from_u64(seed);
    Images {
        pixels: (0..n * shape.example_size())
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect(),
        dims: shape.dims.clone(),
        labels: (0..n)
            .map(|_| rng.random_range(0..shape.classes.max(1)))
            .collect(),
    }
}

fn time_steps<M: Classifier<4>>(
    model: M,
    plan: &Plan,
    steps: usize,
    device: &Device,
) -> Result<f64> {
    let data = random_images(&plan.pretrain.input(), plan.batch_size * 4, 1);
    let config = TrainConfig {
        steps,
        batch_size: plan.batch_size,
        lr: 1e-3,
        seed: 0,
        evals: 1,
        schedule: Schedule::Constant,
        augment: Augment::None,
    };
    // Warm up (allocations, autotuning), then measure.
    let warm = TrainConfig { steps: 2, ..config };
    let model = train::<4, M>(model, &data, None, &warm, device, "warm-up")?.model;
    let trained = train::<4, M>(model, &data, None, &config, device, "probe")?;
    Ok(trained.steps_done as f64 / trained.seconds.max(1e-9))
}

/// The name of an adapter probe: `<type>` in weight-space form, `<type>-<form>` otherwise.
fn probe_name(variant: ConvVariant, form: ForwardMode) -> String {
    match form {
        ForwardMode::WeightSpace => variant.to_string(),
        form => format!("{variant}-{}", form.name()),
    }
}

/// Probe each kind of run for `steps` steps at the plan's CNN and batch.
///
/// # Errors
/// Adapter errors.
pub fn probe(plan: &Plan, steps: usize, device: &Device) -> Result<Throughput> {
    let cnn = &plan.pretrain.cnn;
    device.seed(0);
    let base = cnn.init(device);
    let rank = plan
        .timing_rank
        .or(plan.ranks.first().copied())
        .unwrap_or(4);
    let mut train = vec![
        (
            "full".to_string(),
            time_steps(base.clone(), plan, steps, device)?,
        ),
        (
            "head".to_string(),
            time_steps(
                Cnn {
                    head: cnn.head(device),
                    ..freeze(base.clone())
                },
                plan,
                steps,
                device,
            )?,
        ),
    ];
    for &variant in &plan.variants {
        let layers = plan_ranks(variant, rank, &cnn.geometries(), "blocks.");
        let adapted = with_adapters(&base, variant, &layers, false)?;
        for form in [ForwardMode::Bypass, ForwardMode::Auto] {
            // Grouped convs refuse bypass; the experiment CNN has none.
            let twin = with_bypass(base.clone(), &adapted, variant, form, device)?;
            train.push((
                probe_name(variant, form),
                time_steps(twin, plan, steps, device)?,
            ));
        }
        train.push((
            probe_name(variant, ForwardMode::WeightSpace),
            time_steps(adapted, plan, steps, device)?,
        ));
    }
    let images = random_images(&plan.pretrain.input(), 1024, 2);
    let _ = device.sync();
    let start = Instant::now();
    let _ = predict::<4, _>(&base, &images, device);
    let _ = device.sync();
    let inference = images.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);
    Ok(Throughput {
        train,
        inference,
        rank,
        steps,
    })
}

/// The plan's estimated wall time in seconds from measured throughput: pretraining (at the
/// `full` rate; none if the checkpoint is cached), every sweep and final run at its method's
/// rate, and every validation and test pass at the inference rate.
pub fn estimate(plan: &Plan, t: &Throughput, pretrained_cached: bool) -> f64 {
    let rate = |m: Method, form: ForwardMode| match m {
        Method::Scratch | Method::Full => t.rate("full"),
        Method::Head => t.rate("head"),
        Method::Adapter { variant, .. } => t.rate(&probe_name(variant, form)),
    };
    let evals = |steps: usize| {
        let period = steps.div_ceil(plan.evals.max(1)).max(1);
        steps.div_ceil(period)
    };
    let mut seconds = 0.0;
    if !pretrained_cached {
        let steps =
            plan.pretrain.epochs * (plan.pretrain.examples / plan.pretrain.batch_size.max(1));
        seconds += steps as f64 / t.rate("full");
    }
    seconds += plan.pretrain.test_examples as f64 / t.inference;
    for cell in plan.cells() {
        let grid = plan.grid(cell.method).len() as f64;
        let s = plan.sweep_steps();
        seconds += grid
            * (s as f64 / rate(cell.method, ForwardMode::WeightSpace)
                + (evals(s) * plan.val_examples) as f64 / t.inference);
        let per_final = |form| {
            plan.steps as f64 / rate(cell.method, form)
                + (evals(plan.steps) * plan.val_examples + plan.test_examples) as f64 / t.inference
        };
        seconds += plan.seeds.len() as f64 * per_final(ForwardMode::WeightSpace);
        if plan.has_twins(&cell) {
            // The bypass and auto twins, each at its own measured rate.
            seconds += plan.seeds.len() as f64
                * (per_final(ForwardMode::Bypass) + per_final(ForwardMode::Auto));
        }
    }
    seconds
}

/// The probe's numbers and the estimate, as text.
pub fn describe(plan: &Plan, t: &Throughput, pretrained_cached: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "CNN widths {:?}, batch {}: measured over {} steps each (after 2 warm-up steps):",
        plan.pretrain.cnn.widths, plan.batch_size, t.steps
    );
    for (name, rate) in &t.train {
        let _ = writeln!(
            out,
            "  {name:16} {rate:7.2} steps/s{}",
            if name != "full" && name != "head" {
                format!(" (rank {})", t.rank)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(out, "  inference  {:7.0} images/s", t.inference);
    let runs: usize = plan.cells().iter().map(|c| plan.run_count(c)).sum();
    let secs = estimate(plan, t, pretrained_cached);
    let _ = writeln!(
        out,
        "plan `{}`: {} runs ({} cells, {} seeds, {} steps each, sweeps at {} steps){}: estimated {:.0} min",
        plan.profile,
        runs,
        plan.cells().len(),
        plan.seeds.len(),
        plan.steps,
        plan.sweep_steps(),
        if pretrained_cached {
            ", pretrained checkpoint cached"
        } else {
            ", pretraining included"
        },
        secs / 60.0
    );
    out
}
