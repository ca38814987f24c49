//! Base plus adapter file reproduces the fine-tuned model: a small CNN with BatchNorm, trained a
//! few Adam steps with batch statistics (which moves every BatchNorm's running statistics, the
//! frozen ones' too), saved with `file_from_model` and loaded with `attach_file` onto a fresh
//! base read from the base's own state dict. Native: bit-identical logits. PEFT: logits within
//! 1e-5 of the largest magnitude. Both: the same accuracy on a held-out synthetic set. And a
//! file the real PEFT wrote for the same CNN trained in PyTorch gives PyTorch's logits.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use lora_conv::{ConvFactory, conv_config};
use lora_files::format::{self, ReadOptions};
use lora_files::model::{
    PathMap, RunningStats, attach_file, file_from_model, file_from_model_with,
};
use lora_files::{Format, StateDict};

const CLASSES: usize = 3;

#[derive(Module, Debug)]
struct Net {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    head: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(3, 8),
            bn1: BatchNormConfig::new(8).init(device),
            conv2: conv(8, 8),
            bn2: BatchNormConfig::new(8).init(device),
            head: LinearConfig::new(8, CLASSES).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let x = relu(self.bn2.forward(self.conv2.forward(x)));
        let [n, c, _, _] = x.dims();
        self.head.forward(x.mean_dim(3).mean_dim(2).reshape([n, c]))
    }
}

