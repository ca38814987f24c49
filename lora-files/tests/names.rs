//! One name per adapter type (issue 22): files name each algorithm as `lora_conv` names its
//! type, native files of versions 1 and 2 (LoCon as `lora`, LoHa-Tucker as `loha`) still read,
//! and each algorithm that adds up by concatenation does it exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use lora_files::algorithm::{
    Algorithm, Cp, Factor, Factors, LoCon, LoHa, LoHaTucker, LoKr, Part, Site, Tucker2,
};
use lora_files::format::{self, ReadOptions, native};
use lora_files::{AdapterFile, Format, LayerAdapter, Registry, StateDict};

/// Seeded factors of the given shapes.
fn factors(seed: u64, shapes: &[(&str, Vec<usize>)]) -> Factors {
    let device = Device::flex();
    device.seed(seed);
    shapes
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let t = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            let values = t.into_data().try_to_vec::<f32>().unwrap_or_default();
            (
                name.to_string(),
                Factor {
                    shape: shape.clone(),
                    values,
                },
            )
        })
        .collect()
}

fn locon(seed: u64, r: usize) -> Factors {
    factors(
        seed,
        &[
            ("lora_down.weight", vec![r, 6, 3, 3]),
            ("lora_up.weight", vec![5, r, 1, 1]),
        ],
    )
}

fn tucker2(seed: u64, r: usize) -> Factors {
    factors(
        seed,
        &[
            ("lora_down.weight", vec![r, 6, 1, 1]),
            ("lora_mid.weight", vec![r, r, 3, 3]),
            ("lora_up.weight", vec![5, r, 1, 1]),
        ],
    )
}

fn cp(seed: u64, r: usize) -> Factors {
    factors(
        seed,
        &[
            ("cp_up", vec![5, r]),
            ("cp_down", vec![r, 6]),
            ("cp_spatial_0", vec![3, r]),
            ("cp_spatial_1", vec![3, r]),
        ],
    )
}

fn loha_tucker(seed: u64, r: usize) -> Factors {
    factors(
        seed,
        &[
            ("hada_w1_a", vec![r, 5]),
            ("hada_w1_b", vec![r, 6]),
            ("hada_t1", vec![r, r, 3, 3]),
            ("hada_w2_a", vec![r, 5]),
            ("hada_w2_b", vec![r, 6]),
            ("hada_t2", vec![r, r, 3, 3]),
        ],
    )
}

fn loha(seed: u64, r: usize) -> Factors {
    factors(
        seed,
        &[
            ("hada_w1_a", vec![5, r]),
            ("hada_w1_b", vec![r, 54]),
            ("hada_w2_a", vec![5, r]),
            ("hada_w2_b", vec![r, 54]),
        ],
    )
}

fn delta(algorithm: &dyn Algorithm, f: &Factors) -> Vec<f32> {
    let site = Site::new("test", "layer");
    let d = algorithm
        .delta(site, f)
        .unwrap_or_else(|e| panic!("{}: {e}", algorithm.name()));
    d.matrix.into_data().try_to_vec::<f32>().unwrap_or_default()
}

