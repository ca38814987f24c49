//! Reading tensors from `.safetensors` files (the format PEFT and LyCORIS save adapters in).

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Shape, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::{LoraError, Result};

/// The float tensors of a `.safetensors` file, by key, as f32 [`TensorData`] (F32, F16 and
/// BF16 are read; other dtypes are an error).
///
/// # Errors
/// [`LoraError::Io`] naming the file when it cannot be read or parsed, or holds a non-float
/// tensor.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<HashMap<String, TensorData>> {
    let path = path.as_ref();
    let io = |reason: String| LoraError::Io {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| io(e.to_string()))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| io(e.to_string()))?;
    let mut out = HashMap::new();
    for (key, view) in file.tensors() {
        let raw = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            other => {
                return Err(io(format!(
                    "tensor `{key}` has dtype {other:?}, not a float"
                )));
            }
        };
        out.insert(
            key,
            TensorData::new(values, Shape::from(view.shape().to_vec())),
        );
    }
    Ok(out)
}

/// IEEE half to f32.
fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalize.
            let shift = frac.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | ((frac << (shift + 1)) & 0x3ff) << 13
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Take the tensor `key` out of a map from [`read_safetensors`] as a rank-`D` tensor.
///
/// # Errors
/// [`LoraError::MissingKey`] naming `source_name`, or [`LoraError::ShapeMismatch`] when the
/// stored tensor does not have `D` dimensions.
pub fn take_tensor<const D: usize>(
    tensors: &mut HashMap<String, TensorData>,
    key: &str,
    source_name: &str,
    device: &Device,
) -> Result<Tensor<D>> {
    let data = tensors.remove(key).ok_or_else(|| LoraError::MissingKey {
        key: key.to_string(),
        source_name: source_name.to_string(),
    })?;
    if data.shape().len() != D {
        return Err(LoraError::ShapeMismatch {
            path: key.to_string(),
            expected: vec![0; D],
            actual: data.shape().to_vec(),
        });
    }
    Ok(Tensor::from_data(data, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion_is_exact_on_known_values() {
        for (bits, value) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x3555, 0.333_251_95),
            (0x0001, 5.960_464_5e-8),
            (0x7bff, 65504.0),
            (0x0000, 0.0),
        ] {
            assert_eq!(half_to_f32(bits), value, "{bits:#x}");
        }
    }

    #[test]
    fn missing_files_and_keys_are_named() {
        let err = read_safetensors("/nonexistent/adapter.safetensors").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/adapter.safetensors"));
        let mut empty = HashMap::new();
        let err = take_tensor::<2>(
            &mut empty,
            "lora_A.weight",
            "a.safetensors",
            &Device::flex(),
        );
        assert_eq!(
            err.unwrap_err(),
            LoraError::MissingKey {
                key: "lora_A.weight".into(),
                source_name: "a.safetensors".into()
            }
        );
    }
}
