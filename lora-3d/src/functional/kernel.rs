//! Kernel inflation: `[t, s/g, kh, kw]` -> `[t, s/g, kd, kh, kw]`.

use burn::tensor::Tensor;

use crate::error::{InflateError, Result};
use crate::options::{InflateMode, MAX_DEPTH};

/// The depth padding that keeps a centre-inflated kernel of odd depth `kd` exact per slice,
/// `(kd - 1) / 2`, or `None` for an even or zero depth.
pub fn centre_padding(kd: usize) -> Option<usize> {
    (!kd.is_multiple_of(2)).then(|| (kd - 1) / 2)
}

/// Inflate a 2D kernel to 3D along a new depth axis (axis 2).
///
/// - [`InflateMode::Centre`]: `K3[.., d, i, j] = K2[.., i, j]` if `d = kd/2`, else 0.
/// - [`InflateMode::Mean`]: `K3[.., d, i, j] = K2[.., i, j] / kd` for every `d`.
///
/// Any `[a, b, kh, kw]` tensor works: a conv kernel `[t, s/g, kh, kw]`, an HF down kernel
/// `[r, s/g, kh, kw]` or a Tucker-2 mid kernel `[r, r, kh, kw]`.
///
/// # Shapes
/// - `kernel`: `[a, b, kh, kw]`
/// - output: `[a, b, kd, kh, kw]`
///
/// # Errors
/// [`InflateError::ZeroDepth`], [`InflateError::EvenDepth`] or
/// [`InflateError::DepthTooLarge`].
pub fn inflate_kernel(kernel: Tensor<4>, depth: usize, mode: InflateMode) -> Result<Tensor<5>> {
    if depth == 0 {
        return Err(InflateError::ZeroDepth);
    }
    if depth.is_multiple_of(2) {
        return Err(InflateError::EvenDepth { depth });
    }
    if depth > MAX_DEPTH {
        return Err(InflateError::DepthTooLarge {
            depth,
            max: MAX_DEPTH,
        });
    }
    Ok(inflate_checked(kernel, depth, mode))
}

/// [`inflate_kernel`] for a depth already checked to be odd.
pub(crate) fn inflate_checked(kernel: Tensor<4>, depth: usize, mode: InflateMode) -> Tensor<5> {
    let slice = kernel.unsqueeze_dim::<5>(2);
    match mode {
        InflateMode::Centre if depth == 1 => slice,
        InflateMode::Centre => {
            let [a, b, _, kh, kw] = slice.dims();
            let half = depth / 2;
            let zeros = Tensor::<5>::zeros([a, b, half, kh, kw], &slice.device());
            Tensor::cat(vec![zeros.clone(), slice, zeros], 2)
        }
        InflateMode::Mean => slice.repeat_dim(2, depth).div_scalar(depth as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Element-wise check of both modes on a few shapes and depths.
    #[test]
    fn inflate_kernel_elementwise() {
        let device = Device::flex();
        for (shape, depth) in [([2, 3, 3, 3], 3), ([4, 1, 1, 5], 5), ([1, 2, 2, 3], 1)] {
            let k2 = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let v2 = k2.to_data().try_to_vec::<f32>().unwrap();
            for mode in [InflateMode::Centre, InflateMode::Mean] {
                let k3 = inflate_kernel(k2.clone(), depth, mode).unwrap();
                assert_eq!(k3.dims(), [shape[0], shape[1], depth, shape[2], shape[3]]);
                let v3 = k3.to_data().try_to_vec::<f32>().unwrap();
                let [a, b, kh, kw] = shape;
                for (idx, &got) in v3.iter().enumerate() {
                    let j = idx % kw;
                    let i = (idx / kw) % kh;
                    let d = (idx / (kw * kh)) % depth;
                    let ab = idx / (kw * kh * depth);
                    assert!(ab < a * b);
                    let src = v2[(ab * kh + i) * kw + j];
                    let want = match mode {
                        InflateMode::Centre if d == depth / 2 => src,
                        InflateMode::Centre => 0.0,
                        InflateMode::Mean => src / depth as f32,
                    };
                    assert!(
                        (got - want).abs() <= 1e-7,
                        "{shape:?} {depth} {mode:?} at {idx}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_depths() {
        let k = Tensor::<4>::zeros([1, 1, 3, 3], &Device::flex());
        assert!(matches!(
            inflate_kernel(k.clone(), 0, InflateMode::Centre),
            Err(InflateError::ZeroDepth)
        ));
        assert!(matches!(
            inflate_kernel(k, 2, InflateMode::Mean),
            Err(InflateError::EvenDepth { depth: 2 })
        ));
        assert_eq!(centre_padding(5), Some(2));
        assert_eq!(centre_padding(2), None);
    }
}
