//! The walkthrough's two-conv network (`a`: 3 -> 8, `b`: 8 -> 8, both 3x3 with padding 1, a
//! ReLU between), and its weights as a PyTorch-layout state dict (`a.weight`, `a.bias`, ...),
//! which is what adapter files are merged into and what the LyCORIS check in
//! `scripts/fixtures/custom_full.py` loads into the same network in PyTorch.

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, Conv3d};
use burn::tensor::{Device, Tensor, TensorData};
use lora_3d::{Inflate, Inflation};
use lora_files::{FileError, StateDict, Stored};

/// A two-conv network.
#[derive(Module, Debug)]
pub struct Net {
    /// 3 -> 8 channels.
    pub a: Conv2d,
    /// 8 -> 8 channels.
    pub b: Conv2d,
}

impl Net {
    /// Fresh weights (burn's default init, from the device's seed).
    pub fn new(device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            a: conv(3, 8),
            b: conv(8, 8),
        }
    }

    /// `[batch, 3, h, w]` -> `[batch, 8, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.b
            .forward(burn::tensor::activation::relu(self.a.forward(x)))
    }

    /// The weights as a state dict (burn's conv layout is PyTorch's).
    pub fn state_dict(&self) -> StateDict {
        let mut dict = StateDict::default();
        for (name, conv) in [("a", &self.a), ("b", &self.b)] {
            let mut put = |key: String, t: Tensor<1>, shape: Vec<usize>| {
                let values = t.into_data().try_to_vec::<f32>().unwrap_or_default();
                dict.tensors.insert(key, Stored::from_f32(shape, &values));
            };
            let w = conv.weight.val();
            let dims = w.dims().to_vec();
            put(format!("{name}.weight"), w.flatten(0, 3), dims);
            if let Some(b) = &conv.bias {
                let b = b.val();
                let dims = b.dims().to_vec();
                put(format!("{name}.bias"), b, dims);
            }
        }
        dict
    }

    /// A network with the weights of `dict` (as [`Net::state_dict`] writes them).
    ///
    /// # Errors
    /// [`FileError::MissingKey`] or [`FileError::Shape`] naming the entry.
    pub fn from_state_dict(
        dict: &StateDict,
        file: &str,
        device: &Device,
    ) -> Result<Self, FileError> {
        let mut net = Self::new(device);
        for (name, conv) in [("a", &mut net.a), ("b", &mut net.b)] {
            let key = format!("{name}.weight");
            let (shape, values) = dict.f32(file, &key, "the network has it")?;
            let want = conv.weight.val().dims();
            if shape != want {
                return Err(FileError::Shape {
                    file: file.to_string(),
                    key,
                    expected: format!("{want:?}"),
                    actual: shape,
                });
            }
            conv.weight =
                Param::from_tensor(Tensor::from_data(TensorData::new(values, want), device));
            let key = format!("{name}.bias");
            let (_, values) = dict.f32(file, &key, "the network has it")?;
            let n = values.len();
            conv.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(values, [n]),
                device,
            )));
        }
        Ok(net)
    }
}

/// The network inflated to 3D.
#[derive(Module, Debug)]
pub struct Net3d {
    a: Conv3d,
    b: Conv3d,
}

impl Inflate for Net {
    type Output = Net3d;
    fn inflate(self, cx: &mut Inflation) -> lora_3d::Result<Net3d> {
        Ok(Net3d {
            a: self.a.inflate(cx)?,
            b: self.b.inflate(cx)?,
        })
    }
}

impl Net3d {
    /// `[batch, 3, d, h, w]` -> `[batch, 8, d, h, w]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.b
            .forward(burn::tensor::activation::relu(self.a.forward(x)))
    }
}
