//! The walkthrough `main.rs` runs and the test runs: an adapter type from outside the library,
//! used through the library's own entry points, every step checked.

use std::error::Error;
use std::path::Path;

use crate::SeparableAdapter;
use crate::full_diff;
use crate::net::Net;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use lora_3d::{InflateOptions, inflate};
use lora_conv::{ConvFactory, ConvLayer, ConvVariant, ForwardMode, LoraConv, conv_config};
use lora_core::{AdapterSpec, merge, param_counts, unmerge};
use lora_files::Format;
use lora_files::format::{self, ReadOptions};
use lora_files::model::{PathMap, attach_file, file_from_model};

/// What the walkthrough returns: the first failed check, or any library error, as an error.
pub type Outcome = Result<(), Box<dyn Error>>;

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn check(what: &str, ok: bool, detail: String) -> Outcome {
    println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: {detail}").into())
    }
}

/// Register [`SeparableAdapter`], then attach, train, merge, unmerge, run its bypass form, save
/// and load it, write it to LyCORIS as full diffs and refuse it for PEFT, and inflate it to 3D,
/// checking the numbers of each step (printed as it goes).
///
/// # Errors
/// The first check that fails, or any library error.
pub fn run() -> Outcome {
    run_with(None)
}

/// [`run`], also writing the files of `tests/fixtures/lycoris-full/` to `fixture` (the base,
/// the native and LyCORIS files, an input and the trained model's output) for
/// `scripts/fixtures/custom_full.py` to check with the real LyCORIS.
///
/// # Errors
/// As [`run`], and any failure to write the fixture.
pub fn run_with(fixture: Option<&Path>) -> Outcome {
    // The one line that registers the type.
    lora_conv::register(ConvVariant::of::<SeparableAdapter>())?;
    let variant: ConvVariant = "separable".parse()?;
    check(
        "parse",
        variant == ConvVariant::of::<SeparableAdapter>(),
        format!("`separable` -> {variant}"),
    )?;

    let device = Device::flex();
    device.seed(7);
    let base = Net::new(&device);
    let x = Tensor::<4>::random([2, 3, 10, 10], Distribution::Normal(0.0, 1.0), &device);

    // Attach (weight-space form) to both convs: rank 2, alpha 4.
    let config = conv_config(2, 4.0).with_targets(vec![r"^[ab]\.weight$".into()]);
    let adapted = lora_core::attach(&base, &config, &ConvFactory::new(variant))?;
    let counts = param_counts(&adapted);
    let expected = variant.param_count(&[8, 3, 3, 3], 2) + variant.param_count(&[8, 8, 3, 3], 2);
    check(
        "trainable count",
        counts.trainable == expected,
        format!("{} = r(c + t) + K summed over both convs", counts.trainable),
    )?;
    let d = max_diff(adapted.forward(x.clone()), base.forward(x.clone()));
    check(
        "zero at attach",
        d == 0.0,
        format!("max |adapted - base| = {d}"),
    )?;

    // Train: regress onto a random target, Adam; the base stays frozen.
    let train_device = device.clone().autodiff();
    let mut model = adapted.clone().to_device(&train_device).train();
    let xt = Tensor::<4>::from_data(x.to_data(), &train_device);
    let target = Tensor::<4>::random(
        [2, 8, 10, 10],
        Distribution::Normal(0.0, 1.0),
        &train_device,
    );
    let loss_of = |m: &Net| {
        (m.forward(xt.clone()) - target.clone())
            .powi_scalar(2)
            .mean()
    };
    let mut optim = AdamConfig::new().init();
    let first = loss_of(&model).into_scalar::<f32>();
    for _ in 0..20 {
        let grads = GradientsParams::from_grads(loss_of(&model).backward(), &model);
        model = optim.step(5e-2, model, grads);
    }
    let last = loss_of(&model).into_scalar::<f32>();
    check(
        "training",
        last < first,
        format!("loss {first:.4} -> {last:.4} in 20 steps"),
    )?;
    let trained = model.valid();
    let drift = max_diff(trained.a.weight.base(), base.a.weight.val());
    check(
        "frozen base",
        drift == 0.0,
        format!("max |W - W0| = {drift}"),
    )?;

    // Merge and unmerge.
    let merged = merge(&trained)?;
    let d = max_diff(merged.forward(x.clone()), trained.forward(x.clone()));
    check(
        "merge",
        d < 1e-5,
        format!("max |merged - unmerged| = {d:.2e}"),
    )?;
    let back = unmerge(&merged)?;
    let d = max_diff(back.a.weight.base(), base.a.weight.val());
    check("unmerge", d < 1e-6, format!("max |W - W0| = {d:.2e}"))?;

    // Bypass form: the same type in LoraConv, against its own weight-space form.
    let spec = AdapterSpec::new(2, 4.0);
    let layer = LoraConv::new(
        "b",
        base.b.clone(),
        variant,
        &spec,
        0.0,
        ForwardMode::Bypass,
        &device,
    )?;
    let layer = randomize(layer)?;
    let h = Tensor::<4>::random([2, 8, 9, 9], Distribution::Normal(0.0, 1.0), &device);
    let bypass = layer.forward(h.clone());
    let weight = layer
        .clone()
        .with_mode("b", ForwardMode::WeightSpace)?
        .forward(h.clone());
    let plain = layer.merge().forward_nd(h);
    let (d1, d2) = (max_diff(bypass.clone(), weight), max_diff(bypass, plain));
    check(
        "bypass form",
        d1 < 1e-4 && d2 < 1e-4,
        format!("max |bypass - weight-space| = {d1:.2e}, |bypass - merged| = {d2:.2e}"),
    )?;

    // Save as a native file and load onto a fresh copy of the base.
    let file = file_from_model(&trained, &PathMap::identity())?;
    let path =
        std::env::temp_dir().join(format!("custom-adapter-{}.safetensors", std::process::id()));
    format::write(&file, Format::Native, &path)?;
    let read = format::read(&path, &ReadOptions::default())?;
    std::fs::remove_file(&path)?;
    let names: Vec<&str> = read.layers.iter().map(|l| l.algorithm.name()).collect();
    check(
        "file layers",
        names == ["separable", "separable"],
        format!("{names:?}"),
    )?;
    // PEFT has no layout for a type it does not know: the writer refuses it by name, format
    // and reason, and writes nothing.
    let peft_dir = std::env::temp_dir().join(format!("custom-adapter-peft-{}", std::process::id()));
    let refusal = match format::write(&file, Format::Peft, &peft_dir) {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    };
    check(
        "PEFT refusal",
        refusal.contains("separable") && refusal.contains("PEFT") && !peft_dir.exists(),
        refusal.clone(),
    )?;
    let loaded = attach_file(&base, &read, &PathMap::identity(), Vec::new())?;
    let d = max_diff(loaded.forward(x.clone()), trained.forward(x.clone()));
    check(
        "save/load",
        d == 0.0,
        format!("max |loaded - trained| = {d}"),
    )?;
    let layer = read
        .layers
        .iter()
        .find(|l| l.module == "a")
        .ok_or("no layer `a` in the file")?;
    let w0 = base.a.weight.val();
    let w0_values = w0
        .to_data()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    let by_file = layer.merged(
        &read.source,
        "base",
        "a.weight",
        &w0.dims(),
        &w0_values,
        1.0,
    )?;
    let by_model = merge(&trained)?.a.weight.val();
    let by_file = Tensor::<4>::from_data(
        burn::tensor::TensorData::new(by_file, by_model.dims()),
        &device,
    );
    let d = max_diff(by_file, by_model);
    check(
        "file-level merge",
        d < 1e-5,
        format!("max |file merge - model merge| = {d:.2e}"),
    )?;

    // LyCORIS has no layout for the type's factors: each layer goes as a full diff, its
    // merged update, the factors lost. Merged into the base, the file gives the trained outputs.
    let base_dict = base.state_dict();
    let lycoris_path = std::env::temp_dir().join(format!(
        "custom-adapter-lycoris-{}.safetensors",
        std::process::id()
    ));
    let moved = full_diff::write(&read, &base_dict, "base", &lycoris_path)?;
    let mut back = format::read(&lycoris_path, &ReadOptions::default())?;
    std::fs::remove_file(&lycoris_path)?;
    lora_files::merge::resolve(&mut back, &base_dict, &ReadOptions::default().prefixes)?;
    let merged_dict = lora_files::merge::merge(&base_dict, "base", &back, 1.0)?;
    let by_lycoris = Net::from_state_dict(&merged_dict, "the merged LyCORIS file", &device)?;
    let d = max_diff(by_lycoris.forward(x.clone()), trained.forward(x.clone()));
    check(
        "LyCORIS full diff",
        moved == ["a", "b"] && back.layers.is_empty() && back.diffs.len() == 2 && d < 1e-5,
        format!(
            "layers {moved:?} written as LyCORIS full diffs (their merged update; the separable \
             factors are lost), read back as {} diffs; max |base + diff - trained| = {d:.2e}",
            back.diffs.len()
        ),
    )?;
    if let Some(dir) = fixture {
        write_fixture(
            dir,
            &read,
            &base_dict,
            x.clone(),
            trained.forward(x.clone()),
        )?;
        println!("     fixture written to {}", dir.display());
    }

    // Inflate to 3D: centre inflation is exact on every slice of a volume.
    let net3d = inflate(trained.clone(), &InflateOptions::new(3))?;
    let v = Tensor::<5>::random([2, 3, 1, 10, 10], Distribution::Normal(0.0, 1.0), &device);
    let slice: Tensor<4> = v.clone().squeeze_dim(2);
    let d = max_diff(net3d.forward(v).squeeze_dim::<4>(2), trained.forward(slice));
    check(
        "3D inflation",
        d < 1e-4,
        format!("max |3D - 2D| on a one-slice volume = {d:.2e}"),
    )?;
    Ok(())
}

