//! Summary statistics: mean, 95% confidence interval (Student t), the paired difference of
//! two methods over the same seeds, and its Nadeau–Bengio corrected interval when the seeds
//! index repeated random train/test splits of one data set.

use serde::{Deserialize, Serialize};

/// Two-sided 95% quantiles `t_{0.975, df}` of Student's t for `df = 1..=30`.
const T975: [f64; 30] = [
    12.706_204_736,
    4.302_652_730,
    3.182_446_305,
    2.776_445_105,
    2.570_581_836,
    2.446_911_851,
    2.364_624_252,
    2.306_004_135,
    2.262_157_163,
    2.228_138_852,
    2.200_985_160,
    2.178_812_830,
    2.160_368_656,
    2.144_786_688,
    2.131_449_546,
    2.119_905_299,
    2.109_815_578,
    2.100_922_040,
    2.093_024_054,
    2.085_963_447,
    2.079_613_845,
    2.073_873_068,
    2.068_657_610,
    2.063_898_562,
    2.059_538_553,
    2.055_529_439,
    2.051_830_516,
    2.048_407_142,
    2.045_229_642,
    2.042_272_456,
];

/// `t_{0.975, df}`: tabulated up to 30 degrees of freedom, beyond that the Cornish-Fisher
/// expansion around the normal quantile (error below 1e-4 for `df > 30`). `NaN` for `df = 0`.
pub fn t975(df: usize) -> f64 {
    if df == 0 {
        return f64::NAN;
    }
    if df <= T975.len() {
        return T975[df - 1];
    }
    let z: f64 = 1.959_963_985;
    let n = df as f64;
    let g1 = (z.powi(3) + z) / 4.0;
    let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
    let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
    z + g1 / n + g2 / (n * n) + g3 / (n * n * n)
}

/// Mean, 95% confidence interval of the mean and the number of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Sample mean.
    pub mean: f64,
    /// `mean ± t_{0.975, n-1} · s / sqrt(n)`; `None` with fewer than two values.
    pub ci95: Option<[f64; 2]>,
    /// Number of values.
    pub n: usize,
}

impl Estimate {
    /// Whether the interval lies entirely above or below `x` (never with fewer than two values).
    pub fn excludes(&self, x: f64) -> bool {
        self.ci95.is_some_and(|[lo, hi]| lo > x || hi < x)
    }
}

/// Mean and sample standard deviation (`n - 1` in the denominator; 0 for one value, `NaN` for
/// none).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The mean of `values` with its Student-t 95% confidence interval.
pub fn estimate(values: &[f64]) -> Estimate {
    let (mean, std) = mean_std(values);
    let n = values.len();
    let ci95 = (n >= 2).then(|| {
        let half = t975(n - 1) * std / (n as f64).sqrt();
        [mean - half, mean + half]
    });
    Estimate { mean, ci95, n }
}

/// The paired difference `a - b` over the seeds both have: each input is `(seed, value)`.
/// Seeds present in only one of them are left out.
pub fn paired_difference(a: &[(u64, f64)], b: &[(u64, f64)]) -> Estimate {
    let diffs: Vec<f64> = a
        .iter()
        .filter_map(|(seed, x)| b.iter().find(|(s, _)| s == seed).map(|(_, y)| x - y))
        .collect();
    estimate(&diffs)
}

/// The mean of `values` (paired differences over `J` repeated random train/test splits of one
/// data set, one value per split) with the 95% interval of the Nadeau–Bengio corrected
/// resampled t test (Nadeau and Bengio, "Inference for the Generalization Error", Machine
/// Learning 52, 2003): the splits' training sets overlap, so the values are correlated and the
/// plain `s² / J` understates the variance of their mean. The correction replaces it by
/// `(1/J + n_test/n_train) · s²`, with `J - 1` degrees of freedom.
///
/// `n_train` and `n_test` are the sizes of one split's training and test sets. `None` interval
/// with fewer than two splits or without training examples.
pub fn corrected_estimate(values: &[f64], n_train: usize, n_test: usize) -> Estimate {
    let (mean, std) = mean_std(values);
    let n = values.len();
    let ci95 = (n >= 2 && n_train > 0).then(|| {
        let factor = 1.0 / n as f64 + n_test as f64 / n_train as f64;
        let half = t975(n - 1) * (factor * std * std).sqrt();
        [mean - half, mean + half]
    });
    Estimate { mean, ci95, n }
}

