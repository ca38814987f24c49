//! The summary statistics of a report: one row per (task, method, rank, form) of the final
//! runs, with its mean, 95% interval ([`Intervals`]) and paired difference to the reference method.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::harness::record::RunRecord;
use crate::harness::stats::{
    Estimate, corrected_estimate, corrected_paired_difference, estimate, paired_difference,
};

/// One entry of the summary: the final runs of a (task, method, rank, forward) over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Task.
    pub task: String,
    /// Method.
    pub method: String,
    /// Rank asked for.
    pub rank: Option<usize>,
    /// `weight`, `bypass`, `auto`, or `None` for methods without adapters.
    pub forward: Option<String>,
    /// The cell ([`RunRecord::cell_key`]): what tells apart two rows of one method and rank
    /// (one type at two budgets).
    #[serde(default)]
    pub cell: String,
    /// Mean test accuracy.
    pub mean: f64,
    /// Its 95% confidence interval (Student t over seeds); `None` with one seed.
    pub ci95: Option<[f64; 2]>,
    /// Seeds.
    pub n: usize,
    /// Paired difference (this method minus the reference, same seeds) with its 95% CI; `None`
    /// for the reference itself or without a reference.
    pub diff_vs_full: Option<Estimate>,
    /// Runs stopped by a NaN or infinite loss (their accuracy is their last good checkpoint's).
    pub diverged: usize,
    /// Trainable parameters (mean over seeds; the same for every seed).
    pub trainable_params: f64,
    /// Trainable parameters / the base network's own parameters.
    pub trainable_share: f64,
    /// Adapter parameters / the parameters of the conv weights they adapt.
    pub adapter_share_of_adapted: Option<f64>,
    /// Learning rates used (one unless the sweep was rerun).
    pub lr: Vec<f64>,
    /// Whether the chosen rate sits at the edge of its grid.
    pub lr_at_grid_edge: bool,
    /// Optimizer steps.
    pub steps: usize,
    /// Mean training seconds.
    pub train_seconds: f64,
    /// Mean steps per second.
    pub steps_per_second: f64,
    /// Largest peak resident memory.
    pub peak_memory_bytes: Option<u64>,
    /// Layers whose rank was capped: `path: rank r (asked R): why`.
    pub capped: Vec<String>,
}

type Key = (usize, usize, Option<usize>, Option<String>, String);

/// The summary of the final runs, in first-seen order of tasks and methods, then rank and
/// forward. `reference` names the method every other is paired against (same task, same seed).
pub fn summarize(records: &[RunRecord], reference: &str) -> Vec<SummaryRow> {
    summarize_with(records, reference, Intervals::Student)
}

/// How a summary's 95% intervals are computed over a method's final runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intervals {
    /// Student t over independent seeds.
    #[default]
    Student,
    /// Nadeau–Bengio corrected t over repeated splits of one data set
    /// ([`crate::harness::stats::corrected_estimate`]): each run's training part (training plus
    /// validation examples) against its test fold.
    NadeauBengio,
}

