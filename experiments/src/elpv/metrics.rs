//! ELPV's three scores, all read off a test confusion matrix `[true][predicted]` over the four
//! classes (defect probability 0, 1/3, 2/3, 1), and the Holm correction across a table of
//! paired comparisons.

use crate::harness::stats::t975;

/// Which score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// Fraction of cells whose class is predicted exactly.
    FourClass,
    /// Mean per-class recall over the classes present (the classes run from 1,508 to 106).
    Balanced,
    /// Functional (probability 0) against defective (any other class): fraction right.
    Binary,
}

impl Score {
    /// Every score, in report order.
    pub const ALL: [Score; 3] = [Score::FourClass, Score::Balanced, Score::Binary];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Score::FourClass => "four-class accuracy",
            Score::Balanced => "balanced accuracy",
            Score::Binary => "functional vs defective accuracy",
        }
    }

    /// The score of confusion matrix `m` (`NaN` for an empty one).
    pub fn of(self, m: &[Vec<usize>]) -> f64 {
        let total: usize = m.iter().flatten().sum();
        if total == 0 {
            return f64::NAN;
        }
        match self {
            Score::FourClass => {
                let hit: usize = (0..m.len())
                    .map(|i| m[i].get(i).copied().unwrap_or(0))
                    .sum();
                hit as f64 / total as f64
            }
            Score::Balanced => {
                let recalls: Vec<f64> = m
                    .iter()
                    .enumerate()
                    .filter_map(|(i, row)| {
                        let n: usize = row.iter().sum();
                        (n > 0).then(|| row.get(i).copied().unwrap_or(0) as f64 / n as f64)
                    })
                    .collect();
                recalls.iter().sum::<f64>() / recalls.len() as f64
            }
            Score::Binary => {
                let mut hit = 0;
                for (i, row) in m.iter().enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        if (i == 0) == (j == 0) {
                            hit += v;
                        }
                    }
                }
                hit as f64 / total as f64
            }
        }
    }
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms: about 15 digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Two-sided p-value of a Student t statistic `t` with `df` degrees of freedom: twice the
/// upper tail, by Simpson's rule on the density from 0 to `|t|` (4,000 panels; the density is
/// smooth there, so the error is far below the 1e-6 the report prints).
pub fn t_two_sided_p(t: f64, df: usize) -> f64 {
    if !t.is_finite() {
        return if t.is_nan() { f64::NAN } else { 0.0 };
    }
    if df == 0 {
        return f64::NAN;
    }
    let nu = df as f64;
    let ln_c =
        ln_gamma((nu + 1.0) / 2.0) - ln_gamma(nu / 2.0) - 0.5 * (nu * std::f64::consts::PI).ln();
    let density = |x: f64| (ln_c - (nu + 1.0) / 2.0 * (1.0 + x * x / nu).ln()).exp();
    let b = t.abs();
    let n = 4_000;
    let h = b / n as f64;
    let mut sum = density(0.0) + density(b);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * density(i as f64 * h);
    }
    let half_mass = sum * h / 3.0;
    (1.0 - 2.0 * half_mass).clamp(0.0, 1.0)
}

/// The t statistic of an estimate from its mean and 95% interval: `mean / se`, with
/// `se = half-width / t975(n - 1)`.
pub fn t_statistic(mean: f64, ci95: [f64; 2], n: usize) -> f64 {
    let half = (ci95[1] - ci95[0]) / 2.0;
    if n < 2 || half <= 0.0 {
        return f64::NAN;
    }
    mean / (half / t975(n - 1))
}

/// Holm–Bonferroni adjusted p-values, in the order given: sorted ascending, the i-th smallest
/// (0-based) is multiplied by `m − i`, made non-decreasing and capped at 1. `NaN` inputs stay
/// `NaN` and do not count in `m`.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked matrix: 10 cells, 6 on the diagonal; recalls 4/5, 1/2, 1/3 (class 3 absent);
    /// functional-vs-defective: true 0 predicted 0 (4) plus defective predicted defective (4).
    #[test]
    fn scores_of_a_hand_worked_matrix() {
        let m = vec![
            vec![4, 1, 0, 0],
            vec![1, 1, 0, 0],
            vec![0, 1, 1, 1],
            vec![0, 0, 0, 0],
        ];
        assert!((Score::FourClass.of(&m) - 6.0 / 10.0).abs() < 1e-12);
        let balanced = (4.0 / 5.0 + 1.0 / 2.0 + 1.0 / 3.0) / 3.0;
        assert!((Score::Balanced.of(&m) - balanced).abs() < 1e-12);
        // 4 (0->0) + 1 (1->1) + 1 + 1 + 1 (2->1, 2->2, 2->3) = 8; 0->1 and 1->0 are wrong.
        assert!((Score::Binary.of(&m) - 8.0 / 10.0).abs() < 1e-12);
        assert!(Score::FourClass.of(&[vec![0, 0], vec![0, 0]]).is_nan());
    }

    /// The t tail against tabulated values: t975 quantiles give p = 0.05, and the normal limit.
    #[test]
    fn t_p_values_match_tables() {
        for df in [1, 2, 4, 9, 30] {
            let p = t_two_sided_p(t975(df), df);
            assert!((p - 0.05).abs() < 2e-4, "df {df}: {p}");
        }
        // t = 0 is p = 1; df = 4, t = 4.604 is the 0.995 quantile: p = 0.01.
        assert!((t_two_sided_p(0.0, 4) - 1.0).abs() < 1e-9);
        assert!((t_two_sided_p(4.604_095, 4) - 0.01).abs() < 1e-4);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    }

    /// Holm on a hand-worked list: sorted 0.01, 0.02, 0.04, 0.30 times 4, 3, 2, 1 give 0.04,
    /// 0.06, 0.08, 0.30, already non-decreasing; a NaN is left out of m.
    #[test]
    fn holm_hand_worked() {
        let adj = holm(&[0.04, 0.01, f64::NAN, 0.30, 0.02]);
        let want = [0.08, 0.04, f64::NAN, 0.30, 0.06];
        for (a, w) in adj.iter().zip(want) {
            assert!(a.is_nan() && w.is_nan() || (a - w).abs() < 1e-12, "{adj:?}");
        }
        // Monotone: a larger raw p never gets a smaller adjusted one.
        let adj = holm(&[0.011, 0.012]);
        assert!((adj[0] - 0.022).abs() < 1e-12 && (adj[1] - 0.022).abs() < 1e-12);
    }
}
