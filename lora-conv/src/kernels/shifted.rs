//! The weight gradient of a stride-1 2D convolution as one small matmul per kernel tap over
//! shifted views of the padded input, with no im2col matrix.
//!
//! Lay the padded input out as `[c, b·hp·wp]` (each image's `hp x wp` plane flattened), and the
//! output gradient on the same grid, `[o, b·hp·wp]`, with `dy[b, o, y, x]` at position
//! `y·wp + x` of image `b` and zeros elsewhere. For a stride-1 conv the input pixel under tap
//! `(i, j)` of output position `q` sits at `q + (i·dh·wp + j·dw)` in that layout, so
//!
//! `dW[:, :, i, j] = dY_grid · X_flat[:, off_ij .. off_ij + b·hp·wp]ᵀ`,
//!
//! an `[o, k] x [k, c]` product whose right operand is a shifted window of one buffer: nothing
//! is copied per tap. Positions of the grid outside the conv's output carry zero gradient (the
//! input row gets `slack` zeros at its end so the last window stays inside it, and every value
//! a zero multiplies is a finite input or a padding zero). The grid has `hp·wp / (ho·wo)` times
//! the output's positions, the price of no copy: 1.15x at 28 px, 1.65x at 7 px with padding 1.
//!
//! The taps, and chunks of the long `b·hp·wp` axis, run as independent single-threaded matmuls
//! on rayon's pool; their partial products are summed by burn.

use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::gemm::{View, matmul};

/// Positions of the long axis per task, at least: long enough for gemm's blocking to pay off,
/// short enough that a 28 px batch of 64 splits into a few tasks per tap.
const CHUNK: usize = 16_384;

/// Whether [`weight_grad`] handles the geometry: stride 1 and one group (any kernel, padding or
/// dilation).
pub(crate) fn handles(options: &ConvOptions<2>) -> bool {
    options.stride == [1, 1] && options.groups == 1
}

/// `dW` of `y = conv2d(x, w, options)` for plain f32 tensors `x [b, c, h, w]` and
/// `dy [b, o, ho, wo]` on one device, or `None` when the geometry is not one [`handles`] accepts
/// or the data cannot be read as f32 (the caller then runs burn's op).
pub(crate) fn weight_grad(
    x: Tensor<4>,
    dy: Tensor<4>,
    w_dims: [usize; 4],
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if !handles(options) {
        return None;
    }
    let [o, c, kh, kw] = w_dims;
    let [b, _, h, w] = x.dims();
    let [_, _, ho, wo] = dy.dims();
    let [(pt, pb), (pl, pr)] = options.padding;
    let [dh, dw] = options.dilation;
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    // Stride 1: ho = hp - dh·(kh - 1), so the grid holds the output with room to spare.
    if ho > hp || wo > wp || kh == 0 || kw == 0 {
        return None;
    }
    let k = b * hp * wp;
    let slack = (kh - 1) * dh * wp + (kw - 1) * dw;
    let row = k + slack;
    let device = x.device();
    let xf = x
        .pad([(0, 0), (0, 0), (pt, pb), (pl, pr)], PadMode::Constant(0.0))
        .swap_dims(0, 1)
        .reshape([c, k])
        .pad([(0, slack)], PadMode::Constant(0.0))
        .into_data();
    let grid = dy
        .pad(
            [(0, 0), (0, 0), (0, hp - ho), (0, wp - wo)],
            PadMode::Constant(0.0),
        )
        .swap_dims(0, 1)
        .reshape([o, k])
        .into_data();
    let (xs, gs) = (floats(&xf)?, floats(&grid)?);
    let taps = kh * kw;
    let splits = k.div_ceil(CHUNK).max(1);
    let chunk = k.div_ceil(splits);
    let parts: Vec<Option<Vec<f32>>> = (0..taps * splits)
        .into_par_iter()
        .map(|task| {
            let (t, s) = (task / splits, task % splits);
            let (i, j) = (t / kw, t % kw);
            let k0 = (s * chunk).min(k);
            let len = chunk.min(k - k0);
            let lhs = View {
                data: gs,
                offset: k0,
                row_stride: k,
                col_stride: 1,
            };
            let rhs = View {
                data: xs,
                offset: i * dh * wp + j * dw + k0,
                row_stride: 1,
                col_stride: row,
            };
            let mut dst = vec![0.0f32; o * c];
            matmul(&mut dst, o, c, len, lhs, rhs).then_some(dst)
        })
        .collect();
    let mut flat = Vec::with_capacity(taps * splits * o * c);
    for part in parts {
        flat.extend_from_slice(&part?);
    }
    let parts = Tensor::<4>::from_data(TensorData::new(flat, [taps, splits, o, c]), &device);
    Some(
        parts
            .sum_dim(1)
            .reshape([kh, kw, o, c])
            .permute([2, 3, 0, 1]),
    )
}

