//! The brain task's baselines, which train nothing: `majority` (the most frequent training
//! class everywhere) and `position-1nn` (the label of the nearest training patch centre: where
//! a patch is, not what it shows).

use super::plan::Plan;
use super::split::BrainData;
use crate::harness::record::{RecordBuilder, RunHead, RunRecord};
use crate::harness::{Labels, Phase};
use crate::train::{Metric, confusion};

/// Predict the most frequent training class everywhere (ties: the smaller class).
pub fn majority(train: &[usize], n_test: usize) -> Vec<usize> {
    let mut counts = vec![0usize; train.iter().copied().max().map_or(0, |m| m + 1)];
    for &l in train {
        counts[l] += 1;
    }
    let best = (0..counts.len())
        .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
        .unwrap_or(0);
    vec![best; n_test]
}

/// Position only: the label of the nearest training patch centre (Euclidean, mm).
pub fn nearest_centre(train: &[[f32; 3]], labels: &[usize], test: &[[f32; 3]]) -> Vec<usize> {
    test.iter()
        .map(|t| {
            let d = |c: &[f32; 3]| (0..3).map(|k| (c[k] - t[k]).powi(2)).sum::<f32>();
            train
                .iter()
                .zip(labels)
                .min_by(|a, b| d(a.0).total_cmp(&d(b.0)))
                .map_or(0, |(_, &l)| l)
        })
        .collect()
}

/// The records of both baselines on the test hemisphere (ids `final/<task>/<name>`, steps 0).
pub fn records(plan: &Plan, data: &BrainData) -> Vec<RunRecord> {
    let maj = majority(&data.train.labels, data.test.len());
    let pos = nearest_centre(&data.train_centres, &data.train.labels, &data.test_centres);
    let task = plan.task();
    [("majority", maj), ("position-1nn", pos)]
        .into_iter()
        .map(|(name, pred)| {
            let labels = &data.test.labels;
            let per_class = confusion(&pred, labels, plan.classes().len());
            let head = RunHead {
                id: format!("final/{task}/{name}"),
                phase: Phase::Final,
                labels: Labels {
                    task: task.into(),
                    method: name.into(),
                    rank: None,
                    forward: None,
                },
                seed: 0,
                steps: 0,
                lr: 0.0,
                lr_choice: None,
            };
            RecordBuilder::new(head)
                .data(data.train.len(), 0, 0)
                .tested(
                    data.test.len(),
                    Metric::Balanced.score(&pred, labels),
                    Some(per_class),
                )
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines() {
        assert_eq!(majority(&[2, 1, 2, 0], 3), vec![2, 2, 2]);
        // Ties go to the smaller class.
        assert_eq!(majority(&[1, 0], 1), vec![0]);
        let train = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]];
        assert_eq!(
            nearest_centre(&train, &[3, 5], &[[9.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
            vec![5, 3]
        );
    }
}