/// `combine` is each algorithm's `concatenate`: the combined update equals `Σ wᵢ·ΔWᵢ` on a grid
/// of ranks and weights (negative and zero included), to 1e-5 of the largest entry.
#[test]
fn concatenation_adds_updates_exactly() {
    type Make = fn(u64, usize) -> Factors;
    let cases: [(&dyn Algorithm, Make); 3] = [(&LoCon, locon), (&Tucker2, tucker2), (&Cp, cp)];
    for (algorithm, make) in cases {
        for (ranks, weights) in [
            (vec![2, 3], vec![0.3, -1.2]),
            (vec![1, 1, 4], vec![1.0, 0.0, 0.5]),
            (vec![3], vec![2.0]),
        ] {
            let fs: Vec<Factors> = ranks
                .iter()
                .enumerate()
                .map(|(i, &r)| make(10 + i as u64, r))
                .collect();
            let parts: Vec<Part<'_>> = fs
                .iter()
                .zip(&weights)
                .map(|(factors, &weight)| Part { factors, weight })
                .collect();
            let combined = algorithm
                .concatenate(&parts)
                .unwrap_or_else(|e| panic!("{}: {e}", algorithm.name()));
            let site = Site::new("test", "layer");
            let total: usize = ranks.iter().sum();
            assert_eq!(
                algorithm.rank(site, &combined).unwrap_or(0),
                total,
                "{}: rank of the combination",
                algorithm.name()
            );
            let got = delta(algorithm, &combined);
            let mut want = vec![0f32; got.len()];
            for (f, w) in fs.iter().zip(&weights) {
                for (o, d) in want.iter_mut().zip(delta(algorithm, f)) {
                    *o += (*w as f32) * d;
                }
            }
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            let worst = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-5 * scale,
                "{} ranks {ranks:?} weights {weights:?}: off by {worst:e} (largest {scale:e})",
                algorithm.name()
            );
        }
    }
}

/// Two parts of weight 1.
fn both<'a>(a: &'a Factors, b: &'a Factors) -> [Part<'a>; 2] {
    [a, b].map(|factors| Part {
        factors,
        weight: 1.0,
    })
}

/// Products do not add up by concatenation, and shapes that differ are refused.
#[test]
fn concatenation_refusals_say_why() {
    let (a, b) = (loha(1, 2), loha(2, 2));
    let parts = both(&a, &b);
    let why = LoHa.concatenate(&parts).err().unwrap_or_default();
    assert!(
        why.contains("loha") && why.contains("do not add up"),
        "{why}"
    );
    let why = LoKr.concatenate(&parts).err().unwrap_or_default();
    assert!(why.contains("lokr"), "{why}");
    let (a, mut b) = (locon(1, 2), locon(2, 2));
    b.insert(
        "lora_down.weight".into(),
        factors(3, &[("d", vec![2, 4, 3, 3])])["d"].clone(),
    );
    let parts = both(&a, &b);
    let why = LoCon.concatenate(&parts).err().unwrap_or_default();
    assert!(why.contains("different shapes"), "{why}");
    // Malformed factors (too few axes, too few values) are reasons, not panics.
    for bad in [
        Factor {
            shape: vec![],
            values: vec![],
        },
        Factor {
            shape: vec![2, 4, 3, 3],
            values: vec![0.0; 5],
        },
    ] {
        for (algorithm, name, make) in [
            (
                &LoCon as &dyn Algorithm,
                "lora_up.weight",
                locon as fn(u64, usize) -> Factors,
            ),
            (&LoCon, "lora_down.weight", locon),
            (&Tucker2, "lora_mid.weight", tucker2),
            (&Cp, "cp_down", cp),
            (&Cp, "cp_up", cp),
        ] {
            let a = make(1, 2);
            let mut b = make(2, 2);
            b.insert(name.into(), bad.clone());
            let parts = both(&a, &b);
            let why = algorithm.concatenate(&parts).err().unwrap_or_default();
            assert!(!why.is_empty(), "{} with a bad {name}", algorithm.name());
        }
    }
}

fn layer(module: &str, algorithm: &'static dyn Algorithm, factors: Factors) -> LayerAdapter {
    let rank = algorithm
        .rank(Site::new("test", module), &factors)
        .unwrap_or(0);
    LayerAdapter {
        module: module.to_string(),
        key_prefix: module.to_string(),
        algorithm,
        factors,
        rank,
        alpha: Some(rank as f64 / 2.0),
        scale: 0.5,
        magnitude: None,
        base_shape: Some(vec![5, 6, 3, 3]),
        groups: 1,
    }
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lora-files-names-{}-{name}", std::process::id()))
}