/// [`summarize`] with the intervals of `intervals`.
pub fn summarize_with(
    records: &[RunRecord],
    reference: &str,
    intervals: Intervals,
) -> Vec<SummaryRow> {
    let finals: Vec<&RunRecord> = records.iter().filter(|r| r.phase == "final").collect();
    let mut tasks: Vec<&str> = Vec::new();
    let mut methods: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<Key, Vec<&RunRecord>> = BTreeMap::new();
    for r in &finals {
        if !tasks.contains(&r.task.as_str()) {
            tasks.push(&r.task);
        }
        if !methods.contains(&r.method.as_str()) {
            methods.push(&r.method);
        }
        let t = tasks.iter().position(|t| *t == r.task).unwrap_or(0);
        let m = methods.iter().position(|m| *m == r.method).unwrap_or(0);
        groups
            .entry((t, m, r.rank, r.forward.clone(), r.cell_key()))
            .or_default()
            .push(r);
    }
    let seeds_of = |runs: &[&RunRecord]| -> Vec<(u64, f64)> {
        runs.iter().map(|r| (r.seed, r.test_accuracy)).collect()
    };
    let reference_runs = |task: &str| -> Vec<(u64, f64)> {
        seeds_of(
            &finals
                .iter()
                .filter(|r| r.task == task && r.method == reference && r.forward.is_none())
                .copied()
                .collect::<Vec<_>>(),
        )
    };
    groups
        .into_values()
        .map(|mut runs| {
            runs.sort_by_key(|r| r.seed);
            let first = runs[0];
            let accs: Vec<f64> = runs.iter().map(|r| r.test_accuracy).collect();
            // One split's sizes, from the reference's runs when there are some (every method
            // runs on the same splits; a probe on cached views counts rows, not images).
            let sized = finals
                .iter()
                .find(|r| r.task == first.task && r.method == reference && r.forward.is_none())
                .map_or(first, |r| *r);
            let sizes = (
                sized.train_examples + sized.val_examples,
                sized.test_examples,
            );
            let e = match intervals {
                Intervals::Student => estimate(&accs),
                Intervals::NadeauBengio => corrected_estimate(&accs, sizes.0, sizes.1),
            };
            let mean = |f: &dyn Fn(&RunRecord) -> f64| {
                runs.iter().map(|&r| f(r)).sum::<f64>() / runs.len() as f64
            };
            let mut lr: Vec<f64> = Vec::new();
            for r in &runs {
                if !lr.contains(&r.lr) {
                    lr.push(r.lr);
                }
            }
            let mut capped: Vec<String> = Vec::new();
            for l in runs.iter().flat_map(|r| &r.layers) {
                if let Some(why) = &l.capped {
                    let text = format!(
                        "{}: rank {} (asked {}): {why}",
                        l.path, l.rank, l.requested_rank
                    );
                    if !capped.contains(&text) {
                        capped.push(text);
                    }
                }
            }
            let is_reference = first.method == reference && first.forward.is_none();
            // Baselines that train nothing (steps 0: majority, position-only) are constants,
            // not seeds to pair; the brain report compares every network with them instead.
            let diff = if is_reference || first.steps == 0 {
                None
            } else {
                let refs = reference_runs(&first.task);
                (!refs.is_empty()).then(|| match intervals {
                    Intervals::Student => paired_difference(&seeds_of(&runs), &refs),
                    Intervals::NadeauBengio => {
                        corrected_paired_difference(&seeds_of(&runs), &refs, sizes.0, sizes.1)
                    }
                })
            };
            SummaryRow {
                task: first.task.clone(),
                method: first.method.clone(),
                rank: first.rank,
                forward: first.forward.clone(),
                cell: first.cell_key(),
                mean: e.mean,
                ci95: e.ci95,
                n: e.n,
                diff_vs_full: diff,
                diverged: runs.iter().filter(|r| r.diverged).count(),
                trainable_params: mean(&|r| r.trainable_params as f64),
                trainable_share: mean(&|r| r.trainable_share),
                adapter_share_of_adapted: first
                    .adapter_share_of_adapted
                    .map(|_| mean(&|r| r.adapter_share_of_adapted.unwrap_or(f64::NAN))),
                lr,
                lr_at_grid_edge: runs
                    .iter()
                    .any(|r| r.lr_choice.as_ref().is_some_and(|c| c.at_grid_edge)),
                steps: first.steps,
                train_seconds: mean(&|r| r.train_seconds),
                steps_per_second: mean(&|r| r.steps_per_second),
                peak_memory_bytes: runs.iter().filter_map(|r| r.peak_memory_bytes).max(),
                capped,
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::harness::record::tests::record;
    use crate::report::tables::{verdicts, within_margin};

    pub(crate) fn adapter(seed: u64, acc: f64, rank: usize, share: f64) -> RunRecord {
        let mut r = record(&format!("locon{rank}-{seed}"), "locon", seed, acc);
        r.rank = Some(rank);
        r.forward = Some("weight".into());
        r.trainable_share = share;
        r.adapter_share_of_adapted = Some(share * 2.0);
        r
    }

    /// Rows are cells: one type at two budgets with the same rank label stays two rows, each
    /// paired with the reference once per seed (merged, n would double and the CI shrink).
    #[test]
    fn one_row_per_cell() {
        let mut runs = Vec::new();
        for seed in 0..3u64 {
            runs.push(record(&format!("final/t/full/s{seed}"), "full", seed, 0.8));
            for (b, acc) in [("b1%", 0.7), ("b3%", 0.75)] {
                let mut r = record(
                    &format!("final/t/tucker2/{b}/s{seed}"),
                    "tucker2",
                    seed,
                    acc,
                );
                r.rank = Some(3);
                r.forward = Some("auto".into());
                runs.push(r);
            }
        }
        let summary = summarize(&runs, "full");
        let rows: Vec<_> = summary.iter().filter(|r| r.method == "tucker2").collect();
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter()
                .all(|r| r.n == 3 && r.diff_vs_full.is_some_and(|d| d.n == 3))
        );
        assert_eq!(rows[0].cell, "t/tucker2/b1%");
        assert!((rows[1].mean - 0.75).abs() < 1e-12);
    }

    /// full: 0.90, 0.80, 0.85 over seeds 0..3; locon r4: full - 0.02 on every seed, so the paired
    /// difference is exactly -0.02 with a zero-width CI (worse), although the unpaired CIs
    /// overlap. locon r8 differs by -0.01, +0.01, 0: mean 0, CI ±t_{0.975,2}·0.01/sqrt(3) =
    /// ±0.024841.
    #[test]
    fn summary_pairs_by_seed() {
        let full = [0.9, 0.8, 0.85];
        let mut runs: Vec<RunRecord> = full
            .iter()
            .enumerate()
            .map(|(s, &a)| record(&format!("full-{s}"), "full", s as u64, a))
            .collect();
        for (s, &a) in full.iter().enumerate().rev() {
            runs.push(adapter(s as u64, a - 0.02, 4, 0.05));
        }
        for (s, d) in [-0.01, 0.01, 0.0].iter().enumerate() {
            runs.push(adapter(s as u64, full[s] + d, 8, 0.1));
        }
        let mut sweep = record("sweep", "full", 99, 0.1);
        sweep.phase = "sweep".into();
        runs.push(sweep);
        let mut baseline = record("majority", "majority", 0, 0.1);
        baseline.steps = 0;
        runs.push(baseline);
        let summary = summarize(&runs, "full");
        assert_eq!(summary.len(), 4);
        assert_eq!(summary[3].method, "majority");
        assert_eq!(summary[3].diff_vs_full, None, "a baseline is not paired");
        let f = &summary[0];
        assert_eq!((f.method.as_str(), f.n), ("full", 3));
        assert!((f.mean - 0.85).abs() < 1e-12);
        assert_eq!(f.diff_vs_full, None);
        let r4 = summary.iter().find(|r| r.rank == Some(4)).unwrap();
        let d = r4.diff_vs_full.unwrap();
        assert!((d.mean + 0.02).abs() < 1e-9 && d.excludes(0.0));
        let r8 = summary.iter().find(|r| r.rank == Some(8)).unwrap();
        let [lo, hi] = r8.diff_vs_full.unwrap().ci95.unwrap();
        assert!(
            (hi - 0.024_841).abs() < 1e-5 && (lo + 0.024_841).abs() < 1e-5,
            "{lo} {hi}"
        );
        let text = verdicts(&summary, "full");
        assert!(
            text.contains("`locon` rank 4 (weight) on t: **worse** than `full` by 0.0200"),
            "{text}"
        );
        assert!(
            text.contains("No difference from `full` established (the paired 95% CI contains 0): `locon` rank 8 (weight) on t (+0.0000)"),
            "{text}"
        );
        let near = within_margin(&summary, &["locon".into()], 0.01, "full", "weight");
        assert!(near.contains("no adapter row is within 1 point"), "{near}");
        let near = within_margin(&summary, &["locon".into()], 0.03, "full", "weight");
        assert!(near.contains("`locon` rank 4 at 5.00%"), "{near}");
    }
}
