//! A study of one file, run through every step of the harness in seconds: a toy experiment
//! (no network: a run's accuracy is a formula of its method, rate and seed) swept, chosen on
//! validation data, run for every seed with a twin, stopped mid-way and resumed, killed for real
//! and resumed, truncated and resumed, sharded and merged, and reported; and the output dir's
//! lock, held by another process, refusing a second writer, and gone once that process is
//! killed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use experiments::error::{ExpError, Result};
use experiments::harness::record::{LrChoice, RecordBuilder, RunHead, RunRecord};
use experiments::harness::runlog::read_runs;
use experiments::harness::stats::corrected_paired_difference;
use experiments::harness::{
    self, Cell, ConfigOf, Env, Experiment, Labels, OutDir, Phase, Protocol, RunOptions, Shard, Spec,
};
use experiments::report::{Intervals, ReportSpec, SummaryRow};
use experiments::train::Trained;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// The study.

/// The plan: methods `ref` (the reference), `a` at two ranks (rank 2 also runs a `bypass` twin
/// in its finals), seeds, one rate grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Toy {
    seeds: Vec<u64>,
    steps: usize,
    sweep_fraction: f64,
    grid: Vec<f64>,
    ranks: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
struct ToyCell {
    method: &'static str,
    rank: Option<usize>,
    form: &'static str,
}

impl Cell for ToyCell {
    fn key(&self) -> String {
        format!(
            "toy/{}/r{}/{}",
            self.method,
            self.rank.map_or("-".into(), |r| r.to_string()),
            self.form
        )
    }

