//! Repeated stratified k-fold splits for ELPV, paired across methods: every method of a study sees
//! the same folds. Strata are (defect class, cell type), 8 of them, so each fold keeps the class
//! balance (1,508 / 295 / 106 / 715) and the mono/poly mix. Validation is carved from the
//! training part only, stratified the same way; the test fold is never seen before the final run.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::data::elpv::CellType;

/// One split: indices into the data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Which repeat (0-based).
    pub repeat: usize,
    /// Which fold is the test fold (0-based).
    pub fold: usize,
    /// Training indices (validation removed).
    pub train: Vec<usize>,
    /// Validation indices, from the training part.
    pub val: Vec<usize>,
    /// Test indices: the held-out fold.
    pub test: Vec<usize>,
}

/// `repeats` × `folds` splits of the examples with these `labels` and `kinds`. Within each
/// stratum the examples are shuffled (seeded by `seed` and the repeat) and dealt to the folds in
/// turn, so fold sizes differ by at most one per stratum. From each training part, a stratified
/// `val_fraction` (rounded per stratum, at least one example of every stratum that has two or
/// more) becomes validation.
///
/// # Panics
/// Never for `folds >= 2` and `labels.len() == kinds.len()`; the caller checks both (the plan's
/// `check`).
pub fn stratified_folds(
    labels: &[usize],
    kinds: &[CellType],
    folds: usize,
    repeats: usize,
    val_fraction: f64,
    seed: u64,
) -> Vec<Split> {
    let strata = strata(labels, kinds);
    let mut out = Vec::with_capacity(folds * repeats);
    for repeat in 0..repeats {
        let mut rng = StdRng::seed_from_u64(
            seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(repeat as u64 + 1)),
        );
        // fold_of[i] for every example.
        let mut fold_of = vec![0usize; labels.len()];
        let mut offset = 0;
        let mut shuffled = strata.clone();
        for members in &mut shuffled {
            members.shuffle(&mut rng);
            for (j, &i) in members.iter().enumerate() {
                // Rotate the dealing start between strata so small strata do not all land in
                // fold 0.
                fold_of[i] = (j + offset) % folds;
            }
            offset += members.len();
        }
        for fold in 0..folds {
            let mut train = Vec::new();
            let mut val = Vec::new();
            let mut test = Vec::new();
            for members in &shuffled {
                let rest: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&i| fold_of[i] != fold)
                    .collect();
                test.extend(members.iter().copied().filter(|&i| fold_of[i] == fold));
                let n_val = if rest.len() >= 2 {
                    ((rest.len() as f64 * val_fraction).round() as usize).clamp(1, rest.len() - 1)
                } else {
                    0
                };
                // `rest` is already in shuffled order: its head is validation.
                val.extend(&rest[..n_val]);
                train.extend(&rest[n_val..]);
            }
            train.sort_unstable();
            val.sort_unstable();
            test.sort_unstable();
            out.push(Split {
                repeat,
                fold,
                train,
                val,
                test,
            });
        }
    }
    out
}

/// Example indices of each (class, type) stratum, in index order, non-empty strata only.
fn strata(labels: &[usize], kinds: &[CellType]) -> Vec<Vec<usize>> {
    let mut keys: Vec<(usize, CellType)> =
        labels.iter().copied().zip(kinds.iter().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.iter()
        .map(|&(l, k)| {
            (0..labels.len())
                .filter(|&i| labels[i] == l && kinds[i] == k)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (Vec<usize>, Vec<CellType>) {
        // The real class counts, types alternating.
        let counts = [1508, 295, 106, 715];
        let mut labels = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            labels.extend(std::iter::repeat_n(c, n));
        }
        let kinds = (0..labels.len())
            .map(|i| {
                if i % 5 < 2 {
                    CellType::Mono
                } else {
                    CellType::Poly
                }
            })
            .collect();
        (labels, kinds)
    }

    /// Test folds partition the data once per repeat; train, val and test are disjoint; every
    /// stratum is spread over the folds within one example; val is about the asked fraction.
    #[test]
    fn folds_partition_and_stratify() {
        let (labels, kinds) = data();
        let splits = stratified_folds(&labels, &kinds, 4, 3, 0.15, 7);
        assert_eq!(splits.len(), 12);
        for repeat in 0..3 {
            let mut seen = vec![0; labels.len()];
            for s in splits.iter().filter(|s| s.repeat == repeat) {
                for &i in &s.test {
                    seen[i] += 1;
                }
                let mut all: Vec<usize> = s
                    .train
                    .iter()
                    .chain(&s.val)
                    .chain(&s.test)
                    .copied()
                    .collect();
                all.sort_unstable();
                assert_eq!(
                    all,
                    (0..labels.len()).collect::<Vec<_>>(),
                    "split covers every example once"
                );
                let rest = s.train.len() + s.val.len();
                let frac = s.val.len() as f64 / rest as f64;
                assert!((frac - 0.15).abs() < 0.01, "val fraction {frac}");
                for class in 0..4 {
                    for kind in [CellType::Mono, CellType::Poly] {
                        let n = |set: &[usize]| {
                            set.iter()
                                .filter(|&&i| labels[i] == class && kinds[i] == kind)
                                .count()
                        };
                        let total = (0..labels.len())
                            .filter(|&i| labels[i] == class && kinds[i] == kind)
                            .count();
                        let t = n(&s.test) as f64;
                        assert!(
                            (t - total as f64 / 4.0).abs() <= 1.0,
                            "stratum {class}/{kind:?}: {t} of {total}"
                        );
                    }
                }
            }
            assert!(
                seen.iter().all(|&c| c == 1),
                "each example in exactly one test fold"
            );
        }
        // Repeats differ, and the same seed gives the same splits (pairing across methods).
        assert_ne!(splits[0].test, splits[4].test);
        assert_eq!(splits, stratified_folds(&labels, &kinds, 4, 3, 0.15, 7));
    }
}
