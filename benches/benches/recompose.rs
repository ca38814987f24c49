//! (a) Recomposition of `ΔK` per variant: the library's matmul form, the element-wise loop
//! written from the formulas, and one matmul of equal FLOPs.

#![allow(missing_docs, clippy::unwrap_used)]

use benches::SHAPES;
use benches::loops::{self, recompose_flops};
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group};
use lora_conv::ConvVariant;
use lora_conv::functional::{cp, locon, tucker2};

fn rand(shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn data(x: &Tensor<2>) -> Vec<f32> {
    x.to_data().try_to_vec::<f32>().unwrap()
}

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    device.seed(0);
    let mut group = c.benchmark_group("recompose");
    for (ch, _, r) in SHAPES {
        let (t, cin, kh, kw) = (ch, ch, 3, 3);
        let k = kh * kw;
        let up = rand([t, r], &device);
        for variant in ConvVariant::DECOMPOSITIONS {
            let tag = format!("{variant}-c{ch}-r{r}");
            let flops = recompose_flops(variant, t, cin, k, r);
            // One matmul [t, inner] x [inner, c·K] with the same FLOPs.
            let inner = (flops / (2 * t * cin * k)).max(1);
            let (a, b) = (rand([t, inner], &device), rand([inner, cin * k], &device));
            group.bench_function(format!("matmul/{tag}"), |bch| {
                bch.iter(|| a.clone().matmul(b.clone()).into_data())
            });
            match variant.name() {
                "locon" => {
                    let down = rand([r, cin * k], &device);
                    group.bench_function(format!("library/{tag}"), |bch| {
                        bch.iter(|| locon::delta(down.clone(), up.clone(), 1.0).into_data())
                    });
                    let (d, u) = (data(&down), data(&up));
                    group.bench_function(format!("loop/{tag}"), |bch| {
                        bch.iter(|| loops::locon(&d, &u, t, r, cin * k))
                    });
                }
                "tucker2" => {
                    let (down, mid) = (rand([r, cin], &device), rand([r, r * k], &device));
                    group.bench_function(format!("library/{tag}"), |bch| {
                        bch.iter(|| {
                            tucker2::delta(down.clone(), mid.clone(), up.clone(), 1.0).into_data()
                        })
                    });
                    let (d, m, u) = (data(&down), data(&mid), data(&up));
                    group.bench_function(format!("loop/{tag}"), |bch| {
                        bch.iter(|| loops::tucker2(&d, &m, &u, t, r, cin, k))
                    });
                }
                _ => {
                    let (v, h, w) = (
                        rand([r, cin], &device),
                        rand([kh, r], &device),
                        rand([kw, r], &device),
                    );
                    let spatial = [h.clone(), w.clone()];
                    group.bench_function(format!("library/{tag}"), |bch| {
                        bch.iter(|| cp::delta(up.clone(), v.clone(), &spatial, 1.0).into_data())
                    });
                    let (u, vv, hh, ww) = (data(&up), data(&v), data(&h), data(&w));
                    group.bench_function(format!("loop/{tag}"), |bch| {
                        bch.iter(|| loops::cp2(&u, &vv, &hh, &ww, t, r, cin, kh, kw))
                    });
                }
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = recompose_benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
benches::bench_main!(recompose_benches);