    fn labels(&self) -> Labels {
        Labels {
            task: "toy".into(),
            method: self.method.into(),
            rank: self.rank,
            forward: self.rank.map(|_| self.form.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Facts {
    train_examples: usize,
    test_examples: usize,
}

struct Context {
    /// Milliseconds each run sleeps (a child process that gets killed mid-way).
    slow_ms: u64,
}

thread_local! {
    /// Ids of the runs this thread ran, and a count after which runs fail (a stop mid-way).
    static RAN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static STOP_AFTER: RefCell<Option<usize>> = const { RefCell::new(None) };
    /// Whether `prepare` fails as it does when the data is missing.
    static NO_DATA: RefCell<bool> = const { RefCell::new(false) };
}

fn ran() -> Vec<String> {
    RAN.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// The rate that validates best: 1e-2 (the middle of the grid).
fn val_of(cell: &ToyCell, lr: f64, seed: u64) -> f64 {
    let bonus = match cell.method {
        "ref" => 0.2,
        _ => 0.1 * cell.rank.unwrap_or(0) as f64,
    };
    0.5 + bonus - 0.05 * (lr.log10() + 2.0).powi(2) + 0.001 * (seed % 7) as f64
}

impl Experiment for Toy {
    const NAME: &'static str = "toy";
    type Cell = ToyCell;
    type Facts = Facts;
    type Context = Context;

    fn check(&self) -> Result<()> {
        if self.seeds.is_empty() {
            return Err(ExpError::Input("--seeds 0: at least one seed".into()));
        }
        Ok(())
    }

    fn protocol(&self) -> Protocol<'_> {
        Protocol {
            seeds: &self.seeds,
            steps: self.steps,
            sweep_fraction: self.sweep_fraction,
            grid_extensions: 0,
        }
    }

    fn cells(&self) -> Vec<ToyCell> {
        let mut out = vec![ToyCell {
            method: "ref",
            rank: None,
            form: "dense",
        }];
        out.extend(self.ranks.iter().map(|&r| ToyCell {
            method: "a",
            rank: Some(r),
            form: "weight",
        }));
        out
    }

    fn lr_grid(&self, _cell: &ToyCell) -> &[f64] {
        &self.grid
    }

    fn finals(&self, cell: &ToyCell) -> Vec<ToyCell> {
        let mut out = vec![cell.clone()];
        if cell.rank == Some(2) {
            out.push(ToyCell {
                form: "bypass",
                ..cell.clone()
            });
        }
        out
    }

    fn prepare(&self, env: &Env<'_>) -> Result<(Context, Facts)> {
        if NO_DATA.with(|f| *f.borrow()) {
            return Err(ExpError::Input(format!(
                "missing data file {}/toy.bin; fetch it first",
                env.data.display()
            )));
        }
        let slow_ms = std::env::var("TOY_SLOW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let facts = Facts {
            train_examples: 800,
            test_examples: 200,
        };
        Ok((Context { slow_ms }, facts))
    }

    fn baselines(&self, _cx: &Context) -> Result<Vec<RunRecord>> {
        let head = RunHead {
            id: "final/toy/chance".into(),
            phase: Phase::Final,
            labels: Labels {
                task: "toy".into(),
                method: "chance".into(),
                rank: None,
                forward: None,
            },
            seed: 0,
            steps: 0,
            lr: 0.0,
            lr_choice: None,
        };
        Ok(vec![
            RecordBuilder::new(head)
                .data(800, 0, 0)
                .tested(200, 0.1, None)
                .build(),
        ])
    }

    fn run(&self, cx: &Context, spec: &Spec<ToyCell>) -> Result<RunRecord> {
        let done = RAN.with(|r| r.borrow().len());
        if STOP_AFTER.with(|s| s.borrow().is_some_and(|n| done >= n)) {
            return Err(ExpError::Input("stopped mid-way".into()));
        }
        std::thread::sleep(Duration::from_millis(cx.slow_ms));
        RAN.with(|r| r.borrow_mut().push(spec.id()));
        let val = val_of(&spec.cell, spec.lr, spec.seed);
        let trained = Trained {
            model: (),
            loss_curve: vec![1.0, 0.5],
            val_curve: vec![val - 0.01, val],
            eval_steps: vec![spec.steps / 2, spec.steps],
            val_score: val,
            best_step: spec.steps,
            steps_done: spec.steps,
            diverged: false,
            seconds: 0.01,
        };
        let rank = spec.cell.rank.unwrap_or(0);
        let mut record = RecordBuilder::new(spec.head())
            .data(800, 100, 16)
            .params(10 + 10 * rank, 100, vec![])
            .trained(&trained);
        if spec.phase == Phase::Final {
            record = record.tested(200, val - 0.02, None);
        }
        Ok(record.build())
    }

    fn report(&self, _config: &ConfigOf<Toy>) -> ReportSpec {
        ReportSpec {
            title: "toy: a study of one file".into(),
            intro: "The toy study's design, in its own words.\n\n".into(),
            reference: "ref".into(),
            variants: vec!["a".into()],
            break_even_share: 1.0,
            tasks: vec!["toy".into()],
            intervals: Intervals::Student,
            plotted_form: "weight".into(),
        }
    }

    /// Repeated splits: each seed's paired difference to `ref` with the Nadeau–Bengio
    /// corrected interval.
    fn sections(
        &self,
        config: &ConfigOf<Toy>,
        _summary: &[SummaryRow],
        records: &[RunRecord],
    ) -> String {
        let of = |method: &str, form: Option<&str>| -> Vec<(u64, f64)> {
            records
                .iter()
                .filter(|r| {
                    r.phase == "final"
                        && r.method == method
                        && r.rank.is_none_or(|k| k == 1)
                        && r.forward.as_deref() == form
                })
                .map(|r| (r.seed, r.test_accuracy))
                .collect()
        };
        let d = corrected_paired_difference(
            &of("a", Some("weight")),
            &of("ref", None),
            config.facts.train_examples,
            config.facts.test_examples,
        );
        format!(
            "\n## Corrected for overlapping splits\n\n`a` rank 1 minus `ref`: {:+.4}, Nadeau–Bengio 95% CI {:?} over {} splits.\n",
            d.mean, d.ci95, d.n
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn plan() -> Toy {
    Toy {
        seeds: vec![0, 1, 2],
        steps: 10,
        sweep_fraction: 0.5,
        grid: vec![1e-3, 1e-2, 1e-1],
        ranks: vec![1, 2],
    }
}

fn root() -> PathBuf {
    std::env::temp_dir().join(format!("harness-study-{}", std::process::id()))
}

fn fresh(name: &str) -> PathBuf {
    let dir = root().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(plan: &Toy, out: &Path, shard: Shard) -> Result<()> {
    let device = Device::flex();
    let env = Env {
        data: Path::new("no-data"),
        cache: Path::new("no-cache"),
        device: &device,
        device_name: "cpu",
    };
    let options = RunOptions {
        shard,
        prepare_only: false,
    };
    harness::run(plan, &env, out, options)
}

/// The ids the plan promises: the baseline, then every cell's sweep and finals (the rate does
/// not enter a final run's id).
fn plan_ids(plan: &Toy) -> BTreeSet<String> {
    let choice = (
        1.0,
        LrChoice {
            grid: vec![],
            val_accuracy: vec![],
            at_grid_edge: false,
            steps: 1,
        },
    );
    let mut ids: BTreeSet<String> = ["final/toy/chance".to_string()].into();
    for c in plan.cells() {
        ids.extend(harness::sweep_specs(plan, &c).iter().map(Spec::id));
        ids.extend(harness::final_specs(plan, &c, &choice).iter().map(Spec::id));
    }
    ids
}

fn records(dir: &Path) -> Vec<RunRecord> {
    read_runs(&dir.join("runs.jsonl")).unwrap()
}

fn ids(records: &[RunRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

fn json(records: &[RunRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect()
}

/// Start this test binary as a child process in `mode` on `dir` (see [`child_process`]).
fn child(mode: &str, dir: &Path, slow_ms: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TOY_CHILD", mode)
        .env("TOY_OUT", dir)
        .env("TOY_SLOW_MS", slow_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Not a test of its own: the body of the child processes. Without `TOY_CHILD` it does
/// nothing. `hold`: take the dir's lock, say so (libtest has already printed the test's name
/// on that line), and sleep until killed. `run`: run the whole
/// plan slowly into the dir.
#[test]
fn child_process() {
    let (Ok(mode), Ok(dir)) = (std::env::var("TOY_CHILD"), std::env::var("TOY_OUT")) else {
        return;
    };
    let dir = PathBuf::from(dir);
    match mode.as_str() {
        "hold" => {
            let _lock = OutDir::open(&dir).unwrap();
            println!("locked");
            std::thread::sleep(Duration::from_secs(60));
        }
        "run" => run(&plan(), &dir, Shard::default()).unwrap(),
        other => panic!("unknown child mode {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The harness's steps.

#[test]
fn sweep_choice_finals_and_report() {
    let out = fresh("whole");
    let plan = plan();
    run(&plan, &out, Shard::default()).unwrap();
    let recs = records(&out);
    assert_eq!(ids(&recs), plan_ids(&plan), "every planned run, once");
    assert_eq!(
        ran().len(),
        recs.len() - 1,
        "every run but the baseline ran here"
    );
    // 3 cells x 3 rates of sweep at half the budget; finals at the rate that validated best
    // (the middle one), never chosen by test accuracy, with the grid's scores recorded.
    for r in &recs {
        match r.phase.as_str() {
            "sweep" => {
                assert_eq!(r.steps, 5, "{}", r.id);
                assert!(r.test_accuracy.is_nan() && r.test_examples == 0, "{}", r.id);
            }
            _ if r.method == "chance" => assert_eq!(r.steps, 0),
            _ => {
                assert_eq!((r.steps, r.lr), (10, 1e-2), "{}", r.id);
                let choice = r.lr_choice.as_ref().unwrap();
                assert_eq!(choice.grid, plan.grid);
                assert!(!choice.at_grid_edge && choice.steps == 5);
                assert!(choice.val_accuracy[1] > choice.val_accuracy[0]);
                assert_eq!(r.test_examples, 200);
            }
        }
        // Every record says where it ran.
        let m = r.machine.as_ref().unwrap();
        assert!(m.threads >= 1 && m.logical_cpus >= 1, "{m:?}");
    }
    // The twin runs every seed, at its cell's rate.
    let twins = recs
        .iter()
        .filter(|r| r.forward.as_deref() == Some("bypass"))
        .count();
    assert_eq!(twins, plan.seeds.len());

    let config: ConfigOf<Toy> = harness::outdir::read_config(&out).unwrap();
    assert_eq!(
        (config.plan, config.experiment.as_str()),
        (plan.clone(), "toy")
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "# toy: a study of one file",
        "in its own words",
        "Δ vs `ref`",
        "curves-toy.svg",
        "Forward forms",
        "Corrected for overlapping splits",
        "over 3 splits",
        "accuracy-vs-share-toy.svg",
    ] {
        assert!(report.contains(needle), "{needle}: {report}");
    }
    assert!(out.join("accuracy-vs-share-toy.svg").is_file());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["runs"].as_array().unwrap().len(), recs.len());
    assert_eq!(results["experiment"], "toy");

    // A rerun runs nothing and keeps every record.
    run(&plan, &out, Shard::default()).unwrap();
    assert!(ran().is_empty());
    assert_eq!(json(&records(&out)), json(&recs));
}

/// Stopped after four runs (the fifth fails), then resumed: the four are kept as they were and
/// only the missing runs run. Then the log loses its last lines (a truncation) and a rerun runs
/// exactly those.
#[test]
fn resume_after_a_stop_and_a_truncation() {
    let out = fresh("stopped");
    let plan = plan();
    let total = plan_ids(&plan).len();
    STOP_AFTER.with(|s| *s.borrow_mut() = Some(4));
    assert!(run(&plan, &out, Shard::default()).is_err());
    STOP_AFTER.with(|s| *s.borrow_mut() = None);
    assert_eq!(ran().len(), 4);
    let before = records(&out);
    assert_eq!(before.len(), 5, "the baseline and four runs");

    run(&plan, &out, Shard::default()).unwrap();
    assert_eq!(
        ran().len(),
        total - before.len(),
        "only the missing runs ran"
    );
    let after = records(&out);
    assert_eq!(ids(&after), plan_ids(&plan));
    assert_eq!(
        json(&after[..before.len()]),
        json(&before),
        "kept as they were"
    );

    let text = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    let kept: Vec<&str> = text.lines().take(7).collect();
    std::fs::write(out.join("runs.jsonl"), kept.join("\n") + "\n").unwrap();
    run(&plan, &out, Shard::default()).unwrap();
    let rerun = ran();
    assert_eq!(rerun.len(), total - 7, "{rerun:?}");
    let again = records(&out);
    assert_eq!(ids(&again), plan_ids(&plan));
    assert_eq!(json(&again[..7]), json(&after[..7]));
}

/// A child process running the plan is killed mid-way: while it ran, the dir refused this
/// process; after the kill no lock is left, and a rerun adds only the missing runs.
#[test]
fn resume_after_a_real_kill() {
    let out = fresh("killed");
    let plan = plan();
    let mut worker = child("run", &out, 100);
    let start = Instant::now();
    while read_runs(&out.join("runs.jsonl")).map_or(0, |r| r.len()) < 3 {
        assert!(start.elapsed() < Duration::from_secs(60), "no records");
        std::thread::sleep(Duration::from_millis(10));
    }
    let Err(e) = run(&plan, &out, Shard::default()) else {
        panic!("a second writer was let in");
    };
    assert!(matches!(e, ExpError::Busy { .. }), "{e}");
    worker.kill().unwrap();
    worker.wait().unwrap();
    let before = records(&out);
    let total = plan_ids(&plan).len();
    assert!(
        before.len() >= 3 && before.len() < total,
        "{}",
        before.len()
    );
    ran();
    run(&plan, &out, Shard::default()).unwrap();
    assert_eq!(ran().len(), total - before.len());
    let after = records(&out);
    assert_eq!(ids(&after), plan_ids(&plan));
    assert_eq!(json(&after[..before.len()]), json(&before));
}

/// Two shards: disjoint, the baseline in shard 0 only, merged into the whole plan; merging
/// shards of different plans is refused; a report is regenerated from `runs.jsonl` alone.
#[test]
fn shards_merge_and_the_report_regenerates() {
    let plan = plan();
    let dirs: Vec<PathBuf> = (0..2).map(|i| fresh(&format!("shard-{i}"))).collect();
    for (index, dir) in dirs.iter().enumerate() {
        run(&plan, dir, Shard { index, count: 2 }).unwrap();
    }
    let (a, b) = (ids(&records(&dirs[0])), ids(&records(&dirs[1])));
    assert!(a.is_disjoint(&b) && !b.is_empty());
    assert!(a.contains("final/toy/chance") && !b.contains("final/toy/chance"));
    let merged = fresh("merged");
    let n = harness::merge::<Toy>(&merged, &dirs).unwrap();
    assert_eq!(n, plan_ids(&plan).len());
    assert_eq!(ids(&records(&merged)), plan_ids(&plan));
    assert!(merged.join("report.md").is_file());

    let other = fresh("other-plan");
    let mut changed = plan.clone();
    changed.steps = 12;
    run(&changed, &other, Shard::default()).unwrap();
    let e = harness::merge::<Toy>(&fresh("mixed"), &[dirs[0].clone(), other.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("different plan"), "{e}");
    // An output dir of another plan refuses this plan's runs.
    let e = run(&plan, &other, Shard::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("different plan"), "{e}");

    let before = std::fs::read_to_string(merged.join("report.md")).unwrap();
    std::fs::remove_file(merged.join("report.md")).unwrap();
    std::fs::remove_file(merged.join("results.json")).unwrap();
    harness::regenerate::<Toy>(&merged).unwrap();
    assert_eq!(
        std::fs::read_to_string(merged.join("report.md")).unwrap(),
        before
    );
    assert!(merged.join("results.json").is_file());
    ran();
}

/// One writer per output dir: another process holding the lock refuses this one with an error
/// naming the dir; once that process is killed, the lock is gone (nothing stale to clean up).
#[test]
fn the_lock_refuses_a_second_process_and_a_kill_frees_it() {
    let dir = fresh("locked");
    let mut holder = child("hold", &dir, 0);
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.trim_end().ends_with("locked"))),
        "the child never took the lock"
    );
    let e = OutDir::open(&dir).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExpError::Busy { .. }), "{text}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(text.contains("pid "), "{text}");
    let e = run(&plan(), &dir, Shard::default()).unwrap_err();
    assert!(matches!(e, ExpError::Busy { .. }), "{e}");
    assert!(!dir.join("runs.jsonl").exists(), "nothing ran");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        dir.join(".lock").exists(),
        "the file stays, its lock does not"
    );
    let lock = OutDir::open(&dir).unwrap();
    // Within one process too, a second open of a held dir is refused.
    assert!(matches!(OutDir::open(&dir), Err(ExpError::Busy { .. })));
    drop(lock);
    run(&plan(), &dir, Shard::default()).unwrap();
    ran();
}

/// A plan that cannot run is refused before the dir is touched.
#[test]
fn a_bad_plan_is_refused_before_anything() {
    let out = fresh("bad-plan");
    let mut bad = plan();
    bad.seeds.clear();
    let e = run(&bad, &out, Shard::default()).unwrap_err().to_string();
    assert!(e.contains("--seeds 0"), "{e}");
    assert!(!out.exists());
}

/// Missing data fails before any output dir is left behind; a dir that was there stays, with
/// its runs.
#[test]
fn missing_data_leaves_no_output_dir() {
    let out = fresh("no-data");
    NO_DATA.with(|f| *f.borrow_mut() = true);
    let e = run(&plan(), &out, Shard::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing data file"), "{e}");
    assert!(!out.exists(), "{} was left behind", out.display());
    NO_DATA.with(|f| *f.borrow_mut() = false);
    run(&plan(), &out, Shard::default()).unwrap();
    let before = records(&out).len();
    NO_DATA.with(|f| *f.borrow_mut() = true);
    assert!(run(&plan(), &out, Shard::default()).is_err());
    assert_eq!(
        records(&out).len(),
        before,
        "an existing dir keeps its runs"
    );
}
