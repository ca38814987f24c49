//! Export then import, through every format that can hold the adapter, gives back the same
//! adapter (factors bit for bit, same rank, alpha and scale, same merged weights); adapters a
//! format cannot hold are refused by layer; corrupted files are refused by name, and a failed
//! write leaves the old file as it was.

mod common;

use std::path::{Path, PathBuf};

use common::fixture;
use lora_files::algorithm::{Cp, Factor, Factors};
use lora_files::format::native::VERSION;
use lora_files::format::{self, ReadOptions};
use lora_files::{AdapterFile, FileError, Format, LayerAdapter, StateDict, merge};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lora-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn read(path: &Path) -> AdapterFile {
    format::read(path, &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn resolved(path: &Path, base: &StateDict) -> AdapterFile {
    let mut a = read(path);
    merge::resolve(&mut a, base, &ReadOptions::default().prefixes)
        .unwrap_or_else(|e| panic!("{e}"));
    a
}

fn same(a: &AdapterFile, b: &AdapterFile) {
    assert_eq!(a.layers.len(), b.layers.len());
    for (x, y) in a.layers.iter().zip(&b.layers) {
        assert_eq!(x.module, y.module);
        assert_eq!(x.algorithm.name(), y.algorithm.name(), "{}", x.module);
        assert_eq!(x.rank, y.rank, "{}", x.module);
        assert!(
            (x.scale - y.scale).abs() <= 1e-6 * x.scale.abs(),
            "{}: scale {} vs {}",
            x.module,
            x.scale,
            y.scale
        );
        assert_eq!(x.factors, y.factors, "{}", x.module);
        assert_eq!(
            x.magnitude.as_ref().map(|m| &m.values),
            y.magnitude.as_ref().map(|m| &m.values),
            "{}",
            x.module
        );
    }
    assert_eq!(a.replacements, b.replacements);
}

#[test]
fn every_fixture_survives_every_format_that_can_hold_it() {
    let model_base = common::read(&fixture("model-peft-lora").join("base.safetensors"));
    let cases: [(&str, &str, &[Format]); 4] = [
        (
            "model-peft-lora",
            "",
            &[Format::Peft, Format::Lycoris, Format::Native],
        ),
        (
            "model-lycoris-tucker",
            "adapter.safetensors",
            &[Format::Lycoris, Format::Native],
        ),
        (
            "lycoris-loha-conv2d",
            "adapter.safetensors",
            &[Format::Lycoris, Format::Native],
        ),
        (
            "lycoris-lokr-conv2d",
            "adapter.safetensors",
            &[Format::Lycoris, Format::Native],
        ),
    ];
    for (name, file, formats) in cases {
        let path = fixture(name).join(file);
        let base = if name.starts_with("model") {
            model_base.clone()
        } else {
            let mut b = StateDict::default();
            let r = common::read(&fixture(name).join("reference.safetensors"));
            b.tensors
                .insert("layer.weight".to_string(), r.tensors["base.weight"].clone());
            b
        };
        let original = resolved(&path, &base);
        let merged = merge::merge(&base, "base", &original, 1.0).unwrap_or_else(|e| panic!("{e}"));
        for &f in formats {
            let dir = tmp(&format!("{name}-{}", f.name()));
            let out = if f == Format::Peft {
                dir.join("adapter")
            } else {
                dir.join("a.safetensors")
            };
            format::write(&original, f, &out)
                .unwrap_or_else(|e| panic!("{name} -> {}: {e}", f.name()));
            let back = resolved(&out, &base);
            assert_eq!(back.format, f);
            same(&original, &back);
            let again = merge::merge(&base, "base", &back, 1.0).unwrap_or_else(|e| panic!("{e}"));
            for (k, v) in &merged.tensors {
                let (a, b) = (v.to_f32(), again.tensors[k].to_f32());
                if let (Some(a), Some(b)) = (a, b) {
                    common::assert_close(&format!("{name} via {}: {k}", f.name()), &b, &a, 1e-6);
                }
            }
        }
    }
}

#[test]
fn peft_dora_survives_peft_and_native() {
    let path = fixture("peft-dora-conv2d");
    let original = read(&path);
    for f in [Format::Peft, Format::Native] {
        let dir = tmp(&format!("dora-{}", f.name()));
        let out = if f == Format::Peft {
            dir.join("adapter")
        } else {
            dir.join("a.safetensors")
        };
        format::write(&original, f, &out).unwrap_or_else(|e| panic!("{e}"));
        same(&original, &read(&out));
    }
}

fn cp_adapter() -> AdapterFile {
    let f = |shape: Vec<usize>| Factor {
        values: (0..shape.iter().product::<usize>())
            .map(|i| (i as f32 * 0.37).sin())
            .collect(),
        shape,
    };
    let mut factors = Factors::new();
    factors.insert("cp_up".to_string(), f(vec![16, 2]));
    factors.insert("cp_down".to_string(), f(vec![2, 8]));
    factors.insert("cp_spatial_0".to_string(), f(vec![3, 2]));
    factors.insert("cp_spatial_1".to_string(), f(vec![3, 2]));
    AdapterFile {
        source: "memory".to_string(),
        format: Format::Native,
        layers: vec![LayerAdapter {
            module: "block.0".to_string(),
            key_prefix: "block.0".to_string(),
            algorithm: &Cp,
            factors,
            rank: 2,
            alpha: Some(1.0),
            scale: 0.5,
            magnitude: None,
            base_shape: Some(vec![16, 8, 3, 3]),
            groups: 1,
        }],
        replacements: Default::default(),
        rslora: false,
        diffs: Default::default(),
    }
}

#[test]
fn cp_is_native_only_and_tucker_is_not_peft() {
    let cp = cp_adapter();
    let dir = tmp("cp");
    let native = dir.join("cp.safetensors");
    format::write(&cp, Format::Native, &native).unwrap_or_else(|e| panic!("{e}"));
    same(&cp, &read(&native));
    for f in [Format::Peft, Format::Lycoris] {
        let err = format::write(&cp, f, &dir.join(format!("cp-{}", f.name())));
        assert!(
            matches!(&err, Err(FileError::Inexpressible { layer, algorithm, .. }) if layer == "block.0" && algorithm == "cp"),
            "{err:?}"
        );
    }
    let tucker = read(&fixture("model-lycoris-tucker").join("adapter.safetensors"));
    let err = format::write(&tucker, Format::Peft, &dir.join("tucker-peft"));
    assert!(
        matches!(&err, Err(FileError::Inexpressible { algorithm, format, .. }) if algorithm == "tucker2" && format == "peft"),
        "{err:?}"
    );
    assert!(
        !dir.join("tucker-peft").exists(),
        "a refused export writes nothing"
    );
}

#[test]
fn corrupted_files_are_refused_by_name() {
    let dir = tmp("corrupt");
    let good = std::fs::read(fixture("model-lycoris-tucker").join("adapter.safetensors"))
        .unwrap_or_default();
    // Truncated.
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap_or_else(|e| panic!("{e}"));
    let err = format::read(&truncated, &ReadOptions::default());
    assert!(
        matches!(&err, Err(FileError::Io { file, .. }) if file.contains("truncated")),
        "{err:?}"
    );
    // A header that is not JSON.
    let mut garbled = good.clone();
    for b in garbled.iter_mut().skip(8).take(16) {
        *b = b'#';
    }
    let bad = dir.join("garbled.safetensors");
    std::fs::write(&bad, &garbled).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        format::read(&bad, &ReadOptions::default()),
        Err(FileError::Io { .. })
    ));
    // A PEFT config with a field that changes the maths.
    let peft = dir.join("peft");
    std::fs::create_dir_all(&peft).unwrap_or_else(|e| panic!("{e}"));
    let src = fixture("model-peft-lora");
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        peft.join("adapter_model.safetensors"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = std::fs::read_to_string(src.join("adapter_config.json")).unwrap_or_default();
    for (from, to, field) in [
        ("\"lora_bias\": false", "\"lora_bias\": true", "lora_bias"),
        (
            "\"fan_in_fan_out\": false",
            "\"fan_in_fan_out\": true",
            "fan_in_fan_out",
        ),
        (
            "\"use_dora\": false",
            "\"use_dora\": true",
            "lora_magnitude_vector",
        ),
        ("\"r\": 4", "\"r\": 8", "rank 8"),
        (
            "\"peft_type\": \"LORA\"",
            "\"peft_type\": \"LOHA\"",
            "peft_type",
        ),
        ("\"bias\": \"none\"", "\"bias\": \"all\"", "bias"),
        ("\"head\",", "\"classifier\",", "target_modules"),
        (
            "\"r\": 4,",
            "\"r\": 4, \"some_future_field\": 3,",
            "some_future_field",
        ),
    ] {
        assert!(config.contains(from), "{from}");
        std::fs::write(peft.join("adapter_config.json"), config.replace(from, to))
            .unwrap_or_else(|e| panic!("{e}"));
        let err = format::read(&peft, &ReadOptions::default());
        let text = format!("{:?}", err.as_ref().map(|_| ()));
        assert!(err.is_err() && text.contains(field), "{field}: {text}");
    }
    // Native: another version, and a tensor the metadata does not list.
    let native = dir.join("n.safetensors");
    format::write(&cp_adapter(), Format::Native, &native).unwrap_or_else(|e| panic!("{e}"));
    let mut dict = StateDict::read(&native).unwrap_or_else(|e| panic!("{e}"));
    let meta = dict.metadata["lora_files"].clone();
    dict.metadata.insert(
        "lora_files".to_string(),
        meta.replace(&version(VERSION), &version(VERSION + 1)),
    );
    dict.write(&dir.join("v2.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = format::read(&dir.join("v2.safetensors"), &ReadOptions::default());
    assert!(
        matches!(&err, Err(FileError::Config { field, .. }) if field == "version"),
        "{err:?}"
    );
    let mut extra = StateDict::read(&native).unwrap_or_else(|e| panic!("{e}"));
    extra.tensors.insert(
        "block.0.stray".to_string(),
        lora_files::Stored::from_f32(vec![1], &[0.0]),
    );
    extra
        .write(&dir.join("extra.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = format::read(&dir.join("extra.safetensors"), &ReadOptions::default());
    assert!(
        matches!(&err, Err(FileError::UnexpectedKey { key, .. }) if key == "block.0.stray"),
        "{err:?}"
    );
    // A non-finite factor.
    let mut nan = StateDict::read(&native).unwrap_or_else(|e| panic!("{e}"));
    let t = nan
        .tensors
        .get_mut("block.0.cp_up")
        .unwrap_or_else(|| panic!("cp_up"));
    t.bytes[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    nan.write(&dir.join("nan.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = format::read(&dir.join("nan.safetensors"), &ReadOptions::default());
    assert!(
        matches!(&err, Err(FileError::NonFinite { key, index: 0, .. }) if key == "block.0.cp_up"),
        "{err:?}"
    );
}

#[test]
fn unsupported_algorithms_and_unknown_prefixes_are_named() {
    let dir = tmp("unsupported");
    let mut dict = StateDict::default();
    dict.tensors.insert(
        "lycoris_block_0.oft_blocks".to_string(),
        lora_files::Stored::from_f32(vec![2, 2, 2], &[0.0; 8]),
    );
    dict.tensors.insert(
        "lycoris_block_0.alpha".to_string(),
        lora_files::Stored::from_f32(vec![], &[1.0]),
    );
    dict.write(&dir.join("oft.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = format::read(&dir.join("oft.safetensors"), &ReadOptions::default());
    assert!(
        matches!(&err, Err(FileError::UnsupportedAlgorithm { key, algorithm, .. }) if key == "lycoris_block_0.oft_blocks" && algorithm == "OFT"),
        "{err:?}"
    );
    let mut dict = StateDict::default();
    dict.tensors.insert(
        "mynet_block_0.lora_down.weight".to_string(),
        lora_files::Stored::from_f32(vec![1, 2], &[0.0; 2]),
    );
    dict.write(&dir.join("prefix.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = format::read(&dir.join("prefix.safetensors"), &ReadOptions::default());
    assert!(
        matches!(&err, Err(FileError::UnexpectedKey { key, .. }) if key.starts_with("mynet_")),
        "{err:?}"
    );
}

#[test]
fn merge_refuses_a_base_without_the_weight_and_leaves_it_alone() {
    let dir = fixture("model-peft-lora");
    let base = common::read(&dir.join("base.safetensors"));
    let adapter = read(&dir);
    let mut short = base.clone();
    short.tensors.remove("block.5.weight");
    let err = merge::merge(&short, "short.safetensors", &adapter, 1.0);
    assert!(
        matches!(&err, Err(FileError::MissingKey { file, key, .. }) if file == "short.safetensors" && key == "block.5.weight"),
        "{err:?}"
    );
    let mut wrong = base.clone();
    let w = wrong
        .tensors
        .get_mut("block.5.weight")
        .unwrap_or_else(|| panic!("block.5"));
    w.shape = vec![16, 4, 2, 2];
    let err = merge::merge(&wrong, "wrong.safetensors", &adapter, 1.0);
    assert!(
        matches!(&err, Err(FileError::BaseMismatch { base, key, .. }) if base == "wrong.safetensors" && key == "block.5.weight"),
        "{err:?}"
    );
}

/// A native file records each layer's base shape; resolving it against a base whose weight has
/// another shape is refused, naming the layer.
#[test]
fn native_base_shape_is_checked_against_the_base() {
    let dir = fixture("model-peft-lora");
    let base = common::read(&dir.join("base.safetensors"));
    let adapter = resolved(&dir, &base);
    let block5 = adapter.layers.iter().find(|l| l.module == "block.5");
    assert_eq!(
        block5.and_then(|l| l.base_shape.as_deref()),
        Some(&[16, 16, 1, 1][..])
    );
    let out = tmp("shape").join("a.safetensors");
    format::write(&adapter, Format::Native, &out).unwrap_or_else(|e| panic!("{e}"));
    let mut other = base.clone();
    if let Some(w) = other.tensors.get_mut("block.5.weight") {
        w.shape = vec![16, 4, 2, 2];
    }
    let mut back = read(&out);
    let err = merge::resolve(&mut back, &other, &ReadOptions::default().prefixes);
    assert!(
        matches!(&err, Err(FileError::BaseMismatch { key, found, expected, .. }) if key == "block.5.weight" && found == "has shape [16, 4, 2, 2]" && expected == "shape [16, 16, 1, 1]"),
        "{err:?}"
    );
}

/// A version-1 native file (CP's `cp_down` stored as `[in, r]`) reads as the same adapter as
/// the current-version file it was rewritten from; any other version is refused by name.
#[test]
fn version_1_cp_files_are_read_with_their_old_layout() {
    let cp = cp_adapter();
    let dir = tmp("cp-v1");
    let v2 = dir.join("v2.safetensors");
    format::write(&cp, Format::Native, &v2).unwrap_or_else(|e| panic!("{e}"));
    let mut dict = lora_files::StateDict::read(&v2).unwrap_or_else(|e| panic!("{e}"));
    // Rewrite as version 1: the metadata's version, and cp_down transposed to [in, r].
    let key = lora_files::format::native::METADATA_KEY;
    let meta = dict.metadata[key].replace(&version(VERSION), &version(1));
    assert_ne!(meta, dict.metadata[key], "the metadata names its version");
    dict.metadata.insert(key.to_string(), meta.clone());
    let down = &cp.layers[0].factors["cp_down"];
    let [r, c] = [down.shape[0], down.shape[1]];
    let mut old = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            old[j * r + i] = down.values[i * c + j];
        }
    }
    dict.tensors.insert(
        "block.0.cp_down".to_string(),
        lora_files::Stored::from_f32(vec![c, r], &old),
    );
    let v1 = dir.join("v1.safetensors");
    dict.write(&v1).unwrap_or_else(|e| panic!("{e}"));
    same(&cp, &read(&v1));
    // The next version does not exist yet.
    dict.metadata.insert(
        key.to_string(),
        meta.replace(&version(1), &version(VERSION + 1)),
    );
    let v3 = dir.join("v3.safetensors");
    dict.write(&v3).unwrap_or_else(|e| panic!("{e}"));
    let err = format::read(&v3, &ReadOptions::default());
    assert!(
        matches!(&err, Err(FileError::Config { field, .. }) if field == "version"),
        "{err:?}"
    );
}

/// A native file's metadata text for `version`.
fn version(v: u32) -> String {
    format!("\"version\":{v}")
}
