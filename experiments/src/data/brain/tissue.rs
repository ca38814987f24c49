//! The `segment` label: CSF, grey matter or white matter, from a brain-extracted T1's intensities
//! alone, by one procedure that any brain goes through unchanged, and its agreement with a
//! reference segmentation.
//!
//! The procedure, per brain: block-average the T1 to the patch grid, fit three clusters to the
//! intensities of the brain's voxels (1-D k-means, Lloyd's algorithm from the 1/6, 1/2 and 5/6
//! quantiles), classify each voxel by the nearest centre (dark = CSF, middle = grey matter,
//! bright = white matter on a T1), and label a patch by the most frequent class of its central
//! cube (ties to the darker class). Thresholds come from each brain's own intensities, so two
//! brains scanned or averaged on different intensity scales are labelled alike; no label is
//! read.

use serde::{Deserialize, Serialize};

/// The classes of the `segment` label, darkest first.
pub const SEGMENTS: [&str; 3] = ["csf", "grey", "white"];

/// Fit three 1-D k-means centres (ascending) to `values` (Lloyd's algorithm from the 1/6, 1/2
/// and 5/6 quantiles, until no centre moves or 200 rounds). `None` for no values.
pub fn three_means(values: &[f32]) -> Option<[f64; 3]> {
    if values.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
    sorted.sort_by(f64::total_cmp);
    let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
    let mut centres = [q(1.0 / 6.0), q(0.5), q(5.0 / 6.0)];
    for _ in 0..200 {
        let [lo, hi] = thresholds(centres);
        let (mut sums, mut counts) = ([0.0f64; 3], [0usize; 3]);
        for &v in &sorted {
            let k = usize::from(v >= lo) + usize::from(v >= hi);
            sums[k] += v;
            counts[k] += 1;
        }
        let next: [f64; 3] = std::array::from_fn(|k| {
            if counts[k] > 0 {
                sums[k] / counts[k] as f64
            } else {
                centres[k]
            }
        });
        if next == centres {
            break;
        }
        centres = next;
    }
    Some(centres)
}

/// The decision thresholds of three ascending centres: the midpoints between neighbours.
pub fn thresholds(centres: [f64; 3]) -> [f64; 2] {
    [
        (centres[0] + centres[1]) / 2.0,
        (centres[1] + centres[2]) / 2.0,
    ]
}

/// The class (index into [`SEGMENTS`]) of an intensity under `thresholds`.
pub fn class_of(value: f32, thresholds: [f64; 2]) -> usize {
    let v = f64::from(value);
    usize::from(v >= thresholds[0]) + usize::from(v >= thresholds[1])
}

/// The reference class of a voxel from grey- and white-matter probabilities (`0..1`): the
/// largest of CSF = `1 - gm - wm` (the template ships no CSF map; inside the brain the rest is
/// CSF), grey and white (ties to the darker class).
pub fn reference_class(gm: f32, wm: f32) -> usize {
    let p = [1.0 - gm - wm, gm, wm];
    let mut best = 0;
    for k in 1..3 {
        if p[k] > p[best] {
            best = k;
        }
    }
    best
}

/// The most frequent class among `classes` (ties to the smaller class; 0 for none).
pub fn majority(classes: impl IntoIterator<Item = usize>) -> usize {
    let mut counts = [0usize; 3];
    for c in classes {
        counts[c.min(2)] += 1;
    }
    (0..3)
        .max_by_key(|&k| (counts[k], std::cmp::Reverse(k)))
        .unwrap_or(0)
}

/// How the procedure's labels agree with a reference's on the same patches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Which brain, and against what.
    pub what: String,
    /// Patches compared.
    pub patches: usize,
    /// Fraction of patches with the same label.
    pub accuracy: f64,
    /// Cohen's kappa (agreement beyond what the two label frequencies give by chance).
    pub kappa: f64,
    /// Counts, rows the reference's class, columns the procedure's ([`SEGMENTS`] order).
    pub confusion: Vec<Vec<usize>>,
    /// The procedure's intensity thresholds on this brain (CSF/grey, grey/white).
    pub thresholds: [f64; 2],
}