/// Rewrite a native file's metadata as an older build would have written it.
fn as_version(path: &Path, version: u32, rename: &BTreeMap<&str, &str>) -> PathBuf {
    let mut dict = StateDict::read(path).unwrap_or_else(|e| panic!("{e}"));
    let text = dict.metadata[native::METADATA_KEY].clone();
    let mut meta: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    meta["version"] = version.into();
    if let Some(layers) = meta["layers"].as_array_mut() {
        for l in layers {
            let name = l["algorithm"].as_str().unwrap_or_default().to_string();
            if let Some(old) = rename.get(name.as_str()) {
                l["algorithm"] = (*old).into();
            }
        }
    }
    dict.metadata
        .insert(native::METADATA_KEY.to_string(), meta.to_string());
    let out = path.with_extension(format!("v{version}.safetensors"));
    dict.write(&out).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// Version 3 writes the types' own names; files of versions 1 and 2 with the old names read
/// to the same layers (LoHa-Tucker's `loha` told from LoHa's by its cores); a newer version is
/// refused by number.
#[test]
fn old_native_names_still_read() {
    let file = AdapterFile {
        source: "test".into(),
        format: Format::Native,
        layers: vec![
            layer("a", &LoCon, locon(1, 2)),
            layer("b", &LoHaTucker, loha_tucker(2, 2)),
            layer("c", &LoHa, loha(3, 3)),
            layer("d", &Tucker2, tucker2(4, 2)),
        ],
        replacements: BTreeMap::new(),
        rslora: false,
        diffs: Default::default(),
    };
    let path = scratch("v3.safetensors");
    format::write(&file, Format::Native, &path).unwrap_or_else(|e| panic!("{e}"));
    let text = StateDict::read(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .metadata[native::METADATA_KEY]
        .clone();
    assert!(
        text.contains("\"version\":3")
            && text.contains("\"locon\"")
            && text.contains("\"loha-tucker\""),
        "{text}"
    );
    let old = BTreeMap::from([("locon", "lora"), ("loha-tucker", "loha")]);
    let options = ReadOptions::default();
    for version in [1, 2] {
        let older = as_version(&path, version, &old);
        let read = format::read(&older, &options).unwrap_or_else(|e| panic!("v{version}: {e}"));
        let names: Vec<&str> = read.layers.iter().map(|l| l.algorithm.name()).collect();
        assert_eq!(
            names,
            ["locon", "loha-tucker", "loha", "tucker2"],
            "v{version}"
        );
        for (got, want) in read.layers.iter().zip(&file.layers) {
            assert_eq!(got.factors, want.factors, "v{version} {}", want.module);
            let (g, w) = (
                got.delta("v").map(|d| d.matrix.into_data()),
                want.delta("w").map(|d| d.matrix.into_data()),
            );
            assert_eq!(
                g.ok()
                    .map(|d: TensorData| d.try_to_vec::<f32>().unwrap_or_default()),
                w.ok()
                    .map(|d: TensorData| d.try_to_vec::<f32>().unwrap_or_default()),
                "v{version} {}",
                want.module
            );
        }
        let _ = std::fs::remove_file(&older);
    }
    let newer = as_version(&path, native::VERSION + 1, &BTreeMap::new());
    let err = format::read(&newer, &options)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("versions 1 to 3"), "{err}");
    let _ = std::fs::remove_file(&newer);
    let _ = std::fs::remove_file(&path);
}

/// The registry answers to the old names, and a shared alias resolves by the factors.
#[test]
fn registry_resolves_aliases_by_factors() {
    let registry = Registry::builtin();
    let name = |n: &str, f: Option<&[&str]>| registry.named(n, f).map(|a| a.name());
    assert_eq!(name("lora", None), Some("locon"));
    assert_eq!(name("locon", None), Some("locon"));
    assert_eq!(name("loha", None), Some("loha"));
    let tucker = [
        "hada_w1_a",
        "hada_w1_b",
        "hada_w2_a",
        "hada_w2_b",
        "hada_t1",
        "hada_t2",
    ];
    assert_eq!(name("loha", Some(&tucker)), Some("loha-tucker"));
    assert_eq!(name("loha", Some(&tucker[..4])), Some("loha"));
    assert_eq!(name("loha-tucker", Some(&tucker)), Some("loha-tucker"));
    assert_eq!(name("no-such-type", None), None);
}
