//! A 2D convolution whose weight gradient is computed here on the CPU (`flex`) backend, where
//! that wins.
//!
//! burn 0.22's flex backend runs a conv's forward as tiled im2col + gemm and overrides neither
//! backward op: the weight gradient goes through burn-backend's default, a conv with the batch and
//! channel axes swapped and the output gradient as its kernel. [`conv2d`] computes it instead as
//! - for a stride-1 conv with one group (any kernel, padding or dilation): one small matmul per
//!   kernel tap over shifted views of the padded input, with no im2col matrix
//!   (`kernels/shifted.rs`);
//! - for a strided conv with at least [`WIDE`] output channels, one group and no dilation: one
//!   matmul, `dW[o, (c,i,j)] = Σ_(b,y,x) dY[o, (b,y,x)] · cols[(c,i,j), (b,y,x)]`, where `cols`
//!   is the im2col matrix of the padded input, built from flex's zero-copy `unfold` views with
//!   one copy.
//!
//! Measured weight gradients alone on an Intel Xeon (AVX-512, AMX; 2 threads, batch 64, 3x3,
//! padding 1, 2026-12-03), shifted against burn's: 13 against 26 ms at 32 channels and 28 px,
//! 10 against 17 ms at 64 channels and 14 px, 5 against 6 ms at 64->128 and 7 px. The im2col
//! matmul: 1.2-1.3x faster than burn's at 64-256 channels, 0.85x at 32 (so narrower strided
//! convs keep burn's). A stride-1 input gradient written as a forward conv of the flipped
//! kernel, or as shifted matmuls like the weight gradient, ran at burn's speed, and a stride-2
//! one, through a zero-dilated output gradient, 4x slower, so the input gradient stays burn's.
//! `benches/benches/conv.rs` has the comparison.
//!
//! The forward, the input gradient, and everything this does not handle (another backend, no
//! autodiff, groups, a dtype other than f32) are burn's own ops. Both weight gradients are exact
//! rewritings of the convolution's adjoint, tested against burn's on a grid of geometries.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, DispatchKindConversion, DispatchTensor, Flex, GradientCheckpointingStrategy,
};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, module};

use super::shifted;

/// `conv2d(x, weight, bias, options)`, with this module's weight gradient on an autodiff flex
/// device for the convs it handles (see the module docs) and burn's op everywhere else. Same shapes and result as
/// [`burn::tensor::module::conv2d`].
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let strategy = x.gradient_checkpointing_strategy();
    let eligible = strategy.is_some()
        && strategy == weight.gradient_checkpointing_strategy()
        && x.device() == Device::flex()
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && handled(&weight.dims(), &options);
    let Some(strategy) = strategy.filter(|_| eligible) else {
        return module::conv2d(x, weight, bias, options);
    };
    let y = match strategy {
        GradientCheckpointingStrategy::Disabled => traced::<NoCheckpointing>(x, weight, options),
        GradientCheckpointingStrategy::Balanced => {
            traced::<BalancedCheckpointing>(x, weight, options)
        }
    };
    match bias {
        Some(b) => {
            let c = b.dims()[0];
            y + b.reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// `layer.forward(x)` through [`conv2d`]: the same padding, stride, dilation and groups, with this
/// module's weight gradient where it applies. A `Same`-padded layer (whose padding burn computes
/// per input size) runs burn's own forward.
pub fn forward(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match layer.padding {
        PaddingConfig2d::Same => return layer.forward(x),
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
    };
    let options =
        ConvOptions::new_with_padding(layer.stride, padding, layer.dilation, layer.groups);
    conv2d(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// Output channels from which the weight gradient is this module's matmul (narrower convs keep
/// burn's, which was faster there).
pub const WIDE: usize = 64;

/// Whether the geometry is one this module's weight gradient handles: a stride-1 conv with one
/// group ([`shifted`]), or at least [`WIDE`] output channels, one group and no dilation (the
/// im2col matmul).
fn handled(weight: &[usize; 4], options: &ConvOptions<2>) -> bool {
    shifted::handles(options) || im2col_handles(weight, options)
}

/// Whether the im2col matmul computes the weight gradient: at least [`WIDE`] output channels,
/// one group, no dilation.
fn im2col_handles(weight: &[usize; 4], options: &ConvOptions<2>) -> bool {
    weight[0] >= WIDE && options.groups == 1 && options.dilation == [1, 1]
}

fn traced<C: CheckpointStrategy>(
    x: Tensor<4>,
    weight: Tensor<4>,
    options: ConvOptions<2>,
) -> Tensor<4>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let (Ok(xp), Ok(wp)) = (
        x.clone().try_into_primitive::<Autodiff<Flex, C>>(),
        weight.clone().try_into_primitive::<Autodiff<Flex, C>>(),
    ) else {
        return module::conv2d(x, weight, None, options);
    };
    Tensor::from_primitive::<Autodiff<Flex, C>>(record::<C>(xp, wp, options))
}

/// The conv's backward step: its state is the checkpointed input and weight, and the options.
#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 2> for Conv2dBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_id, w_id, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(x_id);
        let w = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(w_id);
        if let Some(node) = node_x {
            let dx = <Flex as ModuleOps<Flex>>::conv2d_x_backward(
                x.clone(),
                w.clone(),
                dy.clone(),
                options.clone(),
            );
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_w {
            let dw = match weight_backward(
                plain(x.clone()),
                plain(w.clone()),
                plain(dy.clone()),
                &options,
            ) {
                Some(dw) => primitive(dw),
                // Not reached: the backward's tensors are plain f32 flex ones.
                None => <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, w, dy, options),
            };
            grads.register::<Flex>(node.id, dw);
        }
    }
}

/// The weight gradient of `y = conv2d(x, w, options)` for plain (non-autodiff) f32 flex
/// tensors `x [b, c, h, w]`, `w [o, c, kh, kw]` and `dy [b, o, ho, wo]`: this module's where it
/// applies (see the module docs), burn's `conv2d_weight_backward` everywhere else.
/// [`conv2d`] runs it in its backward pass; it is public for benchmarks and op profiles.
/// `None` for tensors of another backend, an autodiff device or another dtype.
pub fn weight_backward(
    x: Tensor<4>,
    w: Tensor<4>,
    dy: Tensor<4>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if [x.dtype(), w.dtype(), dy.dtype()] != [DType::F32; 3] {
        return None;
    }
    let w_dims = w.dims();
    let (Ok(xp), Ok(wp), Ok(dyp)) = (
        x.clone().try_into_primitive::<Flex>(),
        w.try_into_primitive::<Flex>(),
        dy.clone().try_into_primitive::<Flex>(),
    ) else {
        return None;
    };
    if let Some(dw) = shifted::weight_grad(x.clone(), dy.clone(), w_dims, options) {
        return Some(dw);
    }
    if im2col_handles(&w_dims, options) {
        return Some(weight_grad(x, dy, w_dims, options));
    }
    Some(plain(<Flex as ModuleOps<Flex>>::conv2d_weight_backward(
        xp,
        wp,
        dyp,
        options.clone(),
    )))
}

fn record<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    w: FloatTensor<Autodiff<Flex, C>>,
    options: ConvOptions<2>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let forward = |x: FloatTensor<Flex>, w: FloatTensor<Flex>, options: ConvOptions<2>| {
        primitive(module::conv2d(plain(x), plain(w), None, options))
    };
    match Conv2dBackward
        .prepare::<C>([x.node(), w.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_id = prep.checkpoint(&x);
            let w_id = prep.checkpoint(&w);
            let y = forward(x.into_primitive(), w.into_primitive(), options.clone());
            prep.finish((x_id, w_id, options), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.into_primitive(), w.into_primitive(), options))
        }
    }
}