/// The paired difference `a - b` over the splits both have (each input `(seed, value)`, the
/// seed naming the split), with the Nadeau–Bengio corrected interval of
/// [`corrected_estimate`].
pub fn corrected_paired_difference(
    a: &[(u64, f64)],
    b: &[(u64, f64)],
    n_train: usize,
    n_test: usize,
) -> Estimate {
    let diffs: Vec<f64> = a
        .iter()
        .filter_map(|(seed, x)| b.iter().find(|(s, _)| s == seed).map(|(_, y)| x - y))
        .collect();
    corrected_estimate(&diffs, n_train, n_test)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: values 1..5 have mean 3, s = sqrt(2.5), s/sqrt(5) = sqrt(0.5), and
    /// t_{0.975,4} = 2.776445, so the interval is 3 ± 1.963243.
    #[test]
    fn ci_of_a_hand_computed_case() {
        let e = estimate(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(e.n, 5);
        assert!((e.mean - 3.0).abs() < 1e-12);
        let [lo, hi] = e.ci95.unwrap();
        assert!((lo - (3.0 - 1.963_243)).abs() < 1e-5, "{lo}");
        assert!((hi - (3.0 + 1.963_243)).abs() < 1e-5, "{hi}");
        assert!(e.excludes(0.5));
        assert!(!e.excludes(4.0));
        // Two values 0 and 1: mean 0.5, s/sqrt(2) = 0.5, t_{0.975,1} = 12.7062.
        let [lo, hi] = estimate(&[0.0, 1.0]).ci95.unwrap();
        assert!((hi - (0.5 + 6.353_102)).abs() < 1e-5 && (lo - (0.5 - 6.353_102)).abs() < 1e-5);
        // One value: no interval, and it excludes nothing.
        assert_eq!(estimate(&[0.7]).ci95, None);
        assert!(!estimate(&[0.7]).excludes(0.0));
    }

    #[test]
    fn t_quantiles_are_continuous_past_the_table() {
        // Known values: t_{0.975,40} = 2.021075, t_{0.975,120} = 1.979930.
        assert!((t975(40) - 2.021_075).abs() < 1e-4, "{}", t975(40));
        assert!((t975(120) - 1.979_930).abs() < 1e-4, "{}", t975(120));
        assert!(t975(31) < t975(30) && t975(31) > t975(40));
        assert!(t975(0).is_nan());
    }

    /// Pairing removes the between-seed spread: `a` is `b` plus 0.01 on every seed, so the
    /// paired difference is exactly 0.01 with a zero-width interval, though the unpaired
    /// intervals overlap. Seeds present on one side only are left out.
    #[test]
    fn paired_difference_pairs_by_seed() {
        let b = [(0, 0.5), (1, 0.9), (2, 0.7), (9, 0.0)];
        let a = [(2, 0.71), (0, 0.51), (1, 0.91)];
        let d = paired_difference(&a, &b);
        assert_eq!(d.n, 3);
        assert!((d.mean - 0.01).abs() < 1e-12);
        let [lo, hi] = d.ci95.unwrap();
        assert!((lo - 0.01).abs() < 1e-9 && (hi - 0.01).abs() < 1e-9);
        assert!(d.excludes(0.0));
    }

    /// Hand-computed: differences 0.01, 0.03, 0.02, 0.04, 0.00 over 5 splits of 800 training and
    /// 200 test examples: mean 0.02, s² = 0.001/4 = 0.00025, corrected variance
    /// (1/5 + 200/800) · s² = 0.0001125, half-width t_{0.975,4} · sqrt(0.0001125) = 0.029449,
    /// against the uncorrected 2.776445 · sqrt(0.00025/5) = 0.019632 (a ratio of sqrt(2.25)).
    #[test]
    fn nadeau_bengio_widens_by_the_overlap() {
        let d = [0.01, 0.03, 0.02, 0.04, 0.0];
        let c = corrected_estimate(&d, 800, 200);
        let [lo, hi] = c.ci95.unwrap();
        assert!((c.mean - 0.02).abs() < 1e-12);
        assert!((hi - (0.02 + 0.029_449)).abs() < 1e-6, "{hi}");
        assert!((lo - (0.02 - 0.029_449)).abs() < 1e-6, "{lo}");
        let [plo, phi] = estimate(&d).ci95.unwrap();
        assert!(((hi - lo) / (phi - plo) - 1.5).abs() < 1e-9);
        // Pairing by seed first: b is a minus d, in another order, with an unpaired extra.
        let a: Vec<(u64, f64)> = (0..5).map(|k| (k, 0.8 + 0.01 * k as f64)).collect();
        let b: Vec<(u64, f64)> = (0..5)
            .rev()
            .map(|k| (k, a[k as usize].1 - d[k as usize]))
            .chain([(9, 0.0)])
            .collect();
        let p = corrected_paired_difference(&a, &b, 800, 200);
        assert_eq!(p.n, 5);
        assert!((p.ci95.unwrap()[1] - hi).abs() < 1e-9);
        assert_eq!(corrected_estimate(&[0.1], 800, 200).ci95, None);
    }
}
