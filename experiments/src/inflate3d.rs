//! `inflate3d`: does 2D -> 3D inflation plus conv LoRA pay off on volumes? Brain MRI patches
//! of the Colin27 T1, labelled by lobe, trained on the left hemisphere and tested on the
//! mirrored right hemisphere of the same brain (within-subject transfer).
//!
//! Same stages as `compare`: plan (cells of method and rank, sliced by `--shard`), run one spec,
//! append its record to `runs.jsonl`, report from the records.

use std::fmt::Write as _;
use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use lora_3d::{InflateOptions, inflate};
use lora_conv::functional::full_count;
use lora_conv::{ConvGeometry, ConvVariant};
use serde::{Deserialize, Serialize};

use crate::compare::data::{load_fashion, pretrained, require_fashion_train};
use crate::compare::plan::{Overrides, PretrainPlan, SWEEP_SEED};
use crate::compare::{self, check_out};
use crate::data::Images;
use crate::data::brain::{BrainLabel, BrainSplit, PatchConfig, load};
use crate::error::{ExpError, Result};
use crate::methods::{materialize, plan_ranks, share_of_adapted, with_adapters};
use crate::model::{Cnn, CnnConfig};
use crate::record::{LayerRank, LrChoice, RunLog, RunRecord, Shard, write_atomic};
use crate::report::{self, ReportContext, SummaryRow};
use crate::train::{
    Classifier, Metric, TrainConfig, confusion, peak_memory_bytes, predict, reset_peak_memory,
    train,
};

/// Everything that decides the numbers of an `inflate3d` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// `quick` or `default`.
    pub profile: String,
    /// The 2D pretraining (the same as `compare`'s for the same flags; its checkpoint is
    /// shared through `--cache`).
    pub pretrain: PretrainPlan,
    /// How patches are cut.
    pub patches: PatchConfig,
    /// Depth kernel of the inflated convs.
    pub depth: usize,
    /// Adapter ranks asked for (capped per layer below break-even).
    pub ranks: Vec<usize>,
    /// The adapter types compared.
    pub variants: Vec<ConvVariant>,
    /// Seeds (paired across methods).
    pub seeds: Vec<u64>,
    /// Optimizer steps of every final run.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Evaluation periods per run.
    pub evals: usize,
    /// Learning-rate grid of the dense methods.
    pub lr_grid_dense: Vec<f64>,
    /// Learning-rate grid of the adapter methods.
    pub lr_grid_adapter: Vec<f64>,
    /// Sweep runs train for this fraction of `steps`.
    pub sweep_fraction: f64,
    /// The held-out validation slab: training-hemisphere patches whose centre's world y lies
    /// between these quantiles of the centres' y.
    pub val_slab: (f64, f64),
    /// Width of the guard band dropped from training on each side of the slab, in patch sides.
    /// 1 means no voxel is in both a training and a validation patch, but at this brain's scale
    /// the band takes whole lobes out of training (class counts [155, 3, 7, 71, 25, 1, 3] of
    /// [303, 178, 258, 105, 123, 32, 29] with the 40-60% slab). 0 (the default) keeps every
    /// training patch outside the slab: validation patches at the slab's edges then share voxels
    /// with their training neighbours, which only the learning-rate and checkpoint choices see;
    /// the test hemisphere shares no voxel with either.
    pub val_guard: f64,
}