/// The data as f32, without `TensorData::as_slice`'s per-element check (which, instantiated in
/// this crate, runs at the dev profile's opt-level 0 and cost 7% of a training step).
fn floats(data: &TensorData) -> Option<&[f32]> {
    (data.dtype() == DType::F32)
        .then(|| bytemuck::try_cast_slice::<u8, f32>(data.as_bytes()).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::backend::ops::ModuleOps;
    use burn::tensor::{Device, Distribution};
    use lora_core::testing::{Tol, assert_close};

    use super::*;

    fn primitive<const D: usize>(t: Tensor<D>) -> burn::backend::tensor::FloatTensor<Flex> {
        t.try_into_primitive::<Flex>()
            .unwrap_or_else(|_| panic!("a plain flex tensor"))
    }

    /// The shifted gradient is taken (never the fallback) and equals burn's
    /// `conv2d_weight_backward` on a grid: kernels 1-5, padding 0-2 (asymmetric), dilation 1-3,
    /// and a grid long enough to be split into chunks. Tolerance 1e-4 of the largest magnitude.
    #[test]
    fn equals_burns_weight_gradient() {
        let device = Device::flex();
        let n = Distribution::Uniform(-1.0, 1.0);
        let cases = [
            // batch, c, o, h, w, kh, kw, padding, dilation
            (2, 3, 5, 9, 9, 3, 3, [(1, 1), (1, 1)], [1, 1]),
            (2, 4, 3, 8, 11, 1, 1, [(0, 0), (0, 0)], [1, 1]),
            (1, 2, 6, 7, 10, 5, 3, [(2, 1), (0, 2)], [1, 1]),
            (2, 3, 4, 11, 12, 3, 3, [(2, 2), (2, 2)], [2, 2]),
            (2, 3, 4, 11, 12, 3, 2, [(0, 1), (3, 2)], [1, 3]),
            (4, 3, 6, 64, 64, 3, 3, [(1, 1), (1, 1)], [1, 1]),
        ];
        for (i, (b, c, o, h, w, kh, kw, padding, dilation)) in cases.into_iter().enumerate() {
            let options = ConvOptions::new_with_padding([1, 1], padding, dilation, 1);
            let x = Tensor::<4>::random([b, c, h, w], n, &device);
            let wt = Tensor::<4>::random([o, c, kh, kw], n, &device);
            let y = burn::tensor::module::conv2d(x.clone(), wt.clone(), None, options.clone());
            let dy = Tensor::<4>::random(y.dims(), n, &device);
            let ours = weight_grad(x.clone(), dy.clone(), [o, c, kh, kw], &options)
                .unwrap_or_else(|| panic!("case {i}: fell back"));
            let burns = Tensor::<4>::from_primitive::<Flex>(Flex::conv2d_weight_backward(
                primitive(x),
                primitive(wt),
                primitive(dy),
                options,
            ));
            let tol = Tol {
                rel: 1e-4,
                abs: 1e-5,
            };
            assert_close(ours, burns, tol, &format!("case {i}"));
        }
    }

    /// Strides other than 1 and grouped convs are not handled.
    #[test]
    fn refuses_strides_and_groups() {
        assert!(!handles(&ConvOptions::new([2, 1], [0, 0], [1, 1], 1)));
        assert!(!handles(&ConvOptions::new([1, 1], [0, 0], [1, 1], 2)));
        assert!(handles(&ConvOptions::new([1, 1], [3, 0], [2, 1], 1)));
    }
}
