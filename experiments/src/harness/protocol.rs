//! The protocol every study follows: paired seeds, one step budget, a learning-rate sweep per
//! cell scored on validation data only, then one final run per seed at the chosen rate.

use std::fmt::Debug;

use super::record::{LrChoice, RunRecord};

/// Seed of the sweep runs: data order, training subset, head and adapter init. Distinct from
/// the final runs' seeds `0..n`.
pub const SWEEP_SEED: u64 = 1_000_000;

/// Sweep or final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Learning-rate selection on validation data.
    Sweep,
    /// A reported run.
    Final,
}

impl Phase {
    /// `sweep` or `final`, as in run ids and the records' `phase`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Sweep => "sweep",
            Phase::Final => "final",
        }
    }
}

/// What a record says about the run it comes from, besides its numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// The task and data setting, e.g. `mnist-1000`.
    pub task: String,
    /// The method, e.g. `full`, `locon`.
    pub method: String,
    /// Adapter rank asked for.
    pub rank: Option<usize>,
    /// The adapters' forward form, `None` for methods without adapters.
    pub forward: Option<String>,
}

/// One cell of a study: what one learning-rate sweep covers (its final runs may add twins of
/// it, see [`super::Experiment::finals`]).
pub trait Cell: Clone + Debug {
    /// The run id's middle part, unique per cell within a study, e.g. `mnist-500/locon/r4/weight`.
    /// Ids are `{phase}/{key}/s{seed}`, with `/lr{lr}` after a sweep run's.
    fn key(&self) -> String;
    /// Task, method, rank and form of the cell's records.
    fn labels(&self) -> Labels;
}

/// The protocol numbers of a plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Protocol<'a> {
    /// Seeds of the final runs, paired: seed k gives every method the same data order,
    /// training subset (or split) and head init.
    pub seeds: &'a [u64],
    /// Optimizer steps of every final run, the same for every method.
    pub steps: usize,
    /// Sweep runs train for this fraction of `steps` (at least one step).
    pub sweep_fraction: f64,
    /// How many times a sweep may extend its grid by one rate past the edge its best rate sits
    /// at ([`extend`]); 0 keeps the grid as given.
    pub grid_extensions: usize,
}

impl Protocol<'_> {
    /// Steps of a sweep run.
    pub fn sweep_steps(&self) -> usize {
        ((self.steps as f64 * self.sweep_fraction).ceil() as usize).clamp(1, self.steps.max(1))
    }
}

/// One run of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec<C> {
    /// Sweep or final.
    pub phase: Phase,
    /// The cell.
    pub cell: C,
    /// Seed.
    pub seed: u64,
    /// Learning rate.
    pub lr: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// How the rate was chosen (final runs).
    pub lr_choice: Option<LrChoice>,
}

impl<C: Cell> Spec<C> {
    /// The unique key of the run in `runs.jsonl`.
    pub fn id(&self) -> String {
        let base = format!("{}/{}/s{}", self.phase.name(), self.cell.key(), self.seed);
        match self.phase {
            Phase::Sweep => format!("{base}/lr{}", self.lr),
            Phase::Final => base,
        }
    }

    /// The task name of the run.
    pub fn task(&self) -> String {
        self.cell.labels().task
    }

    /// A short label for progress bars: task, method, rank, seed.
    pub fn label(&self) -> String {
        let l = self.cell.labels();
        format!(
            "{} {} r{} s{}",
            l.task,
            l.method,
            l.rank.map_or("-".into(), |r| r.to_string()),
            self.seed
        )
    }
}

/// The sweep runs of a cell: one per rate of its grid, seed [`SWEEP_SEED`], scored on the
/// validation split.
pub fn sweep_specs<C: Cell>(protocol: &Protocol<'_>, cell: &C, grid: &[f64]) -> Vec<Spec<C>> {
    grid.iter()
        .map(|&lr| Spec {
            phase: Phase::Sweep,
            cell: cell.clone(),
            seed: SWEEP_SEED,
            lr,
            steps: protocol.sweep_steps(),
            lr_choice: None,
        })
        .collect()
}

/// The final runs at the chosen rate: for each seed, each of `cells` (a cell and its twins).
pub fn final_specs<C: Cell>(
    protocol: &Protocol<'_>,
    cells: &[C],
    choice: &(f64, LrChoice),
) -> Vec<Spec<C>> {
    let mut out = Vec::new();
    for &seed in protocol.seeds {
        for cell in cells {
            out.push(Spec {
                phase: Phase::Final,
                cell: cell.clone(),
                seed,
                lr: choice.0,
                steps: protocol.steps,
                lr_choice: Some(choice.1.clone()),
            });
        }
    }
    out
}

/// The grid one rate longer on the side where `choice` sits at the edge, the new rate one
/// geometric step beyond it (the ratio of the two rates at that end). `None` when the choice
/// is not at an edge, the grid has fewer than two rates (no sweep), or a rate would not be a
/// finite positive number. The grid stays in its order (ascending grids stay ascending).
pub fn extend(grid: &[f64], choice: &LrChoice, chosen: f64) -> Option<Vec<f64>> {
    if !choice.at_grid_edge || grid.len() < 2 {
        return None;
    }
    let (first, last) = (grid[0], grid[grid.len() - 1]);
    let mut out = grid.to_vec();
    if chosen == first {
        out.insert(0, first * (first / grid[1]));
    } else if chosen == last {
        out.push(last * (last / grid[grid.len() - 2]));
    } else {
        return None;
    }
    // Three significant digits, so ids read `lr0.0009`, not `lr0.0008999999999999998`.
    let out: Vec<f64> = out
        .iter()
        .map(|v| format!("{v:.2e}").parse().unwrap_or(*v))
        .collect();
    out.iter().all(|v| v.is_finite() && *v > 0.0).then_some(out)
}