impl Plan {
    /// The `--quick` or default plan, with the command line's overrides.
    pub fn new(quick: bool, o: &Overrides) -> Self {
        let pretrain = compare::Plan::new(quick, o).pretrain;
        let mut plan = if quick {
            Self {
                profile: "quick".into(),
                pretrain,
                patches: PatchConfig {
                    size: 16,
                    factor: 2,
                    stride: 8,
                    mirror_test: true,
                    label: BrainLabel::Lobe,
                },
                depth: 3,
                ranks: vec![2],
                variants: ConvVariant::DECOMPOSITIONS.to_vec(),
                seeds: (0..2).collect(),
                steps: 16,
                batch_size: 8,
                evals: 2,
                lr_grid_dense: vec![3e-3],
                lr_grid_adapter: vec![1e-2],
                sweep_fraction: 0.5,
                val_slab: (0.45, 0.55),
                val_guard: 0.0,
            }
        } else {
            Self {
                profile: "default".into(),
                pretrain,
                patches: PatchConfig {
                    size: 16,
                    factor: 2,
                    stride: 4,
                    mirror_test: true,
                    label: BrainLabel::Lobe,
                },
                depth: 3,
                ranks: vec![2, 8],
                variants: ConvVariant::DECOMPOSITIONS.to_vec(),
                seeds: (0..5).collect(),
                steps: 150,
                batch_size: 16,
                evals: 3,
                lr_grid_dense: vec![1e-3, 3e-3],
                lr_grid_adapter: vec![3e-3, 1e-2],
                sweep_fraction: 0.5,
                val_slab: (0.45, 0.55),
                val_guard: 0.0,
            }
        };
        if let Some(s) = o.steps {
            plan.steps = s;
        }
        if let Some(b) = o.batch {
            plan.batch_size = b;
        }
        if let Some(n) = o.seeds {
            plan.seeds = (0..n as u64).collect();
        }
        if let Some(r) = &o.ranks {
            plan.ranks.clone_from(r);
        }
        if let Some(v) = &o.variants {
            plan.variants.clone_from(v);
        }
        plan
    }

    /// Reject a plan that cannot run.
    ///
    /// # Errors
    /// [`ExpError::Input`] naming the flag.
    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(ExpError::Input(m.into()));
        if self.seeds.is_empty() {
            return bad(
                "--seeds 0: at least one seed is needed (5 or more for a usable confidence interval)",
            );
        }
        if self.steps == 0 {
            return bad("--steps 0: the budget must be at least one optimizer step");
        }
        if self.batch_size < 2 {
            return bad("--batch: batch norm needs at least 2 examples per batch");
        }
        if self.ranks.contains(&0) {
            return bad("--ranks: ranks start at 1");
        }
        if !(self.val_guard.is_finite() && self.val_guard >= 0.0) {
            return bad("val_guard: the guard band is a non-negative number of patch sides");
        }
        let (lo, hi) = self.val_slab;
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return bad("val_slab: two quantiles with 0 <= lo <= hi <= 1");
        }
        self.pretrain.cnn.check().map_err(ExpError::Input)
    }

    /// The task name in results (`brain-lobes` or `brain-tissue`).
    pub fn task(&self) -> &'static str {
        self.patches.label.task()
    }

    /// The class names of the label.
    pub fn classes(&self) -> &'static [&'static str] {
        self.patches.label.classes()
    }

    /// The CNN with a head for the label's classes.
    pub fn cnn(&self) -> CnnConfig {
        CnnConfig {
            classes: self.classes().len(),
            ..self.pretrain.cnn.clone()
        }
    }

    /// Cells: (method, rank), in order.
    pub fn cells(&self) -> Vec<(Method, Option<usize>)> {
        let mut out = vec![
            (Method::Scratch3d, None),
            (Method::Slice2d, None),
            (Method::InflatedFull, None),
        ];
        for &v in &self.variants {
            out.extend(self.ranks.iter().map(|&r| (Method::Inflated(v), Some(r))));
        }
        out
    }

    fn grid(&self, method: Method) -> &[f64] {
        if matches!(method, Method::Inflated(_)) {
            &self.lr_grid_adapter
        } else {
            &self.lr_grid_dense
        }
    }

    fn sweep_steps(&self) -> usize {
        ((self.steps as f64 * self.sweep_fraction).ceil() as usize).clamp(1, self.steps)
    }
}

/// The `inflate3d` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A 3x3x3 CNN of the same shape, from scratch.
    Scratch3d,
    /// The pretrained 2D CNN fine-tuned on each patch's centre slice.
    Slice2d,
    /// The inflated pretrained CNN, everything trained.
    InflatedFull,
    /// Fresh conv LoRA on the inflated convs, head trained.
    Inflated(ConvVariant),
}

impl Method {
    /// Name in results.
    pub fn name(self) -> String {
        match self {
            Method::Scratch3d => "scratch3d".into(),
            Method::Slice2d => "slice2d".into(),
            Method::InflatedFull => "inflated-full".into(),
            Method::Inflated(v) => format!("inflated-{v}"),
        }
    }
}

