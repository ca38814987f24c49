//! Peak memory of one training step of the experiment CNN and of the ResNet-29 (batch 32 at
//! 150 px, the transfer study's backbone), per form.
//!
//! The bench binary counts every heap allocation (a counting wrapper around the system
//! allocator, which burn `flex` allocates through). For each configuration it builds the model,
//! takes one warm-up step (so Adam's moment buffers exist), resets the peak to the bytes live
//! at that moment, takes one more step and reports how far the live bytes rose above that
//! level: activations kept for backward, gradients, ΔW and its gradient, and temporaries.
//! Output: JSON lines on stdout and `$BENCH_OUT/memory.json`.

#![allow(missing_docs, clippy::unwrap_used)]
// The counting allocator is the one unsafe item of the workspace: it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use benches::cnn::{self, Trainer};
use benches::resnet::{self, Stepper};
use burn::tensor::Device;
use lora_conv::{ConvVariant, ForwardMode};

struct Counting;

/// Count `bytes` more as live, raising the peak if the live total passes it.
fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the same arguments; the counters are only
// bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `System.alloc`.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `System.dealloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `System.alloc_zeroed`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `System.realloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes the live heap rose above its level at the start of the second step, at its peak.
fn peak_of_one_step(step: &mut dyn FnMut() -> f32) -> usize {
    step();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    step();
    PEAK.load(Ordering::Relaxed).saturating_sub(before)
}

fn main() {
    let device = Device::flex().autodiff();
    device.seed(0);
    let base = cnn::config().init(&device);
    let mut lines = Vec::new();
    let mut report = |config: String, bytes: usize| {
        let line = format!("{{\"config\": \"{config}\", \"peak_step_bytes\": {bytes}}}");
        println!("{line}");
        lines.push(line);
    };
    let mut full = Trainer::new(base.clone(), &device);
    report("full".into(), peak_of_one_step(&mut || full.step()));
    drop(full);
    for variant in ConvVariant::DECOMPOSITIONS {
        for mode in ForwardMode::ALL {
            let model = cnn::adapted(&base, variant, 4, mode, &device).unwrap();
            let mut trainer = Trainer::new(model, &device);
            let bytes = peak_of_one_step(&mut || trainer.step());
            report(format!("{variant}-r4-{mode}"), bytes);
        }
    }
    let (x, y) = resnet::batch(32, 150, &device);
    let mut full = Stepper::new(
        resnet::full(&device),
        |m, x| m.forward(x),
        x.clone(),
        y.clone(),
    );
    report(
        "resnet29-full".into(),
        peak_of_one_step(&mut || full.step()),
    );
    drop(full);
    for variant in ConvVariant::DECOMPOSITIONS {
        for mode in ForwardMode::ALL {
            let model = resnet::adapted(variant, 4, mode, &device).unwrap();
            let mut stepper = Stepper::new(model, |m, x| m.forward(x), x.clone(), y.clone());
            let bytes = peak_of_one_step(&mut || stepper.step());
            report(format!("resnet29-{variant}-r4-{mode}"), bytes);
        }
    }
    let dir = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench-extra".into());
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            format!("{dir}/memory.json"),
            format!("[{}]\n", lines.join(",\n")),
        );
    }
}
