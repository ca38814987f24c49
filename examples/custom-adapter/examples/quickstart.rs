//! The README's quick start, word for word below this header: `cargo test --workspace` compiles
//! it, `tests/readme.rs` checks the README still shows exactly this code, and
//! `cargo run -p custom-adapter --example quickstart` runs it (it writes `adapter.safetensors`
//! and `peft-adapter/` in the current directory).

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Int, Tensor};
use lora_conv::{ConvFactory, conv_config};
use lora_core::{attach, merge, param_counts};
use lora_files::Format;
use lora_files::format::{self, ReadOptions};
use lora_files::model::{PathMap, attach_file, file_from_model};

#[derive(Module, Debug)]
struct Net {
    conv1: Conv2d,
    conv2: Conv2d,
    head: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        Self {
            conv1: conv(3, 16),
            conv2: conv(16, 32),
            head: LinearConfig::new(32, 4).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.conv2.forward(relu(self.conv1.forward(x))));
        let [n, c, _, _] = x.dims();
        self.head.forward(x.mean_dim(3).mean_dim(2).reshape([n, c]))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex().autodiff();
    let base = Net::new(&device); // your pretrained network (e.g. loaded with burn-store)

    // 1. Config: LoCon of rank 4 (alpha 4, so scale alpha/r = 1) on both convs; the new
    //    head trains in full. Patterns are regexes over full parameter paths.
    let config = conv_config(4, 4.0)
        .with_targets(vec![r"conv\d\.weight".into()])
        .with_trainable(vec![r"head\..*".into()]);
    // Other types: "cp", "loha", "lokr", "dora", ... (PEFT files hold LoCon and DoRA only).
    let factory = ConvFactory::new("locon".parse()?);
    let mut model = attach(&base, &config, &factory)?; // `base` is left as it was

    // 2. Trainable parameters: the factors and the head; the conv weights are frozen.
    let counts = param_counts(&model);
    println!("trainable: {} of {}", counts.trainable, counts.total);

    // 3. Train: a plain burn loop; the model's own code does not change.
    let x = Tensor::<4>::random([8, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_data([0i64, 1, 2, 3, 0, 1, 2, 3], &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = AdamConfig::new().init();
    for _ in 0..20 {
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }

    // 4. Save the adapter (factors, scales, the trained head, any BatchNorm statistics).
    let file = file_from_model(&model, &PathMap::identity())?;
    format::write(&file, Format::Native, Path::new("adapter.safetensors"))?;

    // 5. Load it onto the base.
    let saved = format::read(Path::new("adapter.safetensors"), &ReadOptions::default())?;
    let reloaded = attach_file(&base, &saved, &PathMap::identity(), vec![])?;

    // 6. Merge: W <- W + scale·ΔW, so inference costs what the base costs.
    let merged = merge(&reloaded)?;
    let diff = (merged.forward(x.clone()) - model.forward(x.clone()))
        .abs()
        .max();
    println!("merged vs trained: {}", diff.into_scalar::<f32>());

    // 7. PEFT: write a PEFT adapter directory, and load one (here, that one).
    format::write(&file, Format::Peft, Path::new("peft-adapter"))?;
    let peft = format::read(Path::new("peft-adapter"), &ReadOptions::default())?;
    let from_peft = attach_file(&base, &peft, &PathMap::identity(), vec![])?;
    let diff = (from_peft.forward(x.clone()) - model.forward(x))
        .abs()
        .max();
    println!("PEFT vs trained: {}", diff.into_scalar::<f32>());
    Ok(())
}
