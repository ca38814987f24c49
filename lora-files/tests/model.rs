//! The worked example of the README, as a test: load the PyTorch base of the model-level
//! fixtures into a burn model through burn-store (names remapped, layouts converted), put the
//! PEFT (or LyCORIS) adapter on it, and reproduce the library's `output_adapted` to 1e-4; save
//! the adapters as a native file and load them onto a fresh base with the same outputs; merge
//! in burn and match `adapter merge`'s weights.

mod common;

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_close, fixture, values};
use lora_files::format::{self, ReadOptions};
use lora_files::model::{PathMap, attach_file, file_from_model};
use lora_files::{FileError, Format};

/// The fixtures' `Net(c=8)` with burn field names (PyTorch's are `stem.0`, `block.3`, ...).
#[derive(Module, Debug)]
struct Net {
    stem: Conv2d,
    stem_bn: BatchNorm,
    b0: Conv2d,
    b0_bn: BatchNorm,
    b3: Conv2d,
    b5: Conv2d,
    head: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        let pad = PaddingConfig2d::Explicit(1, 1, 1, 1);
        Self {
            stem: Conv2dConfig::new([3, 8], [3, 3])
                .with_padding(pad.clone())
                .init(device),
            stem_bn: BatchNormConfig::new(8).init(device),
            b0: Conv2dConfig::new([8, 16], [3, 3])
                .with_stride([2, 2])
                .with_padding(pad.clone())
                .init(device),
            b0_bn: BatchNormConfig::new(16).init(device),
            b3: Conv2dConfig::new([16, 16], [3, 3])
                .with_padding(pad)
                .with_groups(2)
                .init(device),
            b5: Conv2dConfig::new([16, 16], [1, 1]).init(device),
            head: LinearConfig::new(16, 5).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.stem_bn.forward(self.stem.forward(x)));
        let x = relu(self.b0_bn.forward(self.b0.forward(x)));
        let x = relu(self.b3.forward(x));
        let x = self.b5.forward(x);
        let [n, c, _, _] = x.dims();
        self.head.forward(x.mean_dim(3).mean_dim(2).reshape([n, c]))
    }
}

/// PyTorch module paths -> this struct's.
const RULES: [(&str, &str); 6] = [
    (r"^stem\.0", "stem"),
    (r"^stem\.1", "stem_bn"),
    (r"^block\.0", "b0"),
    (r"^block\.1", "b0_bn"),
    (r"^block\.3", "b3"),
    (r"^block\.5", "b5"),
];