/// The patches, split into training, validation slab and mirrored test hemisphere.
#[derive(Debug, Clone)]
pub struct BrainData {
    /// Training patches (left hemisphere, outside the slab and its guard band).
    pub train: Images,
    /// Validation patches (the slab of the left hemisphere).
    pub val: Images,
    /// Test patches (right hemisphere, mirrored).
    pub test: Images,
    /// Patch centres (world mm) of the training patches.
    pub train_centres: Vec<[f32; 3]>,
    /// Patch centres of the test patches (x mirrored).
    pub test_centres: Vec<[f32; 3]>,
    /// Left-hemisphere patches dropped in the guard band around the slab.
    pub dropped_guard: usize,
    /// Patches dropped at the midline.
    pub dropped_midline: usize,
    /// World y range of the slab (mm).
    pub slab_y: (f32, f32),
}

/// Cut the validation slab out of the training hemisphere.
pub fn split_slab(split: BrainSplit, plan: &Plan) -> BrainData {
    let mut ys: Vec<f32> = split.train_centres.iter().map(|c| c[1]).collect();
    ys.sort_by(f32::total_cmp);
    let q = |f: f64| {
        ys.get(((ys.len().saturating_sub(1)) as f64 * f).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (lo, hi) = (q(plan.val_slab.0), q(plan.val_slab.1));
    let guard = (plan.val_guard * (plan.patches.size * plan.patches.factor) as f64) as f32;
    let (mut train, mut val, mut centres) = (Vec::new(), Vec::new(), Vec::new());
    let mut dropped = 0;
    for (i, c) in split.train_centres.iter().enumerate() {
        if c[1] >= lo && c[1] <= hi {
            val.push(i);
        } else if c[1] < lo - guard || c[1] > hi + guard {
            train.push(i);
            centres.push(*c);
        } else {
            dropped += 1;
        }
    }
    BrainData {
        train: split.train.select(&train),
        val: split.train.select(&val),
        test: split.test,
        train_centres: centres,
        test_centres: split.test_centres,
        dropped_guard: dropped,
        dropped_midline: split.dropped_midline,
        slab_y: (lo, hi),
    }
}

/// The centre depth slice of every patch, as images.
pub fn centre_slices(volumes: &Images) -> Images {
    let [d, h, w] = [volumes.dims[0], volumes.dims[1], volumes.dims[2]];
    let size = d * h * w;
    let mut pixels = Vec::with_capacity(volumes.len() * h * w);
    for i in 0..volumes.len() {
        let start = i * size + (d / 2) * h * w;
        pixels.extend_from_slice(&volumes.pixels[start..start + h * w]);
    }
    Images {
        pixels,
        dims: vec![h, w],
        labels: volumes.labels.clone(),
    }
}

fn class_counts(set: &Images, classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &l in &set.labels {
        if l < counts.len() {
            counts[l] += 1;
        }
    }
    counts
}

/// Predict the most frequent training class everywhere.
pub fn majority(train: &[usize], n_test: usize) -> Vec<usize> {
    let mut counts = vec![0usize; train.iter().copied().max().map_or(0, |m| m + 1)];
    for &l in train {
        counts[l] += 1;
    }
    let best = (0..counts.len())
        .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
        .unwrap_or(0);
    vec![best; n_test]
}

/// Position only: the label of the nearest training patch centre (Euclidean, mm).
pub fn nearest_centre(train: &[[f32; 3]], labels: &[usize], test: &[[f32; 3]]) -> Vec<usize> {
    test.iter()
        .map(|t| {
            let d = |c: &[f32; 3]| (0..3).map(|k| (c[k] - t[k]).powi(2)).sum::<f32>();
            train
                .iter()
                .zip(labels)
                .min_by(|a, b| d(a.0).total_cmp(&d(b.0)))
                .map_or(0, |(_, &l)| l)
        })
        .collect()
}

/// Parameters of the 3D network itself (depth-`depth` kernels; no adapters, no buffers).
pub fn base_params_3d(cnn: &CnnConfig, depth: usize) -> usize {
    let convs: usize = cnn
        .channels()
        .iter()
        .map(|(i, o)| i * o * 9 * depth + 3 * o)
        .sum();
    let features = cnn.widths.last().copied().unwrap_or(cnn.in_channels);
    convs + features * cnn.classes + cnn.classes
}

struct Cx<'a> {
    plan: &'a Plan,
    base2d: &'a Cnn<Conv2d>,
    data: &'a BrainData,
    slices: (Images, Images, Images),
    device: &'a Device,
}

struct Spec {
    id: String,
    phase: &'static str,
    method: Method,
    rank: Option<usize>,
    seed: u64,
    lr: f64,
    steps: usize,
    lr_choice: Option<LrChoice>,
}

fn spec_id(
    task: &str,
    phase: &str,
    method: Method,
    rank: Option<usize>,
    seed: u64,
    lr: Option<f64>,
) -> String {
    let base = format!(
        "{phase}/{task}/{}/r{}/s{seed}",
        method.name(),
        rank.map_or("-".into(), |r| r.to_string())
    );
    lr.map_or(base.clone(), |lr| format!("{base}/lr{lr}"))
}

fn run_spec(cx: &Cx<'_>, spec: &Spec) -> Result<RunRecord> {
    let plan = cx.plan;
    let device = cx.device;
    let cnn = plan.cnn();
    device.seed(2000 + spec.seed);
    let head = cnn.head(device);
    materialize(&head);
    let with_head = || Cnn {
        head: head.clone(),
        ..cx.base2d.clone()
    };
    let options = InflateOptions::new(plan.depth);
    let base3d = base_params_3d(&cnn, plan.depth);
    match spec.method {
        Method::Scratch3d => {
            let body = cnn.init_3d(device);
            materialize(&body);
            let model = crate::model::Cnn3d { head, ..body };
            fit::<5, _>(
                cx,
                spec,
                model,
                vec![],
                base3d,
                (&cx.data.train, &cx.data.val, &cx.data.test),
            )
        }
        Method::Slice2d => fit::<4, _>(
            cx,
            spec,
            with_head(),
            vec![],
            cnn.base_params(),
            (&cx.slices.0, &cx.slices.1, &cx.slices.2),
        ),
        Method::InflatedFull => {
            let model = inflate(with_head(), &options)?;
            fit::<5, _>(
                cx,
                spec,
                model,
                vec![],
                base3d,
                (&cx.data.train, &cx.data.val, &cx.data.test),
            )
        }
        Method::Inflated(variant) => {
            let inflated = inflate(with_head(), &options)?;
            let geometries: Vec<ConvGeometry> = inflated
                .blocks
                .iter()
                .map(|b| lora_conv::ConvLayer::geometry(&b.conv))
                .collect();
            let layers = plan_ranks(variant, spec.rank.unwrap_or(1), &geometries, "blocks.");
            let model = with_adapters(&inflated, variant, &layers, false)?;
            fit::<5, _>(
                cx,
                spec,
                model,
                layers,
                base3d,
                (&cx.data.train, &cx.data.val, &cx.data.test),
            )
        }
    }
}

fn fit<const N: usize, M: Classifier<N>>(
    cx: &Cx<'_>,
    spec: &Spec,
    model: M,
    layers: Vec<LayerRank>,
    base_params: usize,
    (train_set, val, test): (&Images, &Images, &Images),
) -> Result<RunRecord> {
    let counts = lora_core::param_counts(&model);
    let config = TrainConfig {
        steps: spec.steps,
        batch_size: cx.plan.batch_size,
        lr: spec.lr,
        seed: spec.seed,
        evals: cx.plan.evals,
    };
    reset_peak_memory();
    let label = format!(
        "{} r{} s{}",
        spec.method.name(),
        spec.rank.map_or("-".into(), |r| r.to_string()),
        spec.seed
    );
    let trained = train::<N, M>(
        model,
        train_set,
        Some((val, Metric::Balanced)),
        &config,
        cx.device,
        &label,
    )?;
    let peak = peak_memory_bytes();
    let final_run = spec.phase == "final";
    let (test_accuracy, recall, matrix) = if final_run {
        let pred = predict::<N, M>(&trained.model, test, cx.device);
        let (recall, matrix) = confusion(&pred, &test.labels, cx.plan.classes().len());
        (
            Metric::Balanced.score(&pred, &test.labels),
            Some(recall),
            Some(matrix),
        )
    } else {
        (f64::NAN, None, None)
    };
    let adapter_params = layers.iter().map(|l| l.adapter_params).sum();
    Ok(RunRecord {
        id: spec.id.clone(),
        phase: spec.phase.into(),
        task: cx.plan.task().into(),
        method: spec.method.name(),
        rank: spec.rank,
        forward: spec.rank.map(|_| "weight".into()),
        seed: spec.seed,
        steps: spec.steps,
        batch_size: config.batch_size.min(train_set.len()),
        lr: spec.lr,
        lr_choice: spec.lr_choice.clone(),
        train_examples: train_set.len(),
        val_examples: val.len(),
        test_examples: if final_run { test.len() } else { 0 },
        trainable_params: counts.trainable,
        base_params,
        trainable_share: counts.trainable as f64 / base_params.max(1) as f64,
        adapter_params,
        adapter_share_of_adapted: (!layers.is_empty()).then(|| share_of_adapted(&layers)),
        layers,
        test_accuracy,
        val_accuracy: trained.val_score,
        best_step: trained.best_step,
        train_seconds: trained.seconds,
        steps_per_second: trained.steps_done as f64 / trained.seconds.max(1e-9),
        peak_memory_bytes: peak,
        diverged: trained.diverged,
        loss_curve: trained.loss_curve,
        val_curve: trained.val_curve,
        eval_steps: trained.eval_steps,
        recall_per_class: recall,
        confusion: matrix,
    })
}

fn baseline_record(plan: &Plan, name: &str, pred: &[usize], data: &BrainData) -> RunRecord {
    let (recall, matrix) = confusion(pred, &data.test.labels, plan.classes().len());
    let task = plan.task();
    RunRecord {
        id: format!("final/{task}/{name}"),
        phase: "final".into(),
        task: task.into(),
        method: name.into(),
        rank: None,
        forward: None,
        seed: 0,
        steps: 0,
        batch_size: 0,
        lr: 0.0,
        lr_choice: None,
        train_examples: data.train.len(),
        val_examples: 0,
        test_examples: data.test.len(),
        trainable_params: 0,
        base_params: 0,
        trainable_share: 0.0,
        adapter_params: 0,
        adapter_share_of_adapted: None,
        layers: vec![],
        test_accuracy: Metric::Balanced.score(pred, &data.test.labels),
        val_accuracy: f64::NAN,
        best_step: 0,
        train_seconds: 0.0,
        steps_per_second: 0.0,
        peak_memory_bytes: None,
        diverged: false,
        loss_curve: vec![],
        val_curve: vec![],
        eval_steps: vec![],
        recall_per_class: Some(recall),
        confusion: Some(matrix),
    }
}

fn choose(grid: &[f64], sweep_ids: &[String], log: &RunLog, steps: usize) -> (f64, LrChoice) {
    let val: Vec<f64> = sweep_ids
        .iter()
        .map(|id| {
            log.get(id)
                .filter(|r| !r.diverged && !r.val_accuracy.is_nan())
                .map_or(f64::NEG_INFINITY, |r| r.val_accuracy)
        })
        .collect();
    let mut best = 0;
    for (i, v) in val.iter().enumerate() {
        if *v > val[best] {
            best = i;
        }
    }
    (
        grid.get(best).copied().unwrap_or(1e-3),
        LrChoice {
            at_grid_edge: grid.len() > 1 && (best == 0 || best + 1 == grid.len()),
            grid: grid.to_vec(),
            val_accuracy: val,
            steps,
        },
    )
}

/// The `inflate3d` experiment.
///
/// # Errors
/// Bad input (before any training), missing data (with the fetch command), inflation, adapter
/// or I/O errors.
pub fn run(
    plan: &Plan,
    data_dir: &Path,
    cache: &Path,
    out: &Path,
    shard: Shard,
    device_name: &str,
    device: &Device,
) -> Result<()> {
    plan.check()?;
    let plan_json = serde_json::to_value(plan)
        .map_err(|e| ExpError::Input(format!("serialising the plan: {e}")))?;
    check_out(out, &plan_json)?;
    let split = load(data_dir, &plan.patches)?;
    let data = split_slab(split, plan);
    if data.train.is_empty() || data.val.is_empty() || data.test.is_empty() {
        return Err(ExpError::Input(format!(
            "brain patches: {} train, {} validation, {} test; every split needs some",
            data.train.len(),
            data.val.len(),
            data.test.len()
        )));
    }
    eprintln!(
        "patches: {} train, {} validation slab (y {:.0}..{:.0} mm), {} test (right, mirrored); {} dropped at the midline, {} around the slab",
        data.train.len(),
        data.val.len(),
        data.slab_y.0,
        data.slab_y.1,
        data.test.len(),
        data.dropped_midline,
        data.dropped_guard
    );
    let fashion_test = load_fashion(data_dir, "t10k")?;
    require_fashion_train(data_dir)?;
    let mut log = RunLog::open(out)?;
    let pre = pretrained(&plan.pretrain, data_dir, cache, &fashion_test, device)?;
    let config = serde_json::json!({
        "plan": plan_json,
        "experiment": "inflate3d",
        "device": device_name,
        "task": plan.task(),
        "classes": plan.classes(),
        "train_class_counts": class_counts(&data.train, plan.classes().len()),
        "val_class_counts": class_counts(&data.val, plan.classes().len()),
        "test_class_counts": class_counts(&data.test, plan.classes().len()),
        "dropped_midline": data.dropped_midline,
        "dropped_guard": data.dropped_guard,
        "slab_y_mm": [data.slab_y.0, data.slab_y.1],
        "pretrain_test_accuracy": pre.test_accuracy,
        "pretrain_checkpoint": pre.path.display().to_string(),
        "data_dir": data_dir.display().to_string(),
        "crate_version": env!("CARGO_PKG_VERSION"),
    });
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| ExpError::Input(format!("serialising config.json: {e}")))?;
    write_atomic(&out.join("config.json"), text.as_bytes())?;

    if shard.index == 0 {
        let maj = majority(&data.train.labels, data.test.len());
        let pos = nearest_centre(&data.train_centres, &data.train.labels, &data.test_centres);
        for (name, pred) in [("majority", maj), ("position-1nn", pos)] {
            let rec = baseline_record(plan, name, &pred, &data);
            if !log.has(&rec.id) {
                eprintln!("{}", report::line(&rec));
                log.append(rec)?;
            }
        }
    }
    let cx = Cx {
        plan,
        base2d: &pre.model,
        data: &data,
        slices: (
            centre_slices(&data.train),
            centre_slices(&data.val),
            centre_slices(&data.test),
        ),
        device,
    };
    for (method, rank) in shard.select(plan.cells()) {
        let grid = plan.grid(method).to_vec();
        let mut ids = Vec::new();
        for &lr in &grid {
            let id = spec_id(plan.task(), "sweep", method, rank, SWEEP_SEED, Some(lr));
            ids.push(id.clone());
            if !log.has(&id) {
                let spec = Spec {
                    id,
                    phase: "sweep",
                    method,
                    rank,
                    seed: SWEEP_SEED,
                    lr,
                    steps: plan.sweep_steps(),
                    lr_choice: None,
                };
                let rec = run_spec(&cx, &spec)?;
                eprintln!("{}", report::line(&rec));
                log.append(rec)?;
            }
        }
        let (lr, choice) = choose(&grid, &ids, &log, plan.sweep_steps());
        for &seed in &plan.seeds {
            let id = spec_id(plan.task(), "final", method, rank, seed, None);
            if !log.has(&id) {
                let spec = Spec {
                    id,
                    phase: "final",
                    method,
                    rank,
                    seed,
                    lr,
                    steps: plan.steps,
                    lr_choice: Some(choice.clone()),
                };
                let rec = run_spec(&cx, &spec)?;
                eprintln!("{}", report::line(&rec));
                log.append(rec)?;
            }
        }
    }
    write_report(out, &config, log.records())
}

