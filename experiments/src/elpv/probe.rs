//! The linear probe on cached features. The backbone is frozen under a probe, so its 256
//! features of every image under each of the 8 symmetries of the square are computed once per
//! process; a probe run then trains only the head, on those features, and costs next to nothing.
//! Drawing uniformly from the 8 views of the training images is the same augmentation the other
//! methods get (one symmetry per example, drawn at random); validation and test use the
//! identity view, as for every method.

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use lora_backbones::ResNet29;
use lora_backbones::resnet29::FEATURES;

use crate::data::Images;
use crate::data::augment::dihedral;
use crate::train::Classifier;

/// Symmetries of the square, cached per image.
pub const VIEWS: usize = 8;

/// A head on cached features.
///
/// # Shapes
/// `[B, 1, 256]` -> `[B, 4]`
#[derive(Module, Debug)]
pub struct ProbeHead {
    /// The head, 256 -> classes.
    pub head: Linear,
}

impl Classifier<3> for ProbeHead {
    fn logits(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, _, f] = x.dims();
        self.head.forward(x.reshape([b, f]))
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
