//! The bad-input sweep for lora-3d: options, layers and adapters that inflation must refuse,
//! each with an `Err` (never a panic) whose message names the offending value.

#![allow(clippy::unwrap_used, missing_docs)]

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv1dConfig, Conv2d, Conv2dConfig};
use burn::tensor::Device;
use lora_3d::{InflateMode, InflateOptions, MAX_DEPTH, inflate, inflate_adapter, inflate_kernel};
use lora_conv::{AnyAdapter, ConvVariant, LoConAdapter};
use lora_core::{AdapterSpec, LinearAdapter};

#[test]
fn lora_3d_entry_points_refuse_bad_inputs() {
    let device = Device::flex();
    let mut tried = 0;
    let mut problems: Vec<String> = Vec::new();
    let mut refuses =
        |name: &str, needle: &str, run: &dyn Fn() -> Result<Box<dyn Debug>, String>| {
            tried += 1;
            match catch_unwind(AssertUnwindSafe(run)) {
                Err(_) => problems.push(format!("{name}: panicked")),
                Ok(Ok(v)) => problems.push(format!("{name}: accepted, returned {v:?}")),
                Ok(Err(m)) if !m.contains(needle) => {
                    problems.push(format!("{name}: message does not name `{needle}`: {m}"));
                }
                Ok(Err(_)) => {}
            }
        };
    let conv = |padding: PaddingConfig2d, stride: [usize; 2], kernel: [usize; 2]| -> Conv2d {
        Conv2dConfig::new([2, 4], kernel)
            .with_padding(padding)
            .with_stride(stride)
            .init(&Device::flex())
    };
    let plain = || conv(PaddingConfig2d::Valid, [1, 1], [3, 3]);
    let inflate_with = |c: Conv2d, o: InflateOptions| -> Result<Box<dyn Debug>, String> {
        inflate(c, &o)
            .map(|c| Box::new(c.kernel_size) as Box<dyn Debug>)
            .map_err(|e| e.to_string())
    };

    refuses("depth 0", "got 0", &|| {
        inflate_with(plain(), InflateOptions::new(0))
    });
    refuses("even depth", "got 4", &|| {
        inflate_with(plain(), InflateOptions::new(4))
    });
    refuses("depth usize::MAX (odd)", &usize::MAX.to_string(), &|| {
        inflate_with(plain(), InflateOptions::new(usize::MAX))
    });
    refuses("depth MAX_DEPTH + 2", "4097", &|| {
        inflate_with(plain(), InflateOptions::new(MAX_DEPTH + 2))
    });
    refuses(
        "inflate_kernel depth usize::MAX",
        &usize::MAX.to_string(),
        &|| {
            inflate_kernel(
                burn::tensor::Tensor::<4>::zeros([2, 2, 3, 3], &Device::flex()),
                usize::MAX,
                InflateMode::Centre,
            )
            .map(|k| Box::new(k.dims()) as Box<dyn Debug>)
            .map_err(|e| e.to_string())
        },
    );
    refuses("centre depth stride 2", "stride 2", &|| {
        inflate_with(plain(), InflateOptions::new(3).with_depth_stride(2))
    });
    refuses("centre depth padding 0", "padding 0", &|| {
        inflate_with(plain(), InflateOptions::new(5).with_depth_padding(0))
    });
    refuses("mean depth stride 0", "stride 0", &|| {
        inflate_with(
            plain(),
            InflateOptions::new(3)
                .with_mode(InflateMode::Mean)
                .with_depth_stride(0),
        )
    });
    refuses("mean depth padding 3 > 1", "padding 3", &|| {
        inflate_with(
            plain(),
            InflateOptions::new(3)
                .with_mode(InflateMode::Mean)
                .with_depth_padding(3),
        )
    });
    // The boundary: (kd-1)/2 + 1 is already too much.
    refuses("mean depth padding 2 > 1", "padding 2", &|| {
        inflate_with(
            plain(),
            InflateOptions::new(3)
                .with_mode(InflateMode::Mean)
                .with_depth_padding(2),
        )
    });
    refuses(
        "asymmetric padding",
        "top 1, left 1, bottom 0, right 1",
        &|| {
            inflate_with(
                conv(PaddingConfig2d::Explicit(1, 1, 0, 1), [1, 1], [3, 3]),
                InflateOptions::new(3),
            )
        },
    );
    refuses("Same with stride 2", "stride [2, 2]", &|| {
        inflate_with(
            conv(PaddingConfig2d::Same, [2, 2], [3, 3]),
            InflateOptions::new(3),
        )
    });
    refuses("Same with an even kernel", "kernel [2, 3]", &|| {
        inflate_with(
            conv(PaddingConfig2d::Same, [1, 1], [2, 3]),
            InflateOptions::new(3),
        )
    });
    let spec = AdapterSpec::new(1, 1.0);
    refuses("inflate a linear adapter", "head.weight", &|| {
        let a = AnyAdapter::linear(LoConAdapter::from_linear(
            &LinearAdapter::new("head.weight", 6, 5, &spec, &device).unwrap(),
        ));
        inflate_adapter("head.weight", a, &InflateOptions::new(3))
            .map(|_| Box::new(()) as Box<dyn Debug>)
            .map_err(|e| e.to_string())
    });
    for v in ConvVariant::BUILTIN {
        refuses(
            &format!("inflate a {v} adapter of a Conv1d kernel"),
            "[4, 2, 3]",
            &|| {
                let shape = Conv1dConfig::new(2, 4, 3).init(&device).weight.lazy_shape();
                let a = v
                    .build("c.weight", &shape.to_vec(), &spec, &device)
                    .unwrap();
                inflate_adapter("c.weight", a, &InflateOptions::new(3))
                    .map(|_| Box::new(()) as Box<dyn Debug>)
                    .map_err(|e| e.to_string())
            },
        );
        refuses(
            &format!("inflate a {v} adapter with depth usize::MAX"),
            "above",
            &|| {
                let a = v.build("c.weight", &[4, 2, 3, 3], &spec, &device).unwrap();
                inflate_adapter("c.weight", a, &InflateOptions::new(usize::MAX))
                    .map(|_| Box::new(()) as Box<dyn Debug>)
                    .map_err(|e| e.to_string())
            },
        );
        refuses(
            &format!("inflate a {v} adapter with depth 0"),
            "got 0",
            &|| {
                let a = v.build("c.weight", &[4, 2, 3, 3], &spec, &device).unwrap();
                inflate_adapter("c.weight", a, &InflateOptions::new(0))
                    .map(|_| Box::new(()) as Box<dyn Debug>)
                    .map_err(|e| e.to_string())
            },
        );
    }
    eprintln!("lora-3d: {tried} bad inputs tried");
    assert!(
        problems.is_empty(),
        "lora-3d: {} of {tried} cases failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
