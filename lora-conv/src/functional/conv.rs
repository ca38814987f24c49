//! A convolution over any number of spatial axes (1, 2 or 3), for code that is generic in the
//! tensor rank `N = d + 2`.

use burn::tensor::Tensor;
use burn::tensor::module::{conv1d, conv2d, conv3d};
use burn::tensor::ops::ConvOptions;

/// The base convolution's arguments a bypass branch runs with (groups = 1).
#[derive(Debug, Clone, Copy)]
pub struct ConvArgs<'a> {
    /// Stride per spatial axis.
    pub stride: &'a [usize],
    /// Resolved padding (before, after) per spatial axis.
    pub padding: &'a [(usize, usize)],
    /// Dilation per spatial axis.
    pub dilation: &'a [usize],
}

/// Convolution of `x [B, C_in, ..d]` with `weight [C_out, C_in/groups, k..d]`, no bias.
///
/// # Panics
/// If `N` is not 3, 4 or 5, or if the slices do not have `N − 2` entries (programmer errors;
/// the adapters check geometry before they get here).
pub fn conv_nd<const N: usize>(
    x: Tensor<N>,
    weight: Tensor<N>,
    stride: &[usize],
    padding: &[(usize, usize)],
    dilation: &[usize],
    groups: usize,
) -> Tensor<N> {
    fn options<const D: usize>(
        stride: &[usize],
        padding: &[(usize, usize)],
        dilation: &[usize],
        groups: usize,
    ) -> ConvOptions<D> {
        ConvOptions::new_with_padding(
            core::array::from_fn(|i| stride[i]),
            core::array::from_fn(|i| padding[i]),
            core::array::from_fn(|i| dilation[i]),
            groups,
        )
    }
    // Tensor<N> and Tensor<3|4|5> are the same tensor when N matches: reshape to the same
    // shape changes only the static rank.
    let (xs, ws) = (x.shape(), weight.shape());
    match N {
        3 => {
            let y = conv1d(
                x.reshape::<3, _>(xs),
                weight.reshape::<3, _>(ws),
                None,
                options::<1>(stride, padding, dilation, groups),
            );
            let shape = y.shape();
            y.reshape(shape)
        }
        4 => {
            let y = conv2d(
                x.reshape::<4, _>(xs),
                weight.reshape::<4, _>(ws),
                None,
                options::<2>(stride, padding, dilation, groups),
            );
            let shape = y.shape();
            y.reshape(shape)
        }
        5 => {
            let y = conv3d(
                x.reshape::<5, _>(xs),
                weight.reshape::<5, _>(ws),
                None,
                options::<3>(stride, padding, dilation, groups),
            );
            let shape = y.shape();
            y.reshape(shape)
        }
        _ => panic!("conv_nd supports 1, 2 or 3 spatial axes, got a rank-{N} input"),
    }
}

/// A 1x..x1 convolution: a per-position channel mix `w [C_out, C_in]`.
///
/// It runs as one batched matmul `w · x[b]` over the flattened positions, not as a conv:
/// burn `flex`'s conv computes a 1x1 kernel's weight gradient at 1–9 GFLOP/s on the narrow
/// channel counts of an adapter's down and up projections (e.g. 10.7 ms for 4->64 at 56x56,
/// batch 8), where the matmul's gradient takes 0.1–0.2 ms. Autodiff sums the weight's
/// gradient over the broadcast batch axis.
///
/// # Shapes
/// - `x`: `[B, C_in, ..d]`, `w`: `[C_out, C_in]` -> `[B, C_out, ..d]`
pub fn pointwise<const N: usize>(x: Tensor<N>, w: Tensor<2>) -> Tensor<N> {
    let mut dims = x.dims();
    let [c_out, c_in] = w.dims();
    let positions: usize = dims[2..].iter().product();
    let y = w
        .unsqueeze::<3>()
        .matmul(x.reshape([dims[0], c_in, positions]));
    dims[1] = c_out;
    y.reshape(dims)
}

/// `x` as a `Tensor<B>`, for code generic in the rank that knows `A == B` (a reshape to the
/// same shape changes only the static rank).
///
/// # Panics
/// If `A != B` (a programmer error).
pub(crate) fn same_rank<const A: usize, const B: usize>(x: Tensor<A>) -> Tensor<B> {
    let shape = x.shape();
    x.reshape(shape)
}
