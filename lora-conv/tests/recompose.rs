//! `functional::recompose` against element-wise references written straight from the formulas
//! (plain nested loops over every index, on host vectors).

#![allow(clippy::unwrap_used, missing_docs)]

use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::functional::{cp, locon, tucker2};

fn host(t: &Tensor<2>) -> Vec<f32> {
    t.clone().into_data().try_to_vec::<f32>().unwrap()
}

fn rand(shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Row-major flat index of the spatial position `idx` in a kernel of sizes `ks`.
fn spatial_index(idx: &[usize], ks: &[usize]) -> usize {
    idx.iter().zip(ks).fold(0, |acc, (i, k)| acc * k + i)
}

/// Every spatial index of a kernel of sizes `ks`, in row-major order.
fn spatial_indices(ks: &[usize]) -> Vec<Vec<usize>> {
    let mut all = vec![vec![]];
    for &k in ks {
        all = all
            .into_iter()
            .flat_map(|prefix| {
                (0..k).map(move |i| {
                    let mut p = prefix.clone();
                    p.push(i);
                    p
                })
            })
            .collect();
    }
    all
}

/// Tolerance: 1e-5 relative to max(|reference|, 1); f32 sums of at most a few hundred terms.
fn assert_matches(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * scale,
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

const KERNELS: [&[usize]; 6] = [&[3], &[5], &[3, 3], &[1, 4], &[3, 2, 2], &[1, 1, 3]];

#[test]
fn locon_matches_the_formula() {
    let device = Device::flex();
    device.seed(1);
    for (case, ks) in KERNELS.iter().enumerate() {
        let (t, c, r) = (5, 3 + case, 2 + case % 3);
        let kv: usize = ks.iter().product();
        let (down, up) = (rand([r, c * kv], &device), rand([t, r], &device));
        let got = host(&locon::delta(down.clone(), up.clone(), 0.7));
        let (d, u) = (host(&down), host(&up));
        let mut want = vec![0.0f32; t * c * kv];
        for ti in 0..t {
            for s in 0..c {
                for idx in spatial_indices(ks) {
                    let k = spatial_index(&idx, ks);
                    let mut sum = 0.0;
                    for ri in 0..r {
                        sum += u[ti * r + ri] * d[ri * c * kv + s * kv + k];
                    }
                    want[(ti * c + s) * kv + k] = 0.7 * sum;
                }
            }
        }
        assert_matches(&got, &want, &format!("hf {ks:?}"));
    }
}

#[test]
fn tucker2_matches_the_formula() {
    let device = Device::flex();
    device.seed(2);
    for (case, ks) in KERNELS.iter().enumerate() {
        let (t, c, r) = (4 + case, 3, 1 + case % 4);
        let kv: usize = ks.iter().product();
        let down = rand([r, c], &device);
        let mid = rand([r, r * kv], &device);
        let up = rand([t, r], &device);
        let got = host(&tucker2::delta(down.clone(), mid.clone(), up.clone(), 1.3));
        let (dn, md, u) = (host(&down), host(&mid), host(&up));
        let mut want = vec![0.0f32; t * c * kv];
        for ti in 0..t {
            for s in 0..c {
                for idx in spatial_indices(ks) {
                    let k = spatial_index(&idx, ks);
                    let mut sum = 0.0;
                    for p in 0..r {
                        for q in 0..r {
                            // mid[p, q, k] is stored at p·(r·K) + q·K + k.
                            sum += u[ti * r + p] * md[p * r * kv + q * kv + k] * dn[q * c + s];
                        }
                    }
                    want[(ti * c + s) * kv + k] = 1.3 * sum;
                }
            }
        }
        assert_matches(&got, &want, &format!("tucker2 {ks:?}"));
    }
}

#[test]
fn cp_matches_the_formula() {
    let device = Device::flex();
    device.seed(3);
    for (case, ks) in KERNELS.iter().enumerate() {
        let (t, c, r) = (3 + case, 4, 2 + case);
        let kv: usize = ks.iter().product();
        let up = rand([t, r], &device);
        let down = rand([r, c], &device);
        let spatial: Vec<Tensor<2>> = ks.iter().map(|&k| rand([k, r], &device)).collect();
        let got = host(&cp::delta(up.clone(), down.clone(), &spatial, 0.5));
        let (u, v) = (host(&up), host(&down));
        let f: Vec<Vec<f32>> = spatial.iter().map(host).collect();
        let mut want = vec![0.0f32; t * c * kv];
        for ti in 0..t {
            for s in 0..c {
                for idx in spatial_indices(ks) {
                    let k = spatial_index(&idx, ks);
                    let mut sum = 0.0;
                    for ri in 0..r {
                        let mut term = u[ti * r + ri] * v[ri * c + s];
                        for (j, &i) in idx.iter().enumerate() {
                            term *= f[j][i * r + ri];
                        }
                        sum += term;
                    }
                    want[(ti * c + s) * kv + k] = 0.5 * sum;
                }
            }
        }
        assert_matches(&got, &want, &format!("cp {ks:?}"));
    }
}
