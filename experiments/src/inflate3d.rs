//! `inflate3d`: does 2D -> 3D inflation plus conv LoRA pay off on volumes? Brain MRI patches
//! of the Colin27 T1, labelled by lobe, trained on the left hemisphere and tested on the right.

use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use lora_3d::{InflateOptions, inflate};
use lora_conv::{ConvLayer, ConvVariant};
use serde::Serialize;

use crate::compare::{self, pretrained};
use crate::data::Images;
use crate::data::brain::{BrainSplit, LOBES, PatchConfig, load};
use crate::error::{Result, io};
use crate::methods::with_adapters;
use crate::model::{Cnn, CnnConfig};
use crate::report::{Results, Run, plot_svg, table, write_json};
use crate::train::{RunSpec, TrainConfig, one_run};

/// Everything that decides the numbers of an `inflate3d` run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `quick` or `default`.
    pub profile: String,
    /// The 2D pretraining (the `compare` plan of the same profile; its checkpoint is shared).
    pub pretrain: compare::Plan,
    /// How patches are cut.
    pub patches: PatchConfig,
    /// Depth kernel of the inflated convs.
    pub depth: usize,
    /// Adapter ranks.
    pub ranks: Vec<usize>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Epochs over the training patches.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rates: dense methods (scratch3d, slice2d, inflated-full) and adapters.
    pub lr_dense: f64,
    /// Learning rate of the adapter methods.
    pub lr_adapter: f64,
}

