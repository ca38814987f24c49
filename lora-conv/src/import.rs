//! Building adapters from the factors that PEFT and LyCORIS save, mapping their layouts.
//!
//! | library | key | their layout | ours |
//! |---|---|---|---|
//! | PEFT conv | `lora_A.weight` | `[r, s/g, k..]` | LoCon `down [r, (s/g)·K]` |
//! | PEFT conv | `lora_B.weight` | `[t, r, 1..]` | LoCon `up [t, r]` |
//! | LyCORIS LoCon | `lora_down.weight` | `[r, s/g, k..]` | LoCon `down` |
//! | LyCORIS LoCon | `lora_up.weight` | `[t, r, 1..]` | LoCon `up` |
//! | LyCORIS Tucker | `lora_down.weight` | `[r, s/g, 1..]` | Tucker-2 `down [r, s/g]` |
//! | LyCORIS Tucker | `lora_mid.weight` | `[r, r, k..]` | Tucker-2 `mid [r, r·K]` |
//! | LyCORIS Tucker | `lora_up.weight` | `[t, r, 1..]` | Tucker-2 `up [t, r]` |
//!
//! The scale is the caller's: PEFT's `lora_alpha / r` (or `/ sqrt(r)` with `use_rslora`),
//! LyCORIS's stored `alpha / r`. Linear PEFT factors go through
//! [`lora_core::LinearAdapter::from_peft`].

use burn::module::Param;
use burn::tensor::Tensor;
use lora_core::{LinearAdapter, LoraError, Result};

use crate::adapters::{LoConAdapter, Tucker2Adapter};

fn flat<const N: usize>(t: Tensor<N>, rows: usize) -> Tensor<2> {
    let cols = t.shape().num_elements() / rows.max(1);
    t.reshape([rows, cols])
}

fn mismatch(path: &str, expected: Vec<usize>, actual: &[usize]) -> LoraError {
    LoraError::ShapeMismatch {
        path: path.to_string(),
        expected,
        actual: actual.to_vec(),
    }
}

/// The dims of a conv factor `[a, b, k..]` (1 to 3 spatial axes), or an error naming `path`
/// and the shape.
fn conv_factor_dims<const N: usize>(path: &str, w: &Tensor<N>) -> Result<Vec<usize>> {
    let dims = w.dims().to_vec();
    if !(3..=5).contains(&N) {
        return Err(LoraError::UnsupportedGeometry {
            path: path.to_string(),
            reason: format!(
                "a conv factor is [a, b, k..] with 1 to 3 spatial axes (3-D to 5-D), got the \
                 {N}-D shape {dims:?}"
            ),
        });
    }
    Ok(dims)
}

/// Refuse a zero rank (an empty factor), naming `path` and the factor's shape.
fn nonzero_rank(path: &str, rank: usize, shape: &[usize]) -> Result<()> {
    if rank == 0 {
        return Err(LoraError::InvalidRank {
            path: path.to_string(),
            rank,
            shape: shape.to_vec(),
            reason: "the factors hold no component; a rank must be at least 1".to_string(),
        });
    }
    Ok(())
}

/// `[t, r, 1..]` as `[t, r]`, or an error naming `path`.
fn pointwise_factor<const N: usize>(path: &str, w: Tensor<N>) -> Result<Tensor<2>> {
    let dims = conv_factor_dims(path, &w)?;
    if dims[2..].iter().any(|&k| k != 1) {
        let mut expected = dims[..2].to_vec();
        expected.extend(std::iter::repeat_n(1, N - 2));
        return Err(mismatch(path, expected, &dims));
    }
    Ok(flat(w, dims[0]))
}

impl LoConAdapter {
    /// The same update as a lora-core [`LinearAdapter`] (burn layout `down [d_in, r]`,
    /// `up [r, d_out]`), on the PyTorch layout `[d_out, d_in]`: carry it with
    /// [`crate::AnyAdapter::linear`]. The factors keep their ids.
    pub fn from_linear(linear: &LinearAdapter) -> Self {
        let [d_in, _] = linear.down.lazy_shape().dims();
        let [_, d_out] = linear.up.lazy_shape().dims();
        Self {
            down: linear.down.clone().map(|t| t.transpose()),
            up: linear.up.clone().map(|t| t.transpose()),
            scale: linear.scale,
            shape: vec![d_out, d_in],
        }
    }

    /// From PEFT's `lora_A`/`lora_B` (or LyCORIS LoCon's `lora_down`/`lora_up`) conv weights.
    ///
    /// # Errors
    /// [`LoraError::UnsupportedGeometry`] naming `path` for tensors that are not 3- to 5-D,
    /// [`LoraError::InvalidRank`] for rank 0, [`LoraError::ShapeMismatch`] naming `path` when
    /// the two do not fit together.
    pub fn from_peft<const N: usize>(
        path: &str,
        lora_a: Tensor<N>,
        lora_b: Tensor<N>,
        scale: f64,
    ) -> Result<Self> {
        let a = conv_factor_dims(&format!("{path}.lora_A"), &lora_a)?;
        let b = conv_factor_dims(&format!("{path}.lora_B"), &lora_b)?;
        nonzero_rank(path, a[0], &a)?;
        let up = pointwise_factor(&format!("{path}.lora_B"), lora_b)?;
        if b[1] != a[0] {
            return Err(mismatch(&format!("{path}.lora_B"), vec![b[0], a[0]], &b));
        }
        let mut kernel_shape = vec![b[0]];
        kernel_shape.extend_from_slice(&a[1..]);
        Ok(Self {
            down: Param::from_tensor(flat(lora_a, a[0])),
            up: Param::from_tensor(up),
            scale,
            shape: kernel_shape,
        })
    }
}

impl Tucker2Adapter {
    /// From LyCORIS's Tucker factors `lora_down [r, s/g, 1..]`, `lora_mid [r, r, k..]`,
    /// `lora_up [t, r, 1..]`.
    ///
    /// # Errors
    /// [`LoraError::UnsupportedGeometry`] naming `path` for tensors that are not 3- to 5-D,
    /// [`LoraError::InvalidRank`] for rank 0, [`LoraError::ShapeMismatch`] naming `path` when
    /// the three do not fit together.
    pub fn from_lycoris<const N: usize>(
        path: &str,
        down: Tensor<N>,
        mid: Tensor<N>,
        up: Tensor<N>,
        scale: f64,
    ) -> Result<Self> {
        let d = conv_factor_dims(&format!("{path}.lora_down"), &down)?;
        let m = conv_factor_dims(&format!("{path}.lora_mid"), &mid)?;
        let u = conv_factor_dims(&format!("{path}.lora_up"), &up)?;
        let r = d[0];
        nonzero_rank(path, r, &d)?;
        if m[0] != r || m[1] != r {
            let mut expected = vec![r, r];
            expected.extend_from_slice(&m[2..]);
            return Err(mismatch(&format!("{path}.lora_mid"), expected, &m));
        }
        if u[1] != r {
            return Err(mismatch(&format!("{path}.lora_up"), vec![u[0], r], &u));
        }
        let mut kernel_shape = vec![u[0], d[1]];
        kernel_shape.extend_from_slice(&m[2..]);
        Ok(Self {
            down: Param::from_tensor(pointwise_factor(&format!("{path}.lora_down"), down)?),
            mid: Param::from_tensor(flat(mid, r)),
            up: Param::from_tensor(pointwise_factor(&format!("{path}.lora_up"), up)?),
            scale,
            shape: kernel_shape,
        })
    }
}
