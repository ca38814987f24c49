//! The pretrained backbone's features, cached: the linear probe trains on them, and every
//! method's head standardizes its input with their statistics. The backbone is frozen under a
//! probe, so its 256 features of every image under each of the 8 symmetries of the square are
//! computed once per process; a probe run then trains only the head, on those features, and
//! costs next to nothing.
//!
//! Why standardize: face-api's pooled features sit around 0.5 with a spread of about 0.16 (on
//! ELPV, median over features), so an unscaled linear head sees a large common offset and a
//! small signal; at the step budgets here a probe on raw features still predicted the majority
//! class at every rate tried (3e-3 to 3e-2). The statistics come from each split's training
//! images only, and the map is frozen: it is part of the head, not a trained layer.
//! Drawing uniformly from the 8 views of the training images is the same augmentation the other
//! methods get (one symmetry per example, drawn at random); validation and test use the
//! identity view, as for every method.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use lora_backbones::ResNet29;
use lora_backbones::resnet29::FEATURES;

use super::split::Split;
use crate::data::Images;
use crate::data::augment::dihedral;
use crate::error::Result;
use crate::train::{Augment, Classifier, Metric, TrainConfig, train};

/// Symmetries of the square, cached per image.
pub const VIEWS: usize = 8;

/// A frozen per-feature standardization, `(x - mean) · scale`.
///
/// # Shapes
/// `[B, F] -> [B, F]`, with `mean` and `scale` `[F]`
#[derive(Module, Debug)]
pub struct Standardize {
    /// Per-feature mean of the pretrained features on the training images.
    pub mean: Param<Tensor<1>>,
    /// `1 / max(sd, 0.01)` per feature (a feature constant on the training images is not
    /// blown up if fine-tuning wakes it).
    pub scale: Param<Tensor<1>>,
}

impl Standardize {
    /// The standardization of the rows `rows` of `features` (`[n, F]` as [`Images`]), frozen.
    pub fn fit(features: &Images, rows: &[usize], device: &Device) -> Self {
        let f = features.dims[0];
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0f64; f];
        let mut sq = vec![0f64; f];
        for &r in rows {
            for j in 0..f {
                let v = f64::from(features.pixels[r * f + j]);
                mean[j] += v / n;
                sq[j] += v * v / n;
            }
        }
        let scale: Vec<f32> = (0..f)
            .map(|j| (1.0 / (sq[j] - mean[j] * mean[j]).max(0.0).sqrt().max(0.01)) as f32)
            .collect();
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let frozen = |v: Vec<f32>| {
            Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [f]), device))
                .set_require_grad(false)
        };
        Self {
            mean: frozen(mean),
            scale: frozen(scale),
        }
    }

    /// Apply it to `[B, F]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let f = self.mean.shape().dims::<1>()[0];
        (x - self.mean.val().reshape([1, f])) * self.scale.val().reshape([1, f])
    }
}

/// A head on cached features: standardized, then linear.
///
/// # Shapes
/// `[B, 1, 256]` -> `[B, 4]`
#[derive(Module, Debug)]
pub struct ProbeHead {
    /// The frozen standardization.
    pub norm: Standardize,
    /// The head, 256 -> classes.
    pub head: Linear,
}

impl Classifier<3> for ProbeHead {
    fn logits(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, _, f] = x.dims();
        self.head.forward(self.norm.forward(x.reshape([b, f])))
    }
}

/// The features of every image of `images` (`[n, n]` grayscale in 0..1) under each of the
/// [`VIEWS`] symmetries, computed in inference mode: example `i` under view `t` is row
/// `i · VIEWS + t` (view 0 is the identity), labelled with image `i`'s class.
pub fn features(base: &ResNet29<Conv2d>, images: &Images, device: &Device) -> Images {
    let model = base.valid();
    let device = device.clone().inner();
    let n = images.dims[0];
    let size = n * n;
    let mut rows = vec![0f32; images.len() * VIEWS * FEATURES];
    let mut tmp = vec![0f32; size];
    let chunk = 64;
    let mut pixels = Vec::with_capacity(chunk * 3 * size);
    for t in 0..VIEWS {
        for start in (0..images.len()).step_by(chunk) {
            let end = (start + chunk).min(images.len());
            pixels.clear();
            for i in start..end {
                dihedral(&images.pixels[i * size..(i + 1) * size], n, t, &mut tmp);
                for _ in 0..3 {
                    pixels.extend(tmp.iter().map(|v| v * 255.0));
                }
            }
            let x = Tensor::<4>::from_data(
                TensorData::new(pixels.clone(), [end - start, 3, n, n]),
                &device,
            );
            let f = model.features(x).into_data();
            for (k, row) in f
                .iter::<f32>()
                .collect::<Vec<_>>()
                .chunks(FEATURES)
                .enumerate()
            {
                let at = ((start + k) * VIEWS + t) * FEATURES;
                rows[at..at + FEATURES].copy_from_slice(row);
            }
        }
    }
    Images {
        pixels: rows,
        dims: vec![FEATURES],
        labels: images
            .labels
            .iter()
            .flat_map(|&l| std::iter::repeat_n(l, VIEWS))
            .collect(),
    }
}

/// The rows of `indices`' images under every view (training) or the identity view only.
pub fn rows(indices: &[usize], all_views: bool) -> Vec<usize> {
    if all_views {
        indices
            .iter()
            .flat_map(|&i| (0..VIEWS).map(move |t| i * VIEWS + t))
            .collect()
    } else {
        indices.iter().map(|&i| i * VIEWS).collect()
    }
}

/// How a head is trained as a linear probe before fine-tuning (LP-FT: Kumar et al., "Fine-Tuning
/// can Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeInit {
    /// Adam's rate for the probe (cosine schedule).
    pub lr: f64,
    /// Optimizer steps of the probe, on the cached features of the split's training images.
    pub steps: usize,
}

/// The head `model.head` after training it as a probe on `split`'s cached features (all views
/// of its training images, batch `batch`, the checkpoint with the best validation accuracy):
/// the head a fine-tuning run starts from. Seeded by `seed` (data order only; the head's
/// initial values are `model`'s).
///
/// # Errors
/// As [`train`].
pub fn probed_head(
    model: ProbeHead,
    features: &Images,
    split: &Split,
    init: ProbeInit,
    batch: usize,
    seed: u64,
    device: &Device,
) -> Result<Linear> {
    let train_rows = features.select(&rows(&split.train, true));
    let val_rows = features.select(&rows(&split.val, false));
    let config = TrainConfig {
        steps: init.steps,
        batch_size: batch,
        lr: init.lr,
        seed,
        evals: 4,
        schedule: crate::train::Schedule::Cosine,
        augment: Augment::None,
    };
    let trained = train::<3, ProbeHead>(
        model,
        &train_rows,
        Some((&val_rows, Metric::Accuracy)),
        &config,
        device,
        "probe head",
    )?;
    Ok(trained.model.head)
}
