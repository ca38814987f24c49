//! Each algorithm's update checked against an element-wise loop written straight from its
//! formula, on a grid of shapes (no fixture needed), plus the forms that must agree: a factored
//! LoKr side equals the full matrix it multiplies out to, and an f16 base merges in f32 and is
//! rounded once. Tolerance: 1e-5 relative to the largest magnitude.

mod common;

use common::assert_close;
use lora_files::adapter::{Magnitude, MagnitudeLayout};
use lora_files::algorithm::{Algorithm, Factor, Factors, LoHa, LoHaTucker, LoKr, Site};
use lora_files::{AdapterFile, Format, LayerAdapter, StateDict, Stored, merge};
use safetensors::Dtype;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn factor(shape: &[usize], seed: u64) -> Factor {
    Factor {
        shape: shape.to_vec(),
        values: values(shape.iter().product(), seed),
    }
}

fn delta(algorithm: &dyn Algorithm, factors: &Factors) -> Vec<f32> {
    let site = Site::new("test", "layer");
    let d = algorithm
        .delta(site, factors)
        .unwrap_or_else(|e| panic!("{e}"));
    d.matrix.into_data().try_to_vec::<f32>().unwrap_or_default()
}

#[test]
fn loha_plain_and_tucker_match_the_formula() {
    for (out, inp, k, r) in [(8, 6, 9, 4), (5, 3, 1, 2), (4, 7, 3, 3), (12, 2, 27, 1)] {
        // Plain: ΔW[o, j] = (Σ_p a1[o,p] b1[p,j]) · (Σ_p a2[o,p] b2[p,j]).
        let mut f = Factors::new();
        f.insert("hada_w1_a".into(), factor(&[out, r], 1));
        f.insert("hada_w1_b".into(), factor(&[r, inp * k], 2));
        f.insert("hada_w2_a".into(), factor(&[out, r], 3));
        f.insert("hada_w2_b".into(), factor(&[r, inp * k], 4));
        let n = inp * k;
        let mut want = vec![0f32; out * n];
        for o in 0..out {
            for j in 0..n {
                let mut p1 = 0f32;
                let mut p2 = 0f32;
                for p in 0..r {
                    p1 += f["hada_w1_a"].values[o * r + p] * f["hada_w1_b"].values[p * n + j];
                    p2 += f["hada_w2_a"].values[o * r + p] * f["hada_w2_b"].values[p * n + j];
                }
                want[o * n + j] = p1 * p2;
            }
        }
        assert!(LoHa.claims(&f.keys().map(String::as_str).collect::<Vec<_>>()));
        assert_close(
            &format!("loha {out}x{inp}x{k} r{r}"),
            &delta(&LoHa, &f),
            &want,
            1e-5,
        );
        // Tucker: T[o, i, x] = Σ_p Σ_q a[p, o] t[p, q, x] b[q, i], ΔW = T1 ⊙ T2.
        let mut f = Factors::new();
        for w in [1, 2] {
            f.insert(format!("hada_w{w}_a"), factor(&[r, out], 10 + w));
            f.insert(format!("hada_w{w}_b"), factor(&[r, inp], 20 + w));
            f.insert(format!("hada_t{w}"), factor(&[r, r, k], 30 + w));
        }
        let t = |w: usize, o: usize, i: usize, x: usize| {
            let (a, b, c) = (
                &f[&format!("hada_w{w}_a")].values,
                &f[&format!("hada_w{w}_b")].values,
                &f[&format!("hada_t{w}")].values,
            );
            let mut s = 0f32;
            for p in 0..r {
                for q in 0..r {
                    s += a[p * out + o] * c[(p * r + q) * k + x] * b[q * inp + i];
                }
            }
            s
        };
        let mut want = vec![0f32; out * inp * k];
        for o in 0..out {
            for i in 0..inp {
                for x in 0..k {
                    want[(o * inp + i) * k + x] = t(1, o, i, x) * t(2, o, i, x);
                }
            }
        }
        assert_close(
            &format!("loha tucker {out}x{inp}x{k} r{r}"),
            &delta(&LoHaTucker, &f),
            &want,
            1e-5,
        );
    }
}

