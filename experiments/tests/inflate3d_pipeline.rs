//! The `inflate3d` binary on synthetic data in the real formats (IDX gz for Fashion-MNIST,
//! gzipped NIfTI volumes and the AAL names file): shards that merge through `compare report`
//! into the whole plan with both baselines, and bad input refused before any training.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use experiments::data::idx::write_idx;
use experiments::data::nifti::write_u8_nii;
use experiments::record::read_runs;
use flate2::Compression;
use flate2::write::GzEncoder;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Fashion-MNIST stand-in: class `c` is a bright band at rows 2c..2c+4.
fn fashion(dir: &Path) {
    let dir = dir.join("fashion-mnist");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, n) in [("train", 3000usize), ("t10k", 1000)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let pixels: Vec<u8> = labels
            .iter()
            .enumerate()
            .flat_map(|(i, &l)| {
                (0..784).map(move |p| {
                    let row = p / 28;
                    let band = if (2 * l as usize..2 * l as usize + 4).contains(&row) {
                        180
                    } else {
                        0
                    };
                    (band + (p * 7 + i * 13) % 61) as u8
                })
            })
            .collect();
        std::fs::write(
            dir.join(format!("{name}-images-idx3-ubyte.gz")),
            gz(&write_idx(&[n, 28, 28], &pixels)),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{name}-labels-idx1-ubyte.gz")),
            gz(&write_idx(&[n], &labels)),
        )
        .unwrap();
    }
}

/// An 80 x 160 x 64 mm head at 1 mm, world x = voxel x - 40 (RAS, straddling the midline),
/// unless `affine` says otherwise. The atlas is region 1 (frontal) at voxel y < 80, region 2
/// (occipital) behind; the T1 is a texture that differs between the two.
fn brain(dir: &Path, affine: [[f32; 4]; 3]) {
    let dir = dir.join("mri");
    std::fs::create_dir_all(&dir).unwrap();
    let dims = [80, 160, 64];
    let (mut t1, mut atlas) = (Vec::new(), Vec::new());
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let front = y < 80;
                atlas.push(if front { 1u8 } else { 2 });
                let stripes = if front { (x / 3) % 2 } else { (z / 3) % 2 };
                t1.push((60 + 120 * stripes + (x * 7 + y * 3 + z) % 17) as u8);
            }
        }
    }
    std::fs::write(dir.join("ch2.nii.gz"), gz(&write_u8_nii(dims, &t1, affine))).unwrap();
    std::fs::write(
        dir.join("aal.nii.gz"),
        gz(&write_u8_nii(dims, &atlas, affine)),
    )
    .unwrap();
    std::fs::write(
        dir.join("aal.nii.txt"),
        "1 Frontal_Sup_L 1\n2 Occipital_Mid_L 2\n",
    )
    .unwrap();
}

/// The cross-template brains: a brain-extracted Colin27 stand-in (`ch2bet.nii.gz`, on the
/// `RAS` grid) and an ICBM152 stand-in on a grid 4 mm larger on each side (so the resampling
/// shifts it by whole voxels), on another intensity scale (`0.5·v + 10`). Both hold one box of
/// brain (world x, y, z in [-36, 36), [-72, 72), [-28, 28) mm, aligned with the 2 mm blocks;
/// zero outside) in three bands along x: CSF below -16 mm, grey matter to 8 mm, white matter
/// beyond. ICBM152's grey- and white-matter maps are 255 in their bands.
fn templates(dir: &Path) {
    let dir = dir.join("mri");
    let icbm = dir.join("icbm152");
    std::fs::create_dir_all(&icbm).unwrap();
    let tissue = |w: [f32; 3]| -> Option<usize> {
        let within = |v: f32, r: f32| (-r..r).contains(&v);
        let inside = within(w[0], 36.0) && within(w[1], 72.0) && within(w[2], 28.0);
        inside.then(|| usize::from(w[0] >= -16.0) + usize::from(w[0] >= 8.0))
    };
    let volume = |dims: [usize; 3], affine: [[f32; 4]; 3], value: &dyn Fn(Option<usize>) -> u8| {
        let mut out = Vec::new();
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    let w = [
                        x as f32 + affine[0][3],
                        y as f32 + affine[1][3],
                        z as f32 + affine[2][3],
                    ];
                    out.push(value(tissue(w)));
                }
            }
        }
        gz(&write_u8_nii(dims, &out, affine))
    };
    let level = [40u8, 120, 200];
    std::fs::write(
        dir.join("ch2bet.nii.gz"),
        volume([80, 160, 64], RAS, &|t| t.map_or(0, |t| level[t])),
    )
    .unwrap();
    let big = [88, 168, 72];
    let shifted = [
        [1.0, 0.0, 0.0, -44.0],
        [0.0, 1.0, 0.0, -84.0],
        [0.0, 0.0, 1.0, -36.0],
    ];
    let files = [
        (
            "t1",
            &(|t: Option<usize>| t.map_or(0, |t| level[t] / 2 + 10))
                as &dyn Fn(Option<usize>) -> u8,
        ),
        ("gm", &|t: Option<usize>| if t == Some(1) { 255 } else { 0 }),
        ("wm", &|t: Option<usize>| if t == Some(2) { 255 } else { 0 }),
    ];
    for (name, value) in files {
        std::fs::write(
            icbm.join(format!(
                "mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"
            )),
            volume(big, shifted, value),
        )
        .unwrap();
    }
}