/// The rate a sweep chose, from its runs' records in grid order: the best validation accuracy
/// (ties: the lower last training loss, then the first in the grid; a diverged or missing run
/// counts as the worst), flagged when
/// at the edge of the grid.
pub fn choose(grid: &[f64], sweep: &[Option<&RunRecord>], sweep_steps: usize) -> (f64, LrChoice) {
    let val: Vec<f64> = (0..grid.len())
        .map(|i| {
            sweep
                .get(i)
                .copied()
                .flatten()
                .filter(|r| !r.diverged && !r.val_accuracy.is_nan())
                .map_or(f64::NEG_INFINITY, |r| r.val_accuracy)
        })
        .collect();
    // Ties in validation accuracy (a probe still predicting the majority class at every rate,
    // say) go to the lower final training loss, then to the first in the grid.
    let loss: Vec<f64> = (0..grid.len())
        .map(|i| {
            sweep
                .get(i)
                .copied()
                .flatten()
                .and_then(|r| r.loss_curve.last().copied())
                .filter(|l| l.is_finite())
                .unwrap_or(f64::INFINITY)
        })
        .collect();
    let mut best = 0;
    for i in 0..val.len() {
        if val[i] > val[best] || (val[i] == val[best] && loss[i] < loss[best]) {
            best = i;
        }
    }
    (
        grid.get(best).copied().unwrap_or(1e-3),
        LrChoice {
            at_grid_edge: grid.len() > 1 && (best == 0 || best + 1 == grid.len()),
            grid: grid.to_vec(),
            val_accuracy: val,
            steps: sweep_steps,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::record::tests::record;

    #[derive(Debug, Clone)]
    struct C(usize);

    impl Cell for C {
        fn key(&self) -> String {
            format!("t/m/r{}", self.0)
        }
        fn labels(&self) -> Labels {
            Labels {
                task: "t".into(),
                method: "m".into(),
                rank: Some(self.0),
                forward: None,
            }
        }
    }

    #[test]
    fn specs_ids_and_choice() {
        let seeds = [0, 1, 2];
        let p = Protocol {
            seeds: &seeds,
            steps: 9,
            sweep_fraction: 0.5,
            grid_extensions: 0,
        };
        assert_eq!(p.sweep_steps(), 5);
        let sweep = sweep_specs(&p, &C(4), &[1e-3, 1e-2]);
        assert_eq!(sweep[1].id(), "sweep/t/m/r4/s1000000/lr0.01");
        assert_eq!(sweep[0].steps, 5);
        // The middle rate is best; a diverged run never wins.
        let (a, b, mut c) = (
            record("a", "m", 0, 0.5),
            record("b", "m", 0, 0.7),
            record("c", "m", 0, 0.9),
        );
        c.diverged = true;
        let (lr, choice) = choose(&[1.0, 2.0, 3.0], &[Some(&a), Some(&b), Some(&c)], 5);
        assert_eq!(lr, 2.0);
        assert!(!choice.at_grid_edge);
        assert_eq!(choice.val_accuracy[2], f64::NEG_INFINITY);
        // A missing run counts as the worst; the first rate then sits at the edge.
        // Equal validation accuracy: the lower last training loss wins.
        let (mut d, mut e) = (record("d", "m", 0, 0.5), record("e", "m", 0, 0.5));
        d.loss_curve = vec![0.9];
        e.loss_curve = vec![0.4];
        assert_eq!(choose(&[1.0, 2.0], &[Some(&d), Some(&e)], 5).0, 2.0);
        let (lr, choice) = choose(&[1.0, 2.0], &[Some(&a), None], 5);
        assert_eq!((lr, choice.at_grid_edge), (1.0, true));
        // At the low edge the grid grows one geometric step below it; inside, it stays.
        assert_eq!(extend(&[1.0, 2.0], &choice, 1.0), Some(vec![0.5, 1.0, 2.0]));
        let low = choose(&[3e-4, 1e-3], &[Some(&b), Some(&a)], 5);
        assert_eq!(
            extend(&[3e-4, 1e-3], &low.1, low.0),
            Some(vec![9e-5, 3e-4, 1e-3])
        );
        let high = choose(&[1.0, 2.0], &[Some(&a), Some(&b)], 5);
        assert_eq!(
            extend(&[1.0, 2.0], &high.1, high.0),
            Some(vec![1.0, 2.0, 4.0])
        );
        let inside = choose(&[1.0, 2.0, 3.0], &[Some(&a), Some(&b), Some(&a)], 5);
        assert_eq!(extend(&[1.0, 2.0, 3.0], &inside.1, inside.0), None);
        let finals = final_specs(&p, &[C(4), C(5)], &(lr, choice));
        assert_eq!(finals.len(), 6);
        assert_eq!(finals[1].id(), "final/t/m/r5/s0");
        assert!(finals.iter().all(|s| s.lr == 1.0 && s.steps == 9));
    }
}