/// `n` images of 3x8x8: class `k` adds `1.5` to channel `k`, on N(0.5, 1) noise (so the
/// statistics the base was initialised with, mean 0 and variance 1, are off).
fn data(n: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>, Vec<usize>) {
    let labels: Vec<usize> = (0..n).map(|i| i % CLASSES).collect();
    let mut shift = vec![0f32; n * 3 * 64];
    for (i, k) in labels.iter().enumerate() {
        for p in 0..64 {
            shift[(i * 3 + k) * 64 + p] = 1.5;
        }
    }
    let x = Tensor::<4>::random([n, 3, 8, 8], Distribution::Normal(0.5, 1.0), device)
        + Tensor::from_data(TensorData::new(shift, [n, 3, 8, 8]), device);
    let y = Tensor::from_data(
        TensorData::new(labels.iter().map(|&k| k as i64).collect(), [n]),
        device,
    );
    (x, y, labels)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

/// Inference logits (BatchNorm on its running statistics) and accuracy.
fn evaluate(model: &Net, x: &Tensor<4>, labels: &[usize]) -> (Vec<f32>, f64) {
    let logits = values(model.valid().forward(x.clone()));
    let correct = logits
        .chunks(CLASSES)
        .zip(labels)
        .filter(|(row, k)| {
            let best = (0..CLASSES).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best == **k
        })
        .count();
    (logits, correct as f64 / labels.len() as f64)
}

/// The model's state as PyTorch-layout safetensors bytes.
fn pytorch_bytes(model: &Net) -> Vec<u8> {
    let mut store = SafetensorsStore::from_bytes(None).with_to_adapter(BurnToPyTorchAdapter);
    model
        .save_into(&mut store)
        .unwrap_or_else(|e| panic!("{e:?}"));
    store.get_bytes().unwrap_or_else(|e| panic!("{e:?}"))
}

/// A new base with the state `bytes` holds (as a user loads a pretrained checkpoint).
fn load(bytes: &[u8], device: &Device) -> Net {
    let mut store =
        SafetensorsStore::from_bytes(Some(bytes.to_vec())).with_from_adapter(PyTorchToBurnAdapter);
    let mut net = Net::new(device);
    net.load_from(&mut store)
        .unwrap_or_else(|e| panic!("{e:?}"));
    net
}

fn stats(net: &Net) -> Vec<Vec<f32>> {
    [&net.bn1, &net.bn2]
        .iter()
        .flat_map(|bn| [bn.running_mean.value(), bn.running_var.value()])
        .map(values)
        .collect()
}

#[test]
fn base_plus_file_reproduces_the_fine_tuned_model() {
    let device = Device::flex().autodiff();
    device.seed(21);
    let base = Net::new(&device);
    let base_bytes = pytorch_bytes(&base);
    let base_dict = StateDict::from_bytes("base", &base_bytes).unwrap_or_else(|e| panic!("{e}"));
    let eval_device = device.clone().without_autodiff();
    let (x, y, _) = data(48, &device);
    let (x_test, _, test_labels) = data(60, &eval_device);

    // LoCon on both convs; the head and bn2's affine train in full; bn1's affine is frozen,
    // but every BatchNorm runs on batch statistics and updates its running statistics.
    let config = conv_config(2, 2.0)
        .with_targets(vec![r"conv\d\.weight".into()])
        .with_trainable(vec![r"head\..*".into(), r"bn2\.(gamma|beta)".into()]);
    let factory = ConvFactory::new("locon".parse().unwrap_or_else(|e| panic!("{e}")));
    let mut model = lora_core::attach(&base, &config, &factory).unwrap_or_else(|e| panic!("{e}"));
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = AdamConfig::new().init();
    for _ in 0..8 {
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    // Saved straight after the last step, before anything synchronises the statistics: the
    // last step's update is still held aside in each `RunningState`.
    let file = file_from_model(&model, &PathMap::identity()).unwrap_or_else(|e| panic!("{e}"));
    let (want, accuracy) = evaluate(&model, &x_test, &test_labels);
    println!("fine-tuned accuracy {accuracy:.3}");

    let dir = std::env::temp_dir().join(format!("lora-files-repro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = file.replacements.keys().map(String::as_str).collect();
    let bn = |m: &str| {
        [
            "bias",
            "num_batches_tracked",
            "running_mean",
            "running_var",
            "weight",
        ]
        .map(|p| format!("{m}.{p}"))
    };
    let mut expected: Vec<String> = bn("bn1").into_iter().chain(bn("bn2")).collect();
    expected.extend(["head.bias".to_string(), "head.weight".to_string()]);
    assert_eq!(keys, expected);

    // Native: a fresh base from the base's state dict, plus the file: the same logits, bit
    // for bit, and the fresh base itself keeps its statistics.
    let native = dir.join("adapter.safetensors");
    format::write(&file, Format::Native, &native).unwrap_or_else(|e| panic!("{e}"));
    let read = format::read(&native, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let fresh = load(&base_bytes, &device);
    let before = stats(&fresh);
    let reloaded =
        attach_file(&fresh, &read, &PathMap::identity(), vec![]).unwrap_or_else(|e| panic!("{e}"));
    let (got, got_accuracy) = evaluate(&reloaded, &x_test, &test_labels);
    assert!(
        got == want,
        "native: max |reloaded - trained| = {:e}",
        max_diff(&got, &want)
    );
    assert_eq!(got_accuracy, accuracy);
    assert_eq!(
        stats(&fresh),
        before,
        "attach_file changed the base's statistics"
    );
    assert_ne!(stats(&reloaded), before, "training moved no statistic");

    // Without the statistics the file does not reproduce the model: they are what differs.
    let bare = file_from_model_with(&model, &PathMap::identity(), RunningStats::None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(bare.replacements.keys().all(|k| !k.contains("running")));
    let without = attach_file(
        &load(&base_bytes, &device),
        &bare,
        &PathMap::identity(),
        vec![],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(evaluate(&without, &x_test, &test_labels).0, want);

    // Against the base state dict: both BatchNorms moved, so both are saved; against the
    // trained model's own state, none.
    let changed = file_from_model_with(
        &model,
        &PathMap::identity(),
        RunningStats::ChangedFrom(&base_dict),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(changed.replacements, file.replacements);
    let own = StateDict::from_bytes("trained", &pytorch_bytes(&model.valid()))
        .unwrap_or_else(|e| panic!("{e}"));
    let unchanged = file_from_model_with(
        &model,
        &PathMap::identity(),
        RunningStats::ChangedFrom(&own),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = unchanged.replacements.keys().map(String::as_str).collect();
    assert_eq!(keys, ["bn2.bias", "bn2.weight", "head.bias", "head.weight"]);

    // PEFT: every BatchNorm is a `modules_to_save` entry, whole, in PEFT's key layout.
    let peft_dir = dir.join("peft");
    format::write(&file, Format::Peft, &peft_dir).unwrap_or_else(|e| panic!("{e}"));
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(peft_dir.join("adapter_config.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config["modules_to_save"],
        serde_json::json!(["bn1", "bn2", "head"])
    );
    let weights = StateDict::read(&peft_dir.join("adapter_model.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    for key in bn("bn1") {
        assert!(
            weights
                .tensors
                .contains_key(&format!("base_model.model.{key}")),
            "{key}"
        );
    }
    let peft = format::read(&peft_dir, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let from_peft = attach_file(
        &load(&base_bytes, &device),
        &peft,
        &PathMap::identity(),
        vec![],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (got, got_accuracy) = evaluate(&from_peft, &x_test, &test_labels);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_diff(&got, &want);
    assert!(diff <= 1e-5 * scale, "PEFT: max diff {diff:e} of {scale}");
    assert_eq!(got_accuracy, accuracy);

    // Kept for a check against the real PEFT when asked (see docs/files.md).
    if std::env::var_os("LORA_FILES_KEEP").is_some() {
        let mut io = BTreeMap::new();
        io.insert(
            "input".to_string(),
            lora_files::Stored::from_f32(vec![60, 3, 8, 8], &values(x_test)),
        );
        io.insert(
            "logits".to_string(),
            lora_files::Stored::from_f32(vec![60, CLASSES], &want),
        );
        StateDict {
            tensors: io,
            metadata: BTreeMap::new(),
        }
        .write(&dir.join("io.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("base.safetensors"), &base_bytes).unwrap_or_else(|e| panic!("{e}"));
        println!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// The other direction, with a file the real PEFT 0.21.2 wrote (`fixtures/model-peft-bn`,
/// `make.py`): the same CNN trained in PyTorch with the BatchNorms and the head in
/// `modules_to_save` (each BatchNorm whole, `num_batches_tracked` included). The PyTorch base
/// plus the adapter, on the burn model, gives PyTorch's eval-mode logits to 1e-5 of the
/// largest, and the same predictions.
#[test]
fn a_real_peft_file_with_batch_norm_in_modules_to_save_reproduces_pytorch() {
    let device = Device::flex();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model-peft-bn");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
    let base = load(&read("base.safetensors"), &device);
    let peft =
        format::read(&dir.join("peft"), &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(peft.replacements.contains_key("bn1.num_batches_tracked"));
    let adapted =
        attach_file(&base, &peft, &PathMap::identity(), vec![]).unwrap_or_else(|e| panic!("{e}"));
    let io = StateDict::from_bytes("io", &read("io.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    let tensor = |key: &str| {
        let stored = &io.tensors[key];
        (stored.shape.clone(), stored.to_f32().unwrap_or_default())
    };
    let (shape, input) = tensor("input");
    let x = Tensor::<4>::from_data(TensorData::new(input, shape), &device);
    let (_, want) = tensor("logits");
    let labels: Vec<usize> = want
        .chunks(CLASSES)
        .map(|r| (0..CLASSES).fold(0, |b, j| if r[j] > r[b] { j } else { b }))
        .collect();
    let (got, accuracy) = evaluate(&adapted, &x, &labels);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_diff(&got, &want);
    println!("PEFT file on burn: max diff {diff:e} of {scale}");
    assert!(diff <= 1e-5 * scale, "max diff {diff:e} of {scale}");
    assert_eq!(accuracy, 1.0, "burn's predictions are PyTorch's");
    // Without the file's statistics the logits are not PyTorch's.
    let mut bare = peft.clone();
    bare.replacements.retain(|k, _| !k.contains("running"));
    let without =
        attach_file(&base, &bare, &PathMap::identity(), vec![]).unwrap_or_else(|e| panic!("{e}"));
    assert!(max_diff(&evaluate(&without, &x, &labels).0, &want) > 1e-3 * scale);
}