fn to_burn() -> PathMap {
    RULES.iter().fold(PathMap::identity(), |m, (f, t)| {
        m.rule(f, t).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn to_pytorch() -> PathMap {
    let back = [
        ("^stem_bn", "stem.1"),
        ("^stem$", "stem.0"),
        ("^b0_bn", "block.1"),
        ("^b0$", "block.0"),
        ("^b3$", "block.3"),
        ("^b5$", "block.5"),
    ];
    back.iter().fold(PathMap::identity(), |m, (f, t)| {
        m.rule(f, t).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// The base, loaded from the PyTorch state dict.
fn base(dir: &Path, device: &Device) -> Net {
    let mut store = SafetensorsStore::from_file(dir.join("base.safetensors"))
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    for (f, t) in RULES {
        store = store.with_key_remapping(format!("{f}\\."), format!("{t}."));
    }
    let mut net = Net::new(device);
    let result = net
        .load_from(&mut store)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        result.errors.is_empty() && result.missing.is_empty(),
        "{result:?}"
    );
    net
}

fn input(dir: &Path, device: &Device) -> Tensor<4> {
    let (s, v) = values(&common::read(&dir.join("input.safetensors")), "input");
    Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2], s[3]]), device)
}

fn out(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

#[test]
fn load_base_then_peft_or_lycoris_adapter_reproduces_the_library() {
    let device = Device::flex();
    for (name, file) in [
        ("model-peft-lora", ""),
        ("model-lycoris-tucker", "adapter.safetensors"),
    ] {
        let dir = fixture(name);
        let reference = common::read(&dir.join("reference.safetensors"));
        let net = base(&dir, &device);
        let x = input(&dir, &device);
        let (_, want_base) = values(&reference, "output_base");
        assert_close(
            &format!("{name}: base"),
            &out(net.forward(x.clone())),
            &want_base,
            1e-4,
        );

        let adapter = resolved(name, file);
        let adapted =
            attach_file(&net, &adapter, &to_burn(), vec![]).unwrap_or_else(|e| panic!("{e}"));
        let (_, want) = values(&reference, "output_adapted");
        let got = out(adapted.forward(x.clone()));
        assert_close(&format!("{name}: adapted"), &got, &want, 1e-4);

        // Save our own file from the model, load it onto a fresh base: the same outputs.
        let saved = file_from_model(&adapted, &to_pytorch()).unwrap_or_else(|e| panic!("{e}"));
        let path = std::env::temp_dir().join(format!(
            "lora-files-model-{}-{name}.safetensors",
            std::process::id()
        ));
        format::write(&saved, Format::Native, &path).unwrap_or_else(|e| panic!("{e}"));
        let loaded = format::read(&path, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.layers.len(), adapter.layers.len());
        let again = attach_file(&base(&dir, &device), &loaded, &to_burn(), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out(again.forward(x.clone())),
            got,
            "{name}: native round trip"
        );

        // Merged in burn: the same function, at base cost.
        let merged = lora_core::merge(&again).unwrap_or_else(|e| panic!("{e}"));
        assert_close(
            &format!("{name}: merged"),
            &out(merged.forward(x)),
            &want,
            1e-4,
        );
        assert!(matches!(
            file_from_model(&merged, &to_pytorch()),
            Err(FileError::Inexpressible { .. })
        ));
    }
}

#[test]
fn types_without_a_module_and_missing_weights_are_refused_untouched() {
    let device = Device::flex();
    let dir = fixture("model-peft-lora");
    let net = base(&dir, &device);
    // LoKr with a Tucker core has no trainable module type (plain LoKr has).
    let mut lokr = format::read(
        &fixture("lycoris-lokr-conv2d").join("adapter.safetensors"),
        &ReadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    lokr.layers[0].module = "b0".to_string();
    let core = lora_files::algorithm::Factor {
        shape: vec![4, 4, 3, 3],
        values: vec![0.0; 144],
    };
    lokr.layers[0].factors.insert("lokr_t2".into(), core);
    let err = attach_file(&net, &lokr, &PathMap::identity(), vec![]);
    assert!(
        matches!(&err, Err(FileError::Attach(e)) if e.to_string().contains("Tucker core")),
        "{err:?}"
    );
    // Without the path map the PyTorch names hit no burn weight.
    let peft = format::read(&dir, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let err = attach_file(&net, &peft, &PathMap::identity(), vec![]);
    assert!(matches!(&err, Err(FileError::Attach(_))), "{err:?}");
    assert!(!lora_core::has_adapters(&net));
}

fn resolved(name: &str, file: &str) -> lora_files::AdapterFile {
    let mut a = format::read(&fixture(name).join(file), &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let modules = [
        "stem.0", "stem.1", "block.0", "block.1", "block.3", "block.5", "head",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    lora_files::format::lycoris::resolve(&mut a, &modules, &ReadOptions::default().prefixes)
        .unwrap_or_else(|e| panic!("{e}"));
    a
}

fn weights(net: &Net) -> Vec<f32> {
    [
        net.stem.weight.val(),
        net.b0.weight.val(),
        net.b3.weight.val(),
        net.b5.weight.val(),
    ]
    .into_iter()
    .flat_map(|w| w.into_data().try_to_vec::<f32>().unwrap_or_default())
    .chain(
        net.head
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default(),
    )
    .collect()
}

/// Named adapters over one base: each activates to what its library computed, `disable` gives
/// the base back bit for bit, names are checked, and `combine` adds updates exactly.
#[test]
fn adapter_set_activates_disables_deletes_and_combines() {
    use lora_files::set::AdapterSet;
    let device = Device::flex();
    let dir = fixture("model-peft-lora");
    let net = base(&dir, &device);
    let x = input(&dir, &device);
    let mut set = AdapterSet::new(&net, to_burn(), vec![]).unwrap_or_else(|e| panic!("{e}"));
    set.add("peft", resolved("model-peft-lora", ""))
        .unwrap_or_else(|e| panic!("{e}"));
    set.add(
        "lyco",
        resolved("model-lycoris-tucker", "adapter.safetensors"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        set.add("peft", resolved("model-peft-lora", "")),
        Err(FileError::Config { .. })
    ));
    // The PEFT adapter belongs to this base: its library's output. The LyCORIS one was trained
    // on another base; on this one it must equal attaching it directly.
    let model = set.activate("peft").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.active(), Some("peft"));
    let (_, want) = values(
        &common::read(&dir.join("reference.safetensors")),
        "output_adapted",
    );
    assert_close("peft", &out(model.forward(x.clone())), &want, 1e-4);
    let lyco = set.activate("lyco").unwrap_or_else(|e| panic!("{e}"));
    let direct = attach_file(
        &net,
        &resolved("model-lycoris-tucker", "adapter.safetensors"),
        &to_burn(),
        vec![],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out(lyco.forward(x.clone())), out(direct.forward(x.clone())));
    let off = set.disable();
    assert_eq!(
        weights(&off),
        weights(&net),
        "disable gives the base back bit for bit"
    );
    assert_eq!(out(off.forward(x.clone())), out(net.forward(x.clone())));

    // 0.3·peft + 0.7·peft is peft; lyco + lyco is lyco at twice its strength.
    set.combine("peft-again", &[("peft", 0.3), ("peft", 0.7)])
        .unwrap_or_else(|e| panic!("{e}"));
    let a = out(set
        .activate("peft-again")
        .unwrap_or_else(|e| panic!("{e}"))
        .forward(x.clone()));
    let b = out(set
        .activate("peft")
        .unwrap_or_else(|e| panic!("{e}"))
        .forward(x.clone()));
    assert_close("0.3 + 0.7 of one adapter", &a, &b, 1e-5);
    set.combine("lyco-twice", &[("lyco", 1.0), ("lyco", 1.0)])
        .unwrap_or_else(|e| panic!("{e}"));
    let base_dict = common::read(&dir.join("base.safetensors"));
    let twice = lora_files::merge::merge(
        &base_dict,
        "base",
        set.get("lyco-twice")
            .unwrap_or_else(|| panic!("lyco-twice")),
        1.0,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let double = lora_files::merge::merge(
        &base_dict,
        "base",
        set.get("lyco").unwrap_or_else(|| panic!("lyco")),
        2.0,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (k, v) in &twice.tensors {
        if let (Some(p), Some(q)) = (v.to_f32(), double.tensors[k].to_f32()) {
            assert_close(&format!("lyco twice: {k}"), &p, &q, 1e-5);
        }
    }
    // Mixed algorithms on one layer (block.0: LoCon and Tucker-2) do not combine.
    let err = set.combine("mixed", &[("peft", 1.0), ("lyco", 1.0)]);
    assert!(
        matches!(&err, Err(FileError::Config { value, .. }) if value == "block.0"),
        "{err:?}"
    );
    set.delete("peft-again").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        set.activate("peft-again"),
        Err(FileError::Config { .. })
    ));
    assert_eq!(set.names(), ["lyco", "lyco-twice", "peft"]);
}

/// Hot swap on a merged base, 1,000 times between two adapters, then strip: the drift from
/// the pretrained base, relative to its largest weight (the README quotes the number).
#[test]
fn merged_hot_swap_drift_after_1000_swaps() {
    use lora_files::set::swap_merged;
    let device = Device::flex();
    let dir = fixture("model-peft-lora");
    let net = base(&dir, &device);
    let files = [
        resolved("model-peft-lora", ""),
        resolved("model-lycoris-tucker", "adapter.safetensors"),
    ];
    let mut model = lora_core::merge(
        &attach_file(&net, &files[0], &to_burn(), vec![]).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for i in 1..=1000 {
        model = swap_merged(&model, &files[i % 2], &to_burn(), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let back = lora_core::strip(&model).unwrap_or_else(|e| panic!("{e}"));
    let (w0, w1) = (weights(&net), weights(&back));
    let scale = w0.iter().fold(0f32, |m, v| m.max(v.abs()));
    let drift = w0
        .iter()
        .zip(&w1)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
        / scale;
    println!(
        "drift after 1000 merged swaps: {drift:e} of max|W| ({} weights)",
        w0.len()
    );
    assert!(
        drift > 0.0,
        "f32 swaps round; a zero drift means nothing was swapped"
    );
    assert!(drift < 1e-5, "drift {drift:e}");
}

/// PEFT `modules_to_save` on a BatchNorm (`stem.1`: affine and running statistics): merged into
/// the state dict by the file-level merge and loaded onto the burn model by `attach_file`, the
/// two give the same outputs; the model's trainable extras come back out of `file_from_model`
/// in PyTorch names and layouts.
#[test]
fn modules_to_save_load_on_both_paths_and_extras_save() {
    // Trainability is an autodiff notion: on a plain device nothing requires a gradient.
    let device = Device::flex().autodiff();
    let src = fixture("model-peft-lora");
    let dir = std::env::temp_dir().join(format!("lora-files-mts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = std::fs::read_to_string(src.join("adapter_config.json")).unwrap_or_default();
    let config = config.replace(
        "\"modules_to_save\": null",
        "\"modules_to_save\": [\"stem.1\"]",
    );
    std::fs::write(dir.join("adapter_config.json"), config).unwrap_or_else(|e| panic!("{e}"));
    let base_dict = common::read(&src.join("base.safetensors"));
    let mut weights = common::read(&src.join("adapter_model.safetensors"));
    let mut new_values = std::collections::BTreeMap::new();
    for p in ["weight", "bias", "running_mean", "running_var"] {
        let (shape, v) = values(&base_dict, &format!("stem.1.{p}"));
        let changed: Vec<f32> = v.iter().map(|x| x * 1.5 + 0.1).collect();
        new_values.insert(p, changed.clone());
        weights.tensors.insert(
            format!("base_model.model.stem.1.{p}"),
            lora_files::Stored::from_f32(shape, &changed),
        );
    }
    weights
        .write(&dir.join("adapter_model.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let adapter = format::read(&dir, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(adapter.replacements.len(), 4);

    // File level: merge, then load the merged state dict as a plain burn model.
    let merged = lora_files::merge::merge(&base_dict, "base", &adapter, 1.0)
        .unwrap_or_else(|e| panic!("{e}"));
    merged
        .write(&dir.join("merged.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(src.join("input.safetensors"), dir.join("input.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(dir.join("merged.safetensors"), dir.join("base.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let x = input(&src, &device);
    let y_file = out(base(&dir, &device).forward(x.clone()));

    // Model level: the original base, the adapter file with its replacements.
    let adapted = attach_file(&base(&src, &device), &adapter, &to_burn(), vec![])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_close(
        "modules_to_save: file merge vs model",
        &out(adapted.forward(x)),
        &y_file,
        1e-4,
    );
    let gamma = adapted
        .stem_bn
        .gamma
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    assert_eq!(gamma, new_values["weight"]);

    // Saving: the trainable extras (the BatchNorm affine) and every BatchNorm whole (running
    // statistics and counter) come back in PyTorch names.
    let saved = file_from_model(&adapted, &to_pytorch()).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = saved.replacements.keys().map(String::as_str).collect();
    let bn = [
        "bias",
        "num_batches_tracked",
        "running_mean",
        "running_var",
        "weight",
    ];
    let want: Vec<String> = ["block.1", "stem.1"]
        .iter()
        .flat_map(|m| bn.map(|p| format!("{m}.{p}")))
        .collect();
    assert_eq!(keys, want);
    // (The running statistics moved since loading: the forward above ran in training mode.)
    assert_eq!(
        saved.replacements["stem.1.weight"].to_f32(),
        Some(new_values["weight"].clone())
    );
    // Against the base state dict: both BatchNorms moved (the forward above trained them), and
    // the counter is the base's.
    let changed = lora_files::model::file_from_model_with(
        &adapted,
        &to_pytorch(),
        lora_files::model::RunningStats::ChangedFrom(&base_dict),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = changed.replacements.keys().map(String::as_str).collect();
    assert_eq!(keys, want);
    assert_eq!(
        changed.replacements["stem.1.num_batches_tracked"],
        base_dict.tensors["stem.1.num_batches_tracked"]
    );
}
