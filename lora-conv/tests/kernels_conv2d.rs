//! `lora_conv::kernels::conv2d` against burn's `conv2d` on a grid of geometries: the output and
//! the gradients of the input, the weight and the bias, on an autodiff flex device (where a wide
//! conv's weight gradient is this crate's) and without autodiff (where it is burn's op). Tolerance: 1e-4
//! of the reference's largest magnitude, absolute floor 1e-5.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use lora_conv::kernels::conv2d;
use lora_core::testing::{Tol, assert_close};

const TOL: Tol = Tol {
    rel: 1e-4,
    abs: 1e-5,
};

struct Case {
    batch: usize,
    cin: usize,
    cout: usize,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    // Square kernels, every stride/padding combination that occurs in the networks here.
    for (k, s, p) in [
        (3, 1, 1),
        (3, 2, 0),
        (3, 2, 1),
        (7, 2, 0),
        (7, 2, 3),
        (1, 1, 0),
        (1, 2, 0),
        (5, 3, 2),
        (3, 1, 0),
    ] {
        for size in [[9, 9], [8, 11], [12, 7]] {
            // Narrow (burn's weight gradient) and wide (this crate's).
            for cout in [4, lora_conv::kernels::conv2d::WIDE] {
                v.push(Case {
                    batch: 2,
                    cin: 3,
                    cout,
                    size,
                    kernel: [k, k],
                    stride: [s, s],
                    padding: [(p, p), (p, p)],
                    dilation: [1, 1],
                });
            }
        }
    }
    // Rectangular kernels, mixed strides, asymmetric padding (what `Same` gives for even kernels).
    v.push(Case {
        batch: 3,
        cin: 5,
        cout: 65,
        size: [10, 13],
        kernel: [3, 5],
        stride: [2, 1],
        padding: [(1, 0), (2, 1)],
        dilation: [1, 1],
    });
    v.push(Case {
        batch: 1,
        cin: 2,
        cout: 70,
        size: [6, 6],
        kernel: [2, 2],
        stride: [1, 1],
        padding: [(0, 1), (1, 0)],
        dilation: [1, 1],
    });
    // Dilated stride-1 convs (the shifted weight gradient steps its taps by the dilation).
    for (dilation, padding) in [([2, 2], [(2, 2), (2, 2)]), ([1, 3], [(0, 1), (3, 2)])] {
        v.push(Case {
            batch: 2,
            cin: 3,
            cout: 5,
            size: [11, 12],
            kernel: [3, 3],
            stride: [1, 1],
            padding,
            dilation,
        });
    }
    // A batch long enough (4·66·66 grid positions) that the shifted weight gradient splits its
    // long axis into chunks.
    v.push(Case {
        batch: 4,
        cin: 3,
        cout: 6,
        size: [64, 64],
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
    });
    v
}

/// A tensor of values in -1..1 from a fixed LCG (the device's RNG is shared between test threads,
/// so two draws with the same seed can differ).
fn det<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Output and the three gradients of `f(x, w, b)` summed against a fixed random cotangent.
fn run(
    f: impl Fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>,
    case: &Case,
    device: &Device,
    seed: u64,
) -> Vec<Tensor<4>> {
    let [h, w] = case.size;
    let [kh, kw] = case.kernel;
    let x = det([case.batch, case.cin, h, w], seed, device).require_grad();
    let wt = det([case.cout, case.cin, kh, kw], seed + 1000, device).require_grad();
    let b = det([case.cout], seed + 2000, device).require_grad();
    let options = ConvOptions::new_with_padding(case.stride, case.padding, case.dilation, 1);
    let y = f(x.clone(), wt.clone(), Some(b.clone()), options);
    let cot = det(y.dims(), seed + 3000, device);
    let grads = (y.clone() * cot).sum().backward();
    let gb = b.grad(&grads).expect("bias grad");
    vec![
        y.inner(),
        x.grad(&grads).expect("x grad"),
        wt.grad(&grads).expect("w grad"),
        gb.reshape([1, 1, 1, case.cout]),
    ]
}

#[test]
fn matches_burn_conv2d_on_a_grid() {
    let device = Device::flex().autodiff();
    for (i, case) in cases().iter().enumerate() {
        let ours = run(conv2d, case, &device, i as u64);
        let reference = run(burn_conv2d, case, &device, i as u64);
        for (name, (a, b)) in ["output", "dx", "dw", "db"]
            .iter()
            .zip(ours.into_iter().zip(reference))
        {
            let what = format!(
                "case {i} ({name}): k {:?} s {:?} p {:?} d {:?} size {:?}",
                case.kernel, case.stride, case.padding, case.dilation, case.size
            );
            assert_close(a, b, TOL, &what);
        }
    }
}

/// Only the weight, or only the input, needing a gradient (a frozen conv in bypass form needs
/// only dx; the first conv needs only dw).
#[test]
fn partial_gradients_match() {
    let device = Device::flex().autodiff();
    let options = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
    let x = det([2, 3, 9, 9], 1, &device);
    let w = det([64, 3, 3, 3], 2, &device);
    let cot = det([2, 64, 5, 5], 3, &device);
    for (gx, gw) in [(true, false), (false, true)] {
        let grads_of =
            |f: fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>| {
                let x = if gx {
                    x.clone().require_grad()
                } else {
                    x.clone()
                };
                let w = if gw {
                    w.clone().require_grad()
                } else {
                    w.clone()
                };
                let g = (f(x.clone(), w.clone(), None, options.clone()) * cot.clone())
                    .sum()
                    .backward();
                if gx {
                    x.grad(&g).expect("x grad")
                } else {
                    w.grad(&g).expect("w grad")
                }
            };
        assert_close(
            grads_of(conv2d),
            grads_of(burn_conv2d),
            TOL,
            "partial gradient",
        );
    }
}

/// Without autodiff, with groups or with dilation, the op is burn's.
#[test]
fn other_cases_fall_back_to_burn() {
    let device = Device::flex();
    let n = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<4>::random([2, 4, 8, 8], n, &device);
    for (w_shape, options) in [
        ([64, 4, 3, 3], ConvOptions::new([1, 1], [1, 1], [1, 1], 1)),
        ([64, 2, 3, 3], ConvOptions::new([1, 1], [1, 1], [1, 1], 2)),
        ([64, 4, 3, 3], ConvOptions::new([1, 1], [2, 2], [2, 2], 1)),
    ] {
        let w = Tensor::<4>::random(w_shape, n, &device);
        assert_close(
            conv2d(x.clone(), w.clone(), None, options.clone()),
            burn_conv2d(x.clone(), w, None, options),
            TOL,
            "fallback",
        );
    }
    let ad = Device::flex().autodiff();
    let x = Tensor::<4>::random([2, 4, 8, 8], n, &ad).require_grad();
    let w = Tensor::<4>::random([64, 2, 3, 3], n, &ad).require_grad();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
    let g1 = conv2d(x.clone(), w.clone(), None, options.clone())
        .sum()
        .backward();
    let g2 = burn_conv2d(x.clone(), w.clone(), None, options)
        .sum()
        .backward();
    assert_close(
        w.grad(&g1).unwrap(),
        w.grad(&g2).unwrap(),
        TOL,
        "grouped dw",
    );
}