impl Plan {
    /// The `--quick` or default plan.
    pub fn new(quick: bool, seeds: usize) -> Self {
        let seeds = (0..seeds.max(1) as u64).collect();
        if quick {
            Self {
                profile: "quick".into(),
                pretrain: compare::Plan::new(true, 1),
                patches: PatchConfig {
                    size: 16,
                    factor: 2,
                    stride: 8,
                },
                depth: 3,
                ranks: vec![2],
                seeds,
                epochs: 1,
                batch_size: 16,
                lr_dense: 3e-3,
                lr_adapter: 1e-2,
            }
        } else {
            Self {
                profile: "default".into(),
                pretrain: compare::Plan::new(false, 1),
                patches: PatchConfig {
                    size: 16,
                    factor: 2,
                    stride: 4,
                },
                depth: 3,
                ranks: vec![2, 8],
                seeds,
                epochs: 3,
                batch_size: 16,
                lr_dense: 3e-3,
                lr_adapter: 1e-2,
            }
        }
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

fn class_counts(set: &Images) -> Vec<usize> {
    let mut counts = vec![0; LOBES.len()];
    for &l in &set.labels {
        counts[l] += 1;
    }
    counts
}

/// The `inflate3d` experiment.
///
/// # Errors
/// Missing data (with the fetch command), inflation, adapter or I/O errors.
pub fn run(
    plan: &Plan,
    data: &Path,
    cache: &Path,
    out: &Path,
    device_name: &str,
    device: &Device,
) -> Result<Results> {
    let split: BrainSplit = load(data, &plan.patches)?;
    eprintln!(
        "patches: {} left (train), {} right (test), {} dropped at the midline",
        split.train.len(),
        split.test.len(),
        split.dropped_midline
    );
    let (base2d, pretrain_acc, cached) = pretrained(&plan.pretrain, data, cache, device)?;
    let classes = LOBES.len();
    let cnn = CnnConfig {
        classes,
        ..plan.pretrain.cnn.clone()
    };
    let slices_train = centre_slices(&split.train);
    let slices_test = centre_slices(&split.test);
    let options = InflateOptions::new(plan.depth);

    let mut runs: Vec<Run> = Vec::new();
    let task = "brain-lobes";
    for &seed in &plan.seeds {
        let dense = TrainConfig {
            epochs: plan.epochs,
            batch_size: plan.batch_size,
            lr: plan.lr_dense,
            seed,
        };
        let adapter = TrainConfig {
            lr: plan.lr_adapter,
            ..dense
        };
        let spec = |method: &str, rank: Option<usize>| RunSpec {
            task,
            method: method.to_string(),
            rank,
            forward: rank.map(|_| "weight"),
            balanced: true,
        };
        let with_head = |device: &Device| -> Cnn<Conv2d> {
            Cnn {
                head: cnn.head(device),
                ..base2d.clone()
            }
        };

        device.seed(2000 + seed);
        runs.push(one_run::<5, _>(
            cnn.init_3d(device),
            &spec("scratch3d", None),
            &split.train,
            &split.test,
            &dense,
            device,
        ));

        device.seed(2000 + seed);
        runs.push(one_run::<4, _>(
            with_head(device),
            &spec("slice2d", None),
            &slices_train,
            &slices_test,
            &dense,
            device,
        ));

        device.seed(2000 + seed);
        let inflated = inflate(with_head(device), &options)?;
        runs.push(one_run::<5, _>(
            inflated,
            &spec("inflated-full", None),
            &split.train,
            &split.test,
            &dense,
            device,
        ));

        for variant in [ConvVariant::Hf, ConvVariant::Tucker2, ConvVariant::Cp] {
            for &rank in &plan.ranks {
                device.seed(2000 + seed);
                let inflated = inflate(with_head(device), &options)?;
                let geometries: Vec<_> =
                    inflated.blocks.iter().map(|b| b.conv.geometry()).collect();
                let model = with_adapters(&inflated, variant, rank, &geometries)?;
                let name = format!("inflated-{variant}");
                runs.push(one_run::<5, _>(
                    model,
                    &spec(&name, Some(rank)),
                    &split.train,
                    &split.test,
                    &adapter,
                    device,
                ));
            }
        }
    }

    let config = serde_json::json!({
        "plan": plan,
        "classes": LOBES,
        "train_class_counts": class_counts(&split.train),
        "test_class_counts": class_counts(&split.test),
        "dropped_midline": split.dropped_midline,
        "pretrain_test_accuracy": pretrain_acc,
        "pretrain_cached": cached,
        "inflation": "centre mode, depth kernel 3, depth padding 1, depth stride 1; fresh 3D adapters on the inflated base",
        "batch_norm": "batch statistics in training and running statistics re-estimated on the patches for every method; gamma/beta trained only by the dense methods",
        "metric": "balanced accuracy (mean per-class recall over the classes present in the test set)",
        "data_dir": data.display().to_string(),
    });
    let results = Results {
        experiment: "inflate3d".into(),
        device: device_name.to_string(),
        config,
        runs,
    };
    write_json(out, &results).map_err(io("writing results.json"))?;
    let mut md = String::new();
    md.push_str("# inflate3d: 2D -> 3D inflation plus conv LoRA on brain MRI\n\n");
    md.push_str(&format!(
        "Profile `{}` on `{}`. Task: cubic patches of {}³ voxels at {} mm (block-averaged from the 1 mm Colin27 T1, `ch2.nii.gz`), centres every {} mm, labelled by the lobe of the AAL region at the centre ({} classes: {}); background centres dropped. Train on the left hemisphere ({} patches), test on the right ({} patches); {} patches touching the midline were dropped, so no voxel is in both. Metric: **balanced accuracy**.\n\n",
        plan.profile, device_name, plan.patches.size, plan.patches.factor, plan.patches.stride * plan.patches.factor, classes, LOBES.join(", "), split.train.len(), split.test.len(), split.dropped_midline,
    ));
    md.push_str(&format!(
        "Class counts, train: {:?}; test: {:?}.\n\nThe 2D net is `compare`'s ({:?} widths), pretrained on Fashion-MNIST (test accuracy {pretrain_acc:.4}), with a fresh {classes}-class head. Methods: `scratch3d` (3x3x3 CNN of the same shape from scratch), `slice2d` (the 2D net fine-tuned on each patch's centre slice), `inflated-full` (centre-mode inflation, depth kernel {}, everything trained), `inflated-<variant>` (fresh conv LoRA on the inflated convs, head trained). {} epochs, batch {}, Adam at {} (dense methods) and {} (adapters), {} seeds. BatchNorm: batch statistics in training and running statistics re-estimated on the patches for every method; gamma/beta train only in the dense methods.\n\n",
        class_counts(&split.train), class_counts(&split.test), plan.pretrain.cnn.widths, plan.depth, plan.epochs, plan.batch_size, plan.lr_dense, plan.lr_adapter, plan.seeds.len(),
    ));
    md.push_str("## Results (balanced accuracy, mean ± std over seeds)\n\n");
    md.push_str(&table(&results));
    let file = "accuracy-vs-params-brain-lobes.svg";
    std::fs::write(
        out.join(file),
        plot_svg(
            &results,
            task,
            &["inflated-hf", "inflated-tucker2", "inflated-cp"],
        ),
    )
    .map_err(io("writing a plot"))?;
    md.push_str(&format!("\n## Plot\n\n![{task}]({file})\n"));
    std::fs::write(out.join("report.md"), md).map_err(io("writing report.md"))?;
    Ok(results)
}
