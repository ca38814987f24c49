//! Inflating trained 2D conv adapters, so that the adapted 3D net equals the adapted 2D net on
//! every slice.
//!
//! Each variant has exactly one factor that carries the spatial axes, and the update is linear
//! in it, so inflating that factor inflates the update: `ΔK3 = inflate(ΔK2)`.
//! - HF: the down kernel `[r, s/g, kh, kw]` is inflated;
//! - Tucker-2: the mid kernel `[r, r, kh, kw]` is inflated;
//! - CP: a depth factor `[kd, r]` is prepended, one-hot at the centre row (centre mode) or
//!   `1/kd` everywhere (mean mode). It is trainable, so further training on volumes can use
//!   depth.

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Shape, Tensor};
use lora_conv::{AnyAdapter, CpAdapter, HfAdapter, Tucker2Adapter};

use crate::error::{InflateError, Result};
use crate::functional::kernel::inflate_checked;
use crate::options::{InflateMode, InflateOptions};

/// Inflate the adapter of a 2D conv kernel (`path` names it in errors).
///
/// # Errors
/// The options' own errors (see [`InflateOptions::validate`]); [`InflateError::Adapter`] for a
/// linear adapter or an adapter whose kernel is not 2D.
pub fn inflate_adapter(
    path: &str,
    adapter: AnyAdapter,
    options: &InflateOptions,
) -> Result<AnyAdapter> {
    options.validate()?;
    let (depth, mode) = (options.depth, options.mode);
    let bad = |reason: String| InflateError::Adapter {
        path: path.to_string(),
        reason,
    };
    let dims = |shape: &[usize]| match *shape {
        [t, c, kh, kw] => Ok(([c, kh, kw], vec![t, c, depth, kh, kw])),
        _ => Err(bad(format!("its kernel {shape:?} is not 2D"))),
    };
    match adapter {
        AnyAdapter::Linear(_) => Err(bad("a linear adapter has no spatial axes to inflate".into())),
        AnyAdapter::Hf(a) => {
            let (ckk, kernel_shape) = dims(&a.kernel_shape)?;
            Ok(AnyAdapter::Hf(HfAdapter {
                down: inflate_flat(a.down, ckk, depth, mode),
                kernel_shape,
                ..a
            }))
        }
        AnyAdapter::Tucker2(a) => {
            let ([_, kh, kw], kernel_shape) = dims(&a.kernel_shape)?;
            let r = a.up.lazy_shape()[1];
            Ok(AnyAdapter::Tucker2(Tucker2Adapter {
                mid: inflate_flat(a.mid, [r, kh, kw], depth, mode),
                kernel_shape,
                ..a
            }))
        }
        AnyAdapter::Cp(a) => {
            let (_, kernel_shape) = dims(&a.kernel_shape)?;
            let r = a.up.lazy_shape()[1];
            let device = a.up.lazy_device();
            // Train like the other factors (what `Module::train` would restore for `up`).
            let trainable = a.up.clone().train().is_require_grad();
            let factor = match mode {
                InflateMode::Centre => {
                    let half = depth / 2;
                    let one = Tensor::<2>::ones([1, r], &device);
                    if half == 0 {
                        one
                    } else {
                        let zeros = Tensor::<2>::zeros([half, r], &device);
                        Tensor::cat(vec![zeros.clone(), one, zeros], 0)
                    }
                }
                InflateMode::Mean => {
                    Tensor::<2>::ones([depth, r], &device).div_scalar(depth as f64)
                }
            };
            let mut spatial = vec![
                Param::initialized(ParamId::new(), factor.detach()).set_require_grad(trainable),
            ];
            spatial.extend(a.spatial);
            Ok(AnyAdapter::Cp(CpAdapter {
                spatial,
                kernel_shape,
                ..a
            }))
        }
    }
}

/// Inflate a flattened kernel factor `[a, c·kh·kw]` to `[a, c·kd·kh·kw]`, keeping its id and
/// training state.
fn inflate_flat(
    param: Param<Tensor<2>>,
    [c, kh, kw]: [usize; 3],
    depth: usize,
    mode: InflateMode,
) -> Param<Tensor<2>> {
    param.map(|flat| {
        let require_grad = flat.is_require_grad();
        let [a, _] = flat.dims();
        let kernel = flat.detach().reshape(Shape::new([a, c, kh, kw]));
        inflate_checked(kernel, depth, mode)
            .reshape([a, c * depth * kh * kw])
            .detach()
            .set_require_grad(require_grad)
    })
}
