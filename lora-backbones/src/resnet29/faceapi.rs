//! Building [`ResNet29`] from face-api's `face_recognition_model` weights.

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};

use super::{Affine, BLOCKS, ConvUnit, DESCRIPTOR, FEATURES, ResNet29};
use crate::error::Result;
use crate::tfjs::TfjsWeights;

/// The manifest's file name in face-api's `model/` folder.
pub const MANIFEST: &str = "face_recognition_model-weights_manifest.json";

fn tensor<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

impl ResNet29<Conv2d> {
    /// Read face-api's weights from `dir` (the package's `model/` folder, or wherever
    /// `./scripts/fetch-data.sh` put [`MANIFEST`] and `face_recognition_model.bin`).
    ///
    /// Filters are stored HWIO (`[kh, kw, in, out]`) and become burn's `[out, in, kh, kw]`; `fc`
    /// is `[256, 128]`, which is burn's `Linear` layout `[d_in, d_out]` as it is.
    ///
    /// # Errors
    /// As [`TfjsWeights::read`], and [`BackboneError::Weight`](crate::BackboneError::Weight)
    /// naming the first weight that is missing or has the wrong shape.
    pub fn from_faceapi(dir: &Path, device: &Device) -> Result<Self> {
        let weights = TfjsWeights::read(&dir.join(MANIFEST))?;
        Self::from_tfjs(&weights, device)
    }

    /// Build the network from weights already read.
    ///
    /// # Errors
    /// [`BackboneError::Weight`](crate::BackboneError::Weight) naming the first weight that is
    /// missing or has the wrong shape.
    pub fn from_tfjs(weights: &TfjsWeights, device: &Device) -> Result<Self> {
        let mut net = Self::init(device);
        load_unit(&mut net.stem, weights, "conv32_down", device)?;
        for (block, &(name, ..)) in net.blocks.iter_mut().zip(BLOCKS.iter()) {
            load_unit(&mut block.conv1, weights, &format!("{name}/conv1"), device)?;
            load_unit(&mut block.conv2, weights, &format!("{name}/conv2"), device)?;
        }
        let fc = weights.get("fc", &[FEATURES, DESCRIPTOR])?;
        net.fc.weight = Param::from_tensor(tensor(&fc.values, [FEATURES, DESCRIPTOR], device));
        Ok(net)
    }
}

/// Fill one conv unit from `<prefix>/conv/{filters,bias}` and `<prefix>/scale/{weights,biases}`,
/// with the shapes the freshly initialised unit has.
fn load_unit(
    unit: &mut ConvUnit<Conv2d>,
    weights: &TfjsWeights,
    prefix: &str,
    device: &Device,
) -> Result<()> {
    let [out, cin, kh, kw] = unit.conv.weight.shape().dims::<4>();
    let filters = weights.get(&format!("{prefix}/conv/filters"), &[kh, kw, cin, out])?;
    let hwio = tensor(&filters.values, [kh, kw, cin, out], device);
    // A contiguous [out, in, kh, kw] copy, not a permuted view of the HWIO data.
    let oihw = Tensor::from_data(hwio.permute([3, 2, 0, 1]).into_data(), device);
    unit.conv.weight = Param::from_tensor(oihw);
    let bias = weights.get(&format!("{prefix}/conv/bias"), &[out])?;
    unit.conv.bias = Some(Param::from_tensor(tensor(&bias.values, [out], device)));
    let scale = weights.get(&format!("{prefix}/scale/weights"), &[out])?;
    let shift = weights.get(&format!("{prefix}/scale/biases"), &[out])?;
    unit.scale = Affine {
        weight: Param::from_tensor(tensor(&scale.values, [out], device)),
        bias: Param::from_tensor(tensor(&shift.values, [out], device)),
    };
    Ok(())
}