/// Random factors in the bypass layer (its `up` starts at zero).
fn randomize(layer: LoraConv<Conv2d>) -> lora_core::Result<LoraConv<Conv2d>> {
    struct Noise;
    impl burn::module::ModuleMapper for Noise {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            param.map(|t| {
                let noise = Tensor::random(t.shape(), Distribution::Normal(0.0, 0.3), &t.device());
                t + noise
            })
        }
    }
    let adapter = layer.adapter().clone().map(&mut Noise);
    layer.with_adapter("b", adapter)
}

/// The fixture files (see [`run_with`]).
fn write_fixture(
    dir: &Path,
    file: &lora_files::AdapterFile,
    base: &lora_files::StateDict,
    input: Tensor<4>,
    output: Tensor<4>,
) -> Outcome {
    use lora_files::{StateDict, Stored};
    std::fs::create_dir_all(dir)?;
    base.write(&dir.join("base.safetensors"))?;
    format::write(file, Format::Native, &dir.join("native.safetensors"))?;
    full_diff::write(file, base, "base", &dir.join("lycoris.safetensors"))?;
    let mut reference = StateDict::default();
    for (name, t) in [("input", input), ("output_ours", output)] {
        let dims = t.dims().to_vec();
        let values = t
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        reference
            .tensors
            .insert(name.to_string(), Stored::from_f32(dims, &values));
    }
    reference.write(&dir.join("reference.safetensors"))?;
    Ok(())
}
