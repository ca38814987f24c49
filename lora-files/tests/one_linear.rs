//! One linear LoRA: lora-core's `LinearFactory` (`LoraParam<LinearAdapter>`, burn layout) and
//! the conv carrier restricted to a linear weight (`ConvFactory` with LoCon,
//! `LoraParam<AnyAdapter>`, PyTorch layout, update transposed) are the same adapter. With the
//! same factors (transposed) they give the same outputs, the same gradients and the same adapter
//! file, which, attached to the base, gives those outputs again.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::Conv2dConfig;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::{AnyAdapter, ConvFactory, ConvVariant, LoConAdapter, conv_config};
use lora_core::LoraError;
use lora_core::testing::{assert_close, randomize_adapters};
use lora_core::{LinearAdapter, LinearFactory, LoraConfig, LoraParam, Position, attach};
use lora_files::model::{PathMap, attach_file, file_from_model};

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(6, 5).init(device),
            fc2: LinearConfig::new(5, 3).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

/// The factors of every adapter of `model`, by the adapted weight's path and factor name
/// (`fc1.weight`, `down`), whatever the carrier.
fn factors(model: &Mlp) -> HashMap<(String, String), Tensor<2>> {
    #[derive(Default)]
    struct Collect {
        at: Position,
        base: String,
        out: HashMap<(String, String), Tensor<2>>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.at.outside() {
                self.base = self.at.path();
            } else if let Some(name) = self.at.last() {
                let value = param.val();
                let shape = value.shape();
                self.out
                    .insert((self.base.clone(), name.to_string()), value.reshape(shape));
            }
        }
    }
    let mut c = Collect::default();
    model.visit(&mut c);
    c.out
}

/// `into` (conv carrier) with the factors of `from` (lora-core's linear LoRA), transposed.
fn copy_transposed(into: Mlp, from: &Mlp) -> Mlp {
    struct Replace {
        at: Position,
        base: String,
        from: HashMap<(String, String), Tensor<2>>,
    }
    impl ModuleMapper for Replace {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.at.outside() {
                self.base = self.at.path();
                return param;
            }
            let key = (self.base.clone(), self.at.last().unwrap_or("").to_string());
            let Some(value) = self.from.remove(&key) else {
                return param;
            };
            param.map(|old| {
                let require_grad = old.is_require_grad();
                let new = value.transpose();
                let shape = new.shape();
                new.reshape(shape).detach().set_require_grad(require_grad)
            })
        }
    }
    into.map(&mut Replace {
        at: Position::default(),
        base: String::new(),
        from: factors(from),
    })
}

fn linear_lora(model: &Mlp) -> Option<&LinearAdapter> {
    model
        .fc1
        .weight
        .reparameterization::<LoraParam<LinearAdapter>>()
        .map(|lora| &lora.adapter)
}

fn locon(model: &Mlp) -> Option<&LoConAdapter> {
    model
        .fc1
        .weight
        .reparameterization::<LoraParam<AnyAdapter>>()?
        .adapter
        .downcast_ref::<LoConAdapter>()
}

#[test]
fn linear_lora_and_the_conv_carrier_give_the_same_outputs_gradients_and_file() {
    let device = Device::flex().autodiff();
    device.seed(22);
    let base = Mlp::new(&device);
    let core = attach(&base, &LoraConfig::new(2, 4.0), &LinearFactory).expect("attach core");
    let core = randomize_adapters(core, 0.3);
    let conv = attach(
        &base,
        &LoraConfig::new(2, 4.0),
        &ConvFactory::linear(ConvVariant::LoCon),
    )
    .expect("attach conv");
    let conv = copy_transposed(conv, &core);
    assert_eq!(
        lora_core::param_counts(&core),
        lora_core::param_counts(&conv)
    );

    let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
    let (y_core, y_conv) = (core.forward(x.clone()), conv.forward(x.clone()));
    assert_close(y_core.clone(), y_conv.clone(), 1e-6, "outputs");
    // Not trivially equal: the update is non-zero.
    assert!(
        (y_core.clone() - base.forward(x.clone()))
            .abs()
            .max()
            .into_scalar::<f32>()
            > 1e-3,
        "the adapters change the output"
    );

    let (g_core, g_conv) = (y_core.sum().backward(), y_conv.sum().backward());
    let a = linear_lora(&core).expect("lora-core linear LoRA on fc1");
    let b = locon(&conv).expect("LoCon in the carrier on fc1");
    for (name, core_factor, conv_factor) in [
        ("down", a.down.val(), b.down.val()),
        ("up", a.up.val(), b.up.val()),
    ] {
        let gc = core_factor.grad(&g_core).expect("core gradient");
        let gv = conv_factor.grad(&g_conv).expect("conv gradient");
        assert_close(gc.transpose(), gv, 1e-6, name);
    }

    // Both give the same file (LoCon layers, PyTorch layout), and it gives the same outputs
    // attached to the base.
    let file = file_from_model(&conv, &PathMap::identity()).expect("save");
    let core_file = file_from_model(&core, &PathMap::identity()).expect("save lora-core's");
    let summary = |f: &lora_files::AdapterFile| {
        f.layers
            .iter()
            .map(|l| {
                (
                    l.module.clone(),
                    l.algorithm.name(),
                    l.rank,
                    l.scale,
                    l.factors.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(&core_file),
        summary(&file),
        "the two linear LoRAs' files"
    );
    assert_eq!(
        file.layers
            .iter()
            .map(|l| l.algorithm.name())
            .collect::<Vec<_>>(),
        ["locon", "locon"]
    );
    let loaded = attach_file(&base, &file, &PathMap::identity(), vec![]).expect("load");
    assert_close(core.forward(x.clone()), loaded.forward(x), 1e-6, "file");
}

#[test]
fn the_linear_conv_factory_refuses_a_conv_kernel() {
    let device = Device::flex();
    let conv = Conv2dConfig::new([3, 4], [3, 3]).init(&device);
    let err = attach(
        &conv,
        &conv_config(2, 4.0),
        &ConvFactory::linear(ConvVariant::LoCon),
    )
    .expect_err("a conv kernel is not a linear weight");
    match err {
        LoraError::UnsupportedGeometry { path, reason } => {
            assert_eq!(path, "weight");
            assert!(reason.contains("linear weights"), "{reason}");
        }
        other => panic!("expected UnsupportedGeometry, got {other}"),
    }
    // The unrestricted factory adapts it.
    attach(
        &conv,
        &conv_config(2, 4.0),
        &ConvFactory::new(ConvVariant::LoCon),
    )
    .expect("ConvFactory::new adapts conv kernels");
}