/// Agreement of `labels` with `reference` (same length) over `classes` classes.
pub fn agreement(
    what: &str,
    reference: &[usize],
    labels: &[usize],
    classes: usize,
    thresholds: [f64; 2],
) -> Agreement {
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&r, &l) in reference.iter().zip(labels) {
        if r < classes && l < classes {
            confusion[r][l] += 1;
        }
    }
    let n: usize = confusion.iter().flatten().sum();
    let nf = n.max(1) as f64;
    let observed = (0..classes).map(|k| confusion[k][k]).sum::<usize>() as f64 / nf;
    let expected = (0..classes)
        .map(|k| {
            let row: usize = confusion[k].iter().sum();
            let col: usize = confusion.iter().map(|r| r[k]).sum();
            row as f64 * col as f64
        })
        .sum::<f64>()
        / (nf * nf);
    let kappa = if expected < 1.0 {
        (observed - expected) / (1.0 - expected)
    } else {
        1.0
    };
    Agreement {
        what: what.to_string(),
        patches: n,
        accuracy: observed,
        kappa,
        confusion,
        thresholds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated groups: the centres are the group means, the thresholds split them.
    #[test]
    fn three_means_finds_separated_groups() {
        let mut v = Vec::new();
        for (centre, n) in [(10.0f32, 50), (50.0, 200), (90.0, 100)] {
            for i in 0..n {
                v.push(centre + (i % 5) as f32 - 2.0);
            }
        }
        let c = three_means(&v).unwrap();
        for (got, want) in c.iter().zip([10.0, 50.0, 90.0]) {
            assert!((got - want).abs() < 1e-9, "{c:?}");
        }
        let t = thresholds(c);
        assert_eq!(t, [30.0, 70.0]);
        assert_eq!(class_of(29.9, t), 0);
        assert_eq!(class_of(30.0, t), 1);
        assert_eq!(class_of(70.0, t), 2);
        // Scale invariance: the same brain on another intensity scale gets the same classes.
        let scaled: Vec<f32> = v.iter().map(|x| x * 2.5 + 7.0).collect();
        let t2 = thresholds(three_means(&scaled).unwrap());
        for (a, b) in v.iter().zip(&scaled) {
            assert_eq!(class_of(*a, t), class_of(*b, t2));
        }
        assert_eq!(three_means(&[]), None);
    }

    #[test]
    fn reference_and_majority() {
        assert_eq!(reference_class(0.1, 0.1), 0);
        assert_eq!(reference_class(0.6, 0.3), 1);
        assert_eq!(reference_class(0.2, 0.7), 2);
        // Ties go to the darker class.
        assert_eq!(reference_class(0.5, 0.5), 1);
        assert_eq!(majority([2, 2, 1, 1, 0]), 1);
        assert_eq!(majority([2, 2, 2, 0]), 2);
        assert_eq!(majority([]), 0);
    }

    /// Perfect agreement is kappa 1; labels independent of the reference are kappa about 0; a
    /// hand-worked table.
    #[test]
    fn kappa_on_known_tables() {
        let r = [0, 1, 2, 1, 0, 2];
        let a = agreement("x", &r, &r, 3, [0.0, 1.0]);
        assert_eq!(a.accuracy, 1.0);
        assert!((a.kappa - 1.0).abs() < 1e-12);
        // Rows (reference) [[2, 1], [1, 2]]: observed 4/6, expected (3·3 + 3·3)/36 = 1/2,
        // kappa = (2/3 - 1/2) / (1/2) = 1/3.
        let reference = [0, 0, 0, 1, 1, 1];
        let labels = [0, 0, 1, 0, 1, 1];
        let a = agreement("x", &reference, &labels, 2, [0.0, 1.0]);
        assert!((a.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((a.kappa - 1.0 / 3.0).abs() < 1e-12, "{}", a.kappa);
        assert_eq!(a.confusion, vec![vec![2, 1], vec![1, 2]]);
    }
}