/// Regenerate `results.json`, `report.md` and the plot from the records.
///
/// # Errors
/// I/O errors, a config without a plan.
pub fn write_report(out: &Path, config: &serde_json::Value, records: &[RunRecord]) -> Result<()> {
    let plan: Plan = serde_json::from_value(config["plan"].clone())
        .map_err(|e| ExpError::Input(format!("config.json: bad plan ({e})")))?;
    let cnn = plan.cnn();
    let geometries: Vec<ConvGeometry> = cnn
        .channels()
        .into_iter()
        .map(|(i, o)| ConvGeometry::new(i, o, vec![plan.depth, 3, 3]))
        .collect();
    let convs: usize = geometries.iter().map(full_count).sum();
    let head = cnn.widths.last().copied().unwrap_or(1) * cnn.classes + cnn.classes;
    let p = &plan.patches;
    let intro = format!(
        "Profile `{}` on `{}`. **This is within-subject transfer on one brain**: one T1 image \
         (Colin27, `ch2.nii.gz`) and one atlas (AAL), training on the left hemisphere and testing \
         on the right hemisphere of the same subject. It says nothing about generalisation to \
         other subjects.\n\n\
         Task: cubic patches of {}³ voxels at {} mm (block-averaged from the 1 mm T1), centres \
         every {} mm at AAL-labelled brain voxels (background centres dropped), labelled {} \
         ({} classes: {}). The right-hemisphere patches are mirrored along x, so train \
         and test have the same orientation. Patches touching the midline are dropped ({}). \
         Validation: a coronal slab of the left hemisphere (patch centres at world y {} mm, \
         between the {:.0}% and {:.0}% quantiles), with a guard band of {} patch side(s) on each \
         side dropped from training ({} patches){}. Class counts: train {}, \
         validation {}, test {}. Metric: **balanced accuracy** (chance 1/{}).\n\n\
         The 2D net is `compare`'s (widths {:?}), pretrained on Fashion-MNIST (test accuracy \
         {}), with a fresh {}-class head (the same head init for every method of a seed). \
         Methods: `scratch3d` (3x3x3 CNN of the same shape from scratch), `slice2d` (the 2D net \
         fine-tuned on each patch's centre slice), `inflated-full` (centre-mode inflation, depth \
         kernel {}, everything trained), `inflated-<variant>` (fresh conv LoRA on the inflated \
         convs, head trained); baselines `majority` (the most frequent training class) and \
         `position-1nn` (the label of the nearest training patch centre, on mirrored \
         coordinates: no image content at all). Every run: {} steps of batch {}, the rate \
         chosen per (method, rank) on the validation slab from {:?} (dense) or {:?} (adapters) \
         with {} steps per sweep run, the best validation checkpoint tested; {} seeds.\n\n",
        plan.profile,
        config["device"].as_str().unwrap_or("?"),
        p.size,
        p.factor,
        p.stride * p.factor,
        match p.label {
            BrainLabel::Lobe => "by the lobe of the AAL region at the centre",
            BrainLabel::Tissue => {
                "by local appearance: the tercile of the mean T1 intensity of the central 4³ \
                 voxels, thresholds from the training patches"
            }
        },
        plan.classes().len(),
        plan.classes().join(", "),
        config["dropped_midline"],
        config["slab_y_mm"],
        plan.val_slab.0 * 100.0,
        plan.val_slab.1 * 100.0,
        plan.val_guard,
        config["dropped_guard"],
        if plan.val_guard >= 1.0 {
            ", so no voxel is in both"
        } else {
            "; validation patches at the slab's edges share voxels with neighbouring training \
             patches, which only the learning-rate and checkpoint choices see (the test \
             hemisphere shares none)"
        },
        config["train_class_counts"],
        config["val_class_counts"],
        config["test_class_counts"],
        plan.classes().len(),
        cnn.widths,
        config["pretrain_test_accuracy"]
            .as_f64()
            .map_or("?".into(), |a| format!("{a:.4}")),
        plan.classes().len(),
        plan.depth,
        plan.steps,
        plan.batch_size,
        plan.lr_grid_dense,
        plan.lr_grid_adapter,
        plan.sweep_steps(),
        plan.seeds.len(),
    );
    let cx = ReportContext {
        experiment: "inflate3d".into(),
        title: "inflate3d: 2D -> 3D inflation plus conv LoRA on brain MRI".into(),
        intro,
        reference: "inflated-full".into(),
        variants: plan
            .variants
            .iter()
            .map(|v| format!("inflated-{v}"))
            .collect(),
        break_even_share: (convs + head) as f64 / base_params_3d(&cnn, plan.depth).max(1) as f64,
        tasks: vec![plan.task().into()],
        config: config.clone(),
    };
    let summary = report::summarize(records, &cx.reference);
    let extra = brain_sections(&summary, records, plan.classes());
    report::write_with(out, &cx, records, &extra).map(|_| ())
}

