//! The ELPV study end to end on images the test makes (the real ELPV data is CC BY-NC-SA and
//! never committed) with face-api's real weights (fetched by `./scripts/fetch-data.sh`; without
//! them the test fails and names the command): every method's final runs, what each trains,
//! the budgets, the report's sections; and the probe's cached features against the network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use experiments::data::Images;
use experiments::data::augment::dihedral;
use experiments::elpv::{Plan, Profile, probe, run};
use experiments::harness::{RunRecord, Shard};
use lora_backbones::ResNet29;

fn real_data() -> PathBuf {
    std::env::var_os("LORA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"))
}

fn face_api() -> PathBuf {
    let dir = real_data().join("face-api");
    assert!(
        dir.join("face_recognition_model-weights_manifest.json")
            .is_file(),
        "face-api's weights are missing from {}: run ./scripts/fetch-data.sh",
        dir.display()
    );
    dir
}

fn png(path: &Path, pixels: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 300, 300);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(pixels)
        .unwrap();
}

/// A data dir with 24 made-up 300x300 cells (classes 0..3 in turn, mono and poly in turn, a
/// class-dependent stripe so there is something to learn) and a link to the real face-api
/// weights.
fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("elpv-study-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("elpv/images")).unwrap();
    let mut labels = String::new();
    for n in 0..24 {
        let class = n % 4;
        let px: Vec<u8> = (0..300 * 300)
            .map(|i| {
                let (y, x) = (i / 300, i % 300);
                let stripe = if (x / 30) % 4 == class { 120 } else { 0 };
                ((y * 7 + x * 3 + 11 * n) % 100 + stripe) as u8
            })
            .collect();
        png(&dir.join(format!("elpv/images/cell{n:04}.png")), &px);
        let p = [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0][class];
        let kind = if n % 2 == 0 { "mono" } else { "poly" };
        labels.push_str(&format!("images/cell{n:04}.png  {p}  {kind}\n"));
    }
    std::fs::write(dir.join("elpv/labels.csv"), labels).unwrap();
    std::os::unix::fs::symlink(face_api(), dir.join("face-api")).unwrap();
    dir
}

fn records(out: &Path) -> Vec<RunRecord> {
    std::fs::read_to_string(out.join("runs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The quick profile on 24 images: every method's final runs on both splits, what each
/// trains, every adapter within its budget on all 29 convs, and the report's own sections.
#[test]
fn every_method_runs_within_its_budget_and_reports() {
    let data = data_dir("run");
    let out = data.join("out");
    let plan = Plan::new(Profile::Quick);
    let device = Device::flex().autodiff();
    run(&plan, &data, &out, Shard::default(), "cpu", &device).unwrap();
    let finals: Vec<RunRecord> = records(&out)
        .into_iter()
        .filter(|r| r.phase == "final")
        .collect();
    let methods = ["probe", "affine", "full", "locon", "tucker2", "cp"];
    for m in methods {
        let seeds: Vec<u64> = finals
            .iter()
            .filter(|r| r.method == m)
            .map(|r| r.seed)
            .collect();
        assert_eq!(seeds, vec![0, 1], "{m}");
    }
    let of = |m: &str| finals.iter().find(|r| r.method == m).unwrap();
    let head = 256 * 4 + 4;
    // The 29 affine maps have 3,552 channels, a weight and a bias each.
    assert_eq!(of("probe").trainable_params, head);
    assert_eq!(of("affine").trainable_params, 2 * 3_552 + head);
    // Full: convs, their biases, the affine maps, the head; face-api's fc is not trained.
    assert_eq!(
        of("full").trainable_params,
        5_571_168 + 3_552 + 2 * 3_552 + head
    );
    let budget = (0.01 * 5_571_168f64).floor() as usize;
    for m in ["locon", "tucker2", "cp"] {
        let r = of(m);
        assert_eq!(r.layers.len(), 29, "{m}");
        assert!(
            r.layers
                .iter()
                .all(|l| l.rank >= 1 && l.adapter_params < l.weight_params)
        );
        assert!(
            r.adapter_params <= budget,
            "{m}: {} > {budget}",
            r.adapter_params
        );
        // Matched budgets: every type spends all of it but less than one rank step (the
        // filled allocation; the plain uniform one leaves LoCon at 60% of a 1% budget).
        assert!(
            r.adapter_params * 100 >= budget * 98,
            "{m}: {}",
            r.adapter_params
        );
        assert_eq!(r.trainable_params, r.adapter_params + head, "{m}");
        assert!(r.confusion.is_some(), "{m}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in [
        "## Three scores",
        "## Against full fine-tuning",
        "## Which decomposition, per budget",
        "## Beside the dataset's paper",
        "## Confusion matrices",
        "Nadeau–Bengio",
    ] {
        assert!(report.contains(section), "report lacks {section}");
    }
    assert!(out.join("accuracy-vs-share-elpv-112.svg").is_file());
    let _ = std::fs::remove_dir_all(&data);
}

/// The probe's cached features are the network's own features of the image under each view:
/// gray copied to three channels as 0..255 (a probe fed 0..1 pixels, or one channel, fails
/// this by orders of magnitude over the 1e-4 allowed).
#[test]
fn probe_features_are_the_networks() {
    let device = Device::flex();
    let base = ResNet29::<Conv2d>::from_faceapi(&face_api(), &device).unwrap();
    let n = 112;
    let pixels: Vec<f32> = (0..3 * n * n)
        .map(|i| ((i * 37) % 251) as f32 / 250.0)
        .collect();
    let images = Images {
        pixels,
        dims: vec![n, n],
        labels: vec![0, 1, 2],
    };
    let cached = probe::features(&base, &images, &device);
    assert_eq!(cached.len(), 3 * probe::VIEWS);
    let mut worst = 0f32;
    for i in 0..3 {
        for t in [0, 1, 5] {
            let mut view = vec![0f32; n * n];
            dihedral(&images.pixels[i * n * n..(i + 1) * n * n], n, t, &mut view);
            let x = Tensor::<4>::from_data(TensorData::new(view, [1, 1, n, n]), &device)
                .repeat_dim(1, 3)
                .mul_scalar(255.0);
            let want: Vec<f32> = base.features(x).into_data().iter::<f32>().collect();
            let row = (i * probe::VIEWS + t) * 256;
            for (a, b) in cached.pixels[row..row + 256].iter().zip(&want) {
                worst = worst.max((a - b).abs());
            }
            assert_eq!(cached.labels[i * probe::VIEWS + t], i);
        }
    }
    assert!(worst < 1e-4, "max abs difference {worst}");
}