/// A flex primitive as a tensor on the plain (non-autodiff) flex device.
fn plain<const D: usize>(p: FloatTensor<Flex>) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(p)
}

/// The flex primitive of a tensor made by [`plain`] and plain ops on it.
fn primitive<const D: usize>(t: Tensor<D>) -> FloatTensor<Flex> {
    match t.clone().try_into_primitive::<Flex>() {
        Ok(p) => p,
        // Plain ops on plain flex tensors stay on flex, so this arm is not taken; going through
        // the data keeps the function total.
        Err(_) => {
            <Flex as FloatTensorOps<Flex>>::float_from_data(t.into_data(), &Default::default())
        }
    }
}

/// `dW` for `y = conv(x, w)`: `dY [o, b·ho·wo]` times the im2col matrix of the padded input,
/// `[b·ho·wo, c·kh·kw]`, as one matmul.
pub(crate) fn weight_grad(
    x: Tensor<4>,
    dy: Tensor<4>,
    w_dims: [usize; 4],
    options: &ConvOptions<2>,
) -> Tensor<4> {
    let [o, c, kh, kw] = w_dims;
    let [b, _, ho, wo] = dy.dims();
    let [(pt, pb), (pl, pr)] = options.padding;
    let [sh, sw] = options.stride;
    let x = if pt + pb + pl + pr > 0 {
        x.pad(
            [(0, 0), (0, 0), (pt, pb), (pl, pr)],
            burn::tensor::ops::PadMode::Constant(0.0),
        )
    } else {
        x
    };
    // [b, c, ho, wp, kh] -> [b, c, ho, wo, kh, kw], views of x; the rows past the last full
    // window (a stride that does not divide) are dropped, as the conv drops them.
    let windows: Tensor<6> = x.unfold::<5, _>(2, kh, sh).unfold(3, kw, sw);
    let windows = windows.narrow(2, 0, ho).narrow(3, 0, wo);
    // [c, kh, kw, b, ho, wo]: contiguous runs along wo for the copy.
    let cols = windows
        .permute([1, 4, 5, 0, 2, 3])
        .reshape([c * kh * kw, b * ho * wo]);
    let g = dy.swap_dims(0, 1).reshape([o, b * ho * wo]);
    g.matmul(cols.transpose()).reshape([o, c, kh, kw])
}