/// Baselines against the networks, per-class recall and confusion matrices.
fn brain_sections(summary: &[SummaryRow], records: &[RunRecord], classes: &[&str]) -> String {
    let mut md = String::from("## Against the baselines\n\n");
    let value = |name: &str| summary.iter().find(|r| r.method == name).map(|r| r.mean);
    let (maj, pos) = (value("majority"), value("position-1nn"));
    let _ = writeln!(
        md,
        "Majority: {}; position-only nearest neighbour: {}.\n",
        maj.map_or("not run".into(), |v| format!("{v:.4}")),
        pos.map_or("not run".into(), |v| format!("{v:.4}"))
    );
    if let Some(pos) = pos {
        for r in summary.iter().filter(|r| r.steps > 0) {
            let verdict = match r.ci95 {
                Some([lo, _]) if lo > pos => {
                    "beats the position-only baseline (lower end of its 95% CI above it)"
                }
                Some([_, hi]) if hi < pos => {
                    "is **below** the position-only baseline (upper end of its 95% CI below it)"
                }
                Some(_) => {
                    "is not distinguishable from the position-only baseline (its 95% CI contains it)"
                }
                None => "has one seed: no interval, no verdict",
            };
            let _ = writeln!(
                md,
                "- `{}`{}: {:.4} {verdict}.",
                r.method,
                r.rank.map_or(String::new(), |x| format!(" rank {x}")),
                r.mean
            );
        }
        let beaten = summary
            .iter()
            .any(|r| r.steps > 0 && r.ci95.is_some_and(|[lo, _]| lo > pos));
        let decidable = summary.iter().any(|r| r.steps > 0 && r.ci95.is_some());
        if !decidable {
            md.push_str("\nWith one seed there are no intervals, so whether a network beats the position-only baseline is not decided here.\n");
        } else if !beaten {
            md.push_str("\n**No network beats the position-only baseline**: on this task the label is predicted at least as well from where a patch is as from what it shows. (`inflate3d --label tissue` labels patches by local appearance instead.)\n");
        }
    }
    md.push_str("\n## Per-class test recall (mean over seeds)\n\n");
    let _ = writeln!(md, "| method | rank | {} |", classes.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---|".repeat(classes.len()));
    for r in summary {
        let runs: Vec<&RunRecord> = records
            .iter()
            .filter(|x| {
                x.phase == "final"
                    && x.method == r.method
                    && x.rank == r.rank
                    && x.forward == r.forward
            })
            .collect();
        let cells: Vec<String> = (0..classes.len())
            .map(|c| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|x| {
                        x.recall_per_class
                            .as_ref()
                            .and_then(|rc| rc.get(c).copied())
                    })
                    .filter(|v| v.is_finite())
                    .collect();
                if v.is_empty() {
                    "-".into()
                } else {
                    format!("{:.2}", v.iter().sum::<f64>() / v.len() as f64)
                }
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            r.method,
            r.rank.map_or("-".into(), |x| x.to_string()),
            cells.join(" | ")
        );
    }
    md.push_str(
        "\n## Confusion matrices (test, summed over seeds; rows true, columns predicted)\n\n",
    );
    for r in summary {
        let mut total = vec![vec![0usize; classes.len()]; classes.len()];
        for x in records.iter().filter(|x| {
            x.phase == "final" && x.method == r.method && x.rank == r.rank && x.forward == r.forward
        }) {
            if let Some(m) = &x.confusion {
                for (i, row) in m.iter().enumerate().take(classes.len()) {
                    for (j, v) in row.iter().enumerate().take(classes.len()) {
                        total[i][j] += v;
                    }
                }
            }
        }
        let _ = writeln!(
            md,
            "`{}`{}:\n",
            r.method,
            r.rank.map_or(String::new(), |x| format!(" rank {x}"))
        );
        let _ = writeln!(md, "| true \\ predicted | {} |", classes.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(classes.len()));
        for (i, row) in total.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} |",
                classes[i],
                row.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines() {
        assert_eq!(majority(&[2, 1, 2, 0], 3), vec![2, 2, 2]);
        // Ties go to the smaller class.
        assert_eq!(majority(&[1, 0], 1), vec![0]);
        let train = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]];
        assert_eq!(
            nearest_centre(&train, &[3, 5], &[[9.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
            vec![5, 3]
        );
    }

    #[test]
    fn base_params_3d_counts_the_inflated_net() {
        let cnn = CnnConfig::vgg([4, 4, 8, 8, 8], 7);
        let device = Device::flex();
        let net = inflate(cnn.init(&device), &InflateOptions::new(3)).unwrap();
        let counts = lora_core::param_counts(&net);
        assert_eq!(
            base_params_3d(&cnn, 3),
            counts.total - 2 * (4 + 4 + 8 + 8 + 8)
        );
    }
}