const RAS: [[f32; 4]; 3] = [
    [1.0, 0.0, 0.0, -40.0],
    [0.0, 1.0, 0.0, -80.0],
    [0.0, 0.0, 1.0, -32.0],
];

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("inflate3d-pipeline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let good = root.join("data");
        fashion(&good);
        brain(&good, RAS);
        templates(&good);
        // Left-right along the voxel y axis: the hemisphere split would be ambiguous.
        let rotated = root.join("rotated");
        fashion(&rotated);
        brain(
            &rotated,
            [
                [0.0, 1.0, 0.0, -80.0],
                [1.0, 0.0, 0.0, -40.0],
                [0.0, 0.0, 1.0, -32.0],
            ],
        );
        root
    })
}

const TINY: [&str; 7] = ["--quick", "--seeds", "2", "--steps", "2", "--ranks", "1"];

fn inflate3d(args: &[&str], data: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_inflate3d"));
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

/// The `config.json` of an output dir.
fn config(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap()
}

fn ids(dir: &Path) -> BTreeSet<String> {
    read_runs(&dir.join("runs.jsonl"))
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn shards_merge_into_the_whole_plan_with_baselines() {
    let data = root().join("data");
    let whole = root().join("whole");
    ok(inflate3d(&TINY, &data, &whole).output().unwrap());
    let all = ids(&whole);
    // 6 cells (scratch3d, slice2d, inflated-full, 3 variants at rank 1), one sweep rate each
    // in quick mode, 2 seeds; plus the two baselines.
    assert_eq!(all.len(), 6 * (1 + 2) + 2, "{all:?}");
    for baseline in [
        "final/brain-lobes/majority",
        "final/brain-lobes/position-1nn",
    ] {
        assert!(all.contains(baseline), "{all:?}");
    }
    let records = read_runs(&whole.join("runs.jsonl")).unwrap();
    for r in records.iter().filter(|r| r.phase == "final" && r.steps > 0) {
        assert_eq!(r.steps, 2, "{}", r.id);
        let recall = r.recall_per_class.as_ref().unwrap();
        assert_eq!(recall.len(), 7);
        let confusion = r.confusion.as_ref().unwrap();
        let total: usize = confusion.iter().flatten().sum();
        assert_eq!(total, r.test_examples, "{}", r.id);
        assert!((0.0..=1.0).contains(&r.test_accuracy));
    }
    let report = std::fs::read_to_string(whole.join("report.md")).unwrap();
    for needle in [
        "within-subject transfer on one brain",
        "position-only",
        "Confusion matrices",
        "Per-class test recall",
    ] {
        assert!(report.contains(needle), "{needle}: {report}");
    }

    // Two shards: disjoint, the baselines in shard 0 only, and `compare report` merges them
    // into the same set of runs as the unsharded plan.
    let dirs: Vec<PathBuf> = (0..2).map(|i| root().join(format!("shard-{i}"))).collect();
    for (i, dir) in dirs.iter().enumerate() {
        let shard = format!("{i}/2");
        let mut args = TINY.to_vec();
        args.extend(["--shard", &shard]);
        ok(inflate3d(&args, &data, dir).output().unwrap());
    }
    let (a, b) = (ids(&dirs[0]), ids(&dirs[1]));
    assert!(a.is_disjoint(&b));
    assert!(a.contains("final/brain-lobes/majority") && !b.contains("final/brain-lobes/majority"));
    let merged = root().join("merged");
    ok(Command::new(env!("CARGO_BIN_EXE_compare"))
        .args(["report", "--out"])
        .arg(&merged)
        .args(&dirs)
        .output()
        .unwrap());
    assert_eq!(ids(&merged), all);
    let report = std::fs::read_to_string(merged.join("report.md")).unwrap();
    assert!(report.contains("Confusion matrices"), "{report}");
}

/// `--label tissue`: three appearance classes from the same patches, its own task name.
#[test]
fn tissue_label_runs_with_three_classes() {
    let data = root().join("data");
    let out = root().join("tissue");
    let mut args = TINY.to_vec();
    args.extend(["--label", "tissue"]);
    ok(inflate3d(&args, &data, &out).output().unwrap());
    let records = read_runs(&out.join("runs.jsonl")).unwrap();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.task, "brain-tissue", "{}", r.id);
        if let Some(confusion) = &r.confusion {
            assert_eq!(confusion.len(), 3, "{}", r.id);
        }
    }
    let config = config(&out);
    assert_eq!(
        config["classes"],
        serde_json::json!(["dark", "mid", "bright"])
    );
    let counts: Vec<u64> = config["train_class_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(counts.len(), 3);
    assert!(counts.iter().all(|&c| c > 0), "terciles: {counts:?}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("local appearance"), "{report}");
}

/// `--test-brain icbm152`: Colin27 -> ICBM152 with the `segment` label by default. The ICBM152
/// stand-in sits on another grid and another intensity scale; per-brain thresholds label it
/// exactly as its tissue maps do (agreement 1), and the report says which mode ran.
#[test]
fn cross_template_labels_each_brain_alike() {
    let data = root().join("data");
    let out = root().join("cross");
    let mut args = TINY.to_vec();
    args.extend(["--test-brain", "icbm152"]);
    ok(inflate3d(&args, &data, &out).output().unwrap());
    let records = read_runs(&out.join("runs.jsonl")).unwrap();
    assert!(records.iter().any(|r| r.method == "position-1nn"));
    for r in &records {
        assert_eq!(r.task, "brain-segment", "{}", r.id);
    }
    let config = config(&out);
    assert_eq!(
        config["classes"],
        serde_json::json!(["csf", "grey", "white"])
    );
    assert_eq!(config["test_brain"], "icbm152");
    let agreement = &config["labelling"][0];
    assert!(agreement["patches"].as_u64().unwrap() > 10, "{agreement}");
    assert_eq!(agreement["accuracy"], 1.0, "{agreement}");
    // ICBM152's own thresholds: the midpoints of 30, 70 and 110.
    assert_eq!(agreement["thresholds"], serde_json::json!([50.0, 90.0]));
    let counts: Vec<u64> = config["test_class_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("cross-template transfer"), "{report}");
    assert!(
        report.contains("The labelling procedure against a reference"),
        "{report}"
    );
    assert!(report.contains("minus position-1nn"), "{report}");
}

/// `--test-brain icbm152 --label lobe`: the AAL lobes on both brains; the intensity
/// procedure labels nothing, so no agreement is reported for it.
#[test]
fn cross_template_lobes_report_no_labelling_agreement() {
    let data = root().join("data");
    let out = root().join("cross-lobes");
    let mut args = TINY.to_vec();
    args.extend(["--test-brain", "icbm152", "--label", "lobe"]);
    ok(inflate3d(&args, &data, &out).output().unwrap());
    let config = config(&out);
    assert_eq!(config["task"], "brain-lobes");
    assert_eq!(config["labelling"], serde_json::json!([]));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        !report.contains("The labelling procedure against a reference"),
        "{report}"
    );
}

/// Each bad input: a clear message, a non-zero exit, no panic, and no training (no records).
#[test]
fn bad_input_is_refused_before_training() {
    let data = root().join("data");
    let cases: Vec<(Vec<&str>, PathBuf, &str, &str)> = vec![
        (
            vec!["--quick", "--seeds", "0"],
            data.clone(),
            "seeds-0",
            "--seeds 0",
        ),
        (
            vec!["--quick"],
            root().join("rotated"),
            "rotated",
            "hemisphere split would be ambiguous",
        ),
        (
            vec!["--quick"],
            root().join("nowhere"),
            "missing",
            "fetch-data.sh",
        ),
        (
            vec!["--quick", "--test-brain", "icbm152", "--label", "tissue"],
            data.clone(),
            "cross-tissue",
            "--label segment",
        ),
        (
            vec!["--quick", "--label", "segment"],
            data.clone(),
            "within-segment",
            "--test-brain icbm152",
        ),
        (
            vec!["--quick", "--test-brain", "icbm152"],
            root().join("rotated"),
            "no-templates",
            "ch2bet.nii.gz",
        ),
        (
            vec!["--quick", "--train-bn"],
            data.clone(),
            "train-bn",
            "compare option",
        ),
    ];
    for (args, data, name, message) in cases {
        let out = root().join(format!("bad-{name}"));
        let output = inflate3d(&args, &data, &out).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            !out.join("runs.jsonl").exists(),
            "{args:?}: something trained"
        );
    }
}
