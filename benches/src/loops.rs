//! Element-wise recomposition loops, written straight from the formulas (correctly: the design
//! document's loop sums over the wrong indices), and the FLOP counts of the matmul forms.
//!
//! Factor layouts are those of `lora_conv::functional::recompose`; every function returns
//! `ΔK` flattened as `[t, c·K]` (scale 1).

/// LoCon: `ΔK[t, x] = Σ_r up[t, r]·down[r, x]` with `x` over `c·K`.
pub fn locon(down: &[f32], up: &[f32], t: usize, r: usize, ck: usize) -> Vec<f32> {
    let mut out = vec![0.0; t * ck];
    for o in 0..t {
        for x in 0..ck {
            let mut acc = 0.0;
            for q in 0..r {
                acc += up[o * r + q] * down[q * ck + x];
            }
            out[o * ck + x] = acc;
        }
    }
    out
}

/// Tucker-2: `ΔK[t, s, k] = Σ_p Σ_q up[t, p]·mid[p, q, k]·down[q, s]`.
pub fn tucker2(
    down: &[f32],
    mid: &[f32],
    up: &[f32],
    t: usize,
    r: usize,
    c: usize,
    k: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; t * c * k];
    for o in 0..t {
        for s in 0..c {
            for i in 0..k {
                let mut acc = 0.0;
                for p in 0..r {
                    for q in 0..r {
                        acc += up[o * r + p] * mid[p * r * k + q * k + i] * down[q * c + s];
                    }
                }
                out[(o * c + s) * k + i] = acc;
            }
        }
    }
    out
}

/// CP, two spatial axes: `ΔK[t, s, i, j] = Σ_r U[t, r]·V[r, s]·H[i, r]·W[j, r]`.
#[allow(clippy::too_many_arguments)]
pub fn cp2(
    up: &[f32],
    down: &[f32],
    h: &[f32],
    w: &[f32],
    t: usize,
    r: usize,
    c: usize,
    kh: usize,
    kw: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; t * c * kh * kw];
    for o in 0..t {
        for s in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    let mut acc = 0.0;
                    for q in 0..r {
                        acc += up[o * r + q] * down[q * c + s] * h[i * r + q] * w[j * r + q];
                    }
                    out[((o * c + s) * kh + i) * kw + j] = acc;
                }
            }
        }
    }
    out
}

/// FLOPs of the matmul recomposition of each variant, for a `[t, c, K]` kernel at rank `r`.
pub fn recompose_flops(
    variant: lora_conv::ConvVariant,
    t: usize,
    c: usize,
    k: usize,
    r: usize,
) -> usize {
    match variant.name() {
        "locon" => 2 * t * r * c * k,
        "tucker2" => 2 * t * r * r * k + 2 * t * k * r * c,
        _ => 2 * t * r * c * k + r * c * k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tensor};
    use lora_conv::functional::{cp, locon, tucker2};

    fn rand(shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    fn data(x: &Tensor<2>) -> Vec<f32> {
        x.to_data().try_to_vec::<f32>().unwrap_or_default()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    /// The loops the benches time compute what the library computes (relative 1e-4, absolute
    /// floor 1e-4), so the speed-up compares equal work.
    #[test]
    fn loops_match_the_library() {
        let device = Device::flex();
        let (t, c, kh, kw, r) = (5, 4, 3, 2, 3);
        let k = kh * kw;
        let (down, up) = (rand([r, c * k], &device), rand([t, r], &device));
        close(
            &super::locon(&data(&down), &data(&up), t, r, c * k),
            &data(&locon::delta(down, up.clone(), 1.0)),
        );
        let (down, mid) = (rand([r, c], &device), rand([r, r * k], &device));
        close(
            &tucker2(&data(&down), &data(&mid), &data(&up), t, r, c, k),
            &data(&tucker2::delta(down, mid, up.clone(), 1.0)),
        );
        let (v, h, w) = (
            rand([r, c], &device),
            rand([kh, r], &device),
            rand([kw, r], &device),
        );
        close(
            &cp2(&data(&up), &data(&v), &data(&h), &data(&w), t, r, c, kh, kw),
            &data(&cp::delta(up, v, &[h, w], 1.0)),
        );
    }
}