#[test]
fn lokr_matches_the_kronecker_formula_and_factored_equals_full() {
    for (a, c, b, d, k, r) in [(3, 2, 4, 4, 9, 2), (2, 2, 3, 5, 1, 1), (4, 1, 2, 3, 3, 2)] {
        let mut full = Factors::new();
        full.insert("lokr_w1".into(), factor(&[a, c], 1));
        // w2 = w2_a · w2_b, also stored whole.
        let wa = factor(&[b, r], 2);
        let wb = factor(&[r, d * k], 3);
        let mut w2 = vec![0f32; b * d * k];
        for i in 0..b {
            for j in 0..d * k {
                w2[i * d * k + j] = (0..r)
                    .map(|p| wa.values[i * r + p] * wb.values[p * d * k + j])
                    .sum();
            }
        }
        let mut shape2 = vec![b, d];
        if k > 1 {
            shape2.push(k);
        }
        full.insert(
            "lokr_w2".into(),
            Factor {
                shape: shape2,
                values: w2.clone(),
            },
        );
        let mut factored = Factors::new();
        factored.insert("lokr_w1".into(), full["lokr_w1"].clone());
        factored.insert("lokr_w2_a".into(), wa);
        factored.insert("lokr_w2_b".into(), wb);
        // ΔW[α·B + β, (γ·D + δ)·K + x] = w1[α, γ] · w2[β, δ·K + x].
        let w1 = &full["lokr_w1"].values;
        let (rows, cols) = (a * b, c * d * k);
        let mut want = vec![0f32; rows * cols];
        for al in 0..a {
            for be in 0..b {
                for ga in 0..c {
                    for de in 0..d * k {
                        want[(al * b + be) * cols + ga * d * k + de] =
                            w1[al * c + ga] * w2[be * d * k + de];
                    }
                }
            }
        }
        let what = format!("lokr {a}x{c} ⊗ {b}x{d}x{k}");
        assert_close(&what, &delta(&LoKr, &full), &want, 1e-5);
        assert_close(
            &format!("{what} factored"),
            &delta(&LoKr, &factored),
            &want,
            1e-5,
        );
        // Scale: 1 with two full matrices, alpha/r once a side is factored.
        assert_eq!(LoKr.scale(Some(8.0), 1, &full), 1.0);
        assert_eq!(LoKr.scale(Some(8.0), r, &factored), 8.0 / r as f64);
    }
}

fn one_layer(factors: Factors, magnitude: Option<Magnitude>) -> AdapterFile {
    AdapterFile {
        source: "test".into(),
        format: Format::Native,
        layers: vec![LayerAdapter {
            module: "layer".into(),
            key_prefix: "layer".into(),
            algorithm: &lora_files::algorithm::LoCon,
            factors,
            rank: 2,
            alpha: Some(1.0),
            scale: 0.5,
            magnitude,
            base_shape: None,
            groups: 1,
        }],
        replacements: Default::default(),
        rslora: false,
        diffs: Default::default(),
    }
}

#[test]
fn dora_per_input_channel_matches_the_formula() {
    // LyCORIS without wd_on_out: V = W + scale·ΔW, norm per input channel over (out, k),
    // W' = V · m_i / (‖V_i‖ + eps).
    let (out, inp, k, r) = (5, 3, 4, 2);
    let mut f = Factors::new();
    f.insert("lora_down.weight".into(), factor(&[r, inp, 2, 2], 1));
    f.insert("lora_up.weight".into(), factor(&[out, r, 1, 1], 2));
    let m = values(inp, 3)
        .iter()
        .map(|v| v.abs() + 0.5)
        .collect::<Vec<_>>();
    let adapter = one_layer(
        f.clone(),
        Some(Magnitude {
            layout: MagnitudeLayout::LycorisIn,
            values: m.clone(),
            shape: vec![1, inp, 1, 1],
        }),
    );
    let w = values(out * inp * k, 4);
    let mut base = StateDict::default();
    base.tensors.insert(
        "layer.weight".into(),
        Stored::from_f32(vec![out, inp, 2, 2], &w),
    );
    let merged = merge::merge(&base, "base", &adapter, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let got = merged.tensors["layer.weight"].to_f32().unwrap_or_default();
    let (down, up) = (&f["lora_down.weight"].values, &f["lora_up.weight"].values);
    let mut v = vec![0f32; out * inp * k];
    for o in 0..out {
        for j in 0..inp * k {
            let d: f32 = (0..r).map(|p| up[o * r + p] * down[p * inp * k + j]).sum();
            v[o * inp * k + j] = w[o * inp * k + j] + 0.5 * d;
        }
    }
    let mut want = v.clone();
    for i in 0..inp {
        let norm = (0..out)
            .flat_map(|o| (0..k).map(move |x| (o * inp + i) * k + x))
            .map(|idx| v[idx] * v[idx])
            .sum::<f32>()
            .sqrt()
            + f32::EPSILON;
        for o in 0..out {
            for x in 0..k {
                want[(o * inp + i) * k + x] *= m[i] / norm;
            }
        }
    }
    assert_close("dora per input channel", &got, &want, 1e-5);
}

#[test]
fn f16_base_merges_in_f32_and_rounds_once() {
    let (out, inp, r) = (6, 4, 2);
    let mut f = Factors::new();
    f.insert("lora_down.weight".into(), factor(&[r, inp], 1));
    f.insert("lora_up.weight".into(), factor(&[out, r], 2));
    let adapter = one_layer(f, None);
    let w = values(out * inp, 3);
    let mut b16 = StateDict::default();
    b16.tensors.insert(
        "layer.weight".into(),
        Stored::from_f32_as(vec![out, inp], &w, Dtype::F16),
    );
    let w16 = b16.tensors["layer.weight"].to_f32().unwrap_or_default();
    let mut b16w = StateDict::default();
    b16w.tensors.insert(
        "layer.weight".into(),
        Stored::from_f32(vec![out, inp], &w16),
    );
    let m16 = merge::merge(&b16, "base", &adapter, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let stored = &m16.tensors["layer.weight"];
    assert_eq!(stored.dtype, Dtype::F16);
    // The f32 merge of the f16 base's values, rounded once to f16: the same bits.
    let m32 = merge::merge(&b16w, "base", &adapter, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let once = Stored::from_f32_as(
        vec![out, inp],
        &m32.tensors["layer.weight"].to_f32().unwrap_or_default(),
        Dtype::F16,
    );
    assert_eq!(stored.bytes, once.bytes);
}
