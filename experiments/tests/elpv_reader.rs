//! The ELPV reader on images the test makes (the real data is CC BY-NC-SA and never committed):
//! decoding, the labels, area resizing, and a named refusal for each kind of bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use experiments::data::DataError;
use experiments::data::elpv::{self, CellType};

fn png(path: &Path, w: u32, h: u32, color: png::ColorType, pixels: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(pixels)
        .unwrap();
}

/// Pixel (y, x) of test image `n`.
fn pixel(n: usize, y: usize, x: usize) -> u8 {
    ((3 * y + 5 * x + 40 * n) % 256) as u8
}

/// A folder with three 300x300 cells and their labels.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("elpv-{}-{name}", std::process::id()));
    std::fs::create_dir_all(dir.join("images")).unwrap();
    for n in 0..3 {
        let px: Vec<u8> = (0..300 * 300).map(|i| pixel(n, i / 300, i % 300)).collect();
        png(
            &dir.join(format!("images/cell{n}.png")),
            300,
            300,
            png::ColorType::Grayscale,
            &px,
        );
    }
    std::fs::write(
        dir.join("labels.csv"),
        "images/cell0.png  1.0                 mono\n\
         images/cell1.png  0.3333333333333333  poly\n\
         images/cell2.png  0.0                 poly\n",
    )
    .unwrap();
    dir
}

#[test]
fn reads_labels_types_and_block_means() {
    let dir = folder("good");
    let data = elpv::load(&dir, 150).unwrap();
    assert_eq!(data.images.labels, vec![3, 1, 0]);
    assert_eq!(
        data.kinds,
        vec![CellType::Mono, CellType::Poly, CellType::Poly]
    );
    assert_eq!(data.images.dims, vec![150, 150]);
    // 300 -> 150 is the 2x2 block mean, in 0..1.
    for (n, y, x) in [(0, 0, 0), (1, 7, 93), (2, 149, 149), (0, 80, 3)] {
        let mean: f32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|&(dy, dx)| f32::from(pixel(n, 2 * y + dy, 2 * x + dx)) / 255.0)
            .sum::<f32>()
            / 4.0;
        let got = data.images.pixels[n * 150 * 150 + y * 150 + x];
        assert!(
            (got - mean).abs() < 1e-6,
            "image {n} ({y},{x}): {got} vs {mean}"
        );
    }
}

/// Area averaging at a non-integer ratio keeps the image mean (each input pixel's weights over
/// the outputs sum to (m/n)^2) and a constant image constant.
#[test]
fn area_resize_keeps_the_mean_at_any_ratio() {
    let src: Vec<f32> = (0..300 * 300).map(|i| ((i * 7919) % 251) as f32).collect();
    let mean_in = src.iter().map(|&v| f64::from(v)).sum::<f64>() / src.len() as f64;
    for m in [112, 128, 150, 224, 299] {
        let out = elpv::resize_area(&src, 300, m);
        assert_eq!(out.len(), m * m);
        let mean_out = out.iter().map(|&v| f64::from(v)).sum::<f64>() / out.len() as f64;
        assert!(
            (mean_in - mean_out).abs() < 1e-3 * mean_in,
            "{m}: {mean_in} vs {mean_out}"
        );
        let flat = elpv::resize_area(&vec![0.5; 300 * 300], 300, m);
        assert!(
            flat.iter().all(|&v| (v - 0.5).abs() < 1e-5),
            "{m}: constant image"
        );
    }
}

fn refused(dir: &Path, size: usize, needle: &str) -> String {
    let err = elpv::load(dir, size).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
    msg
}

#[test]
fn bad_inputs_are_refused_by_name() {
    // A corrupt PNG.
    let dir = folder("corrupt");
    let mut bytes = std::fs::read(dir.join("images/cell1.png")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(dir.join("images/cell1.png"), bytes).unwrap();
    refused(&dir, 150, "cell1.png");

    // A row whose image is missing: the message names it and the fetch command.
    let dir = folder("missing");
    std::fs::remove_file(dir.join("images/cell2.png")).unwrap();
    let err = elpv::load(&dir, 150).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("cell2.png") && err.to_string().contains("fetch-data.sh"));

    // A wrong image size, and a colour image.
    let dir = folder("size");
    png(
        &dir.join("images/cell0.png"),
        200,
        300,
        png::ColorType::Grayscale,
        &[0; 200 * 300],
    );
    let msg = refused(&dir, 150, "200x300");
    assert!(msg.contains("cell0.png"), "{msg}");
    let dir = folder("rgb");
    png(
        &dir.join("images/cell0.png"),
        300,
        300,
        png::ColorType::Rgb,
        &[0; 3 * 300 * 300],
    );
    refused(&dir, 150, "grayscale");

    // labels.csv rows: an unknown probability, an unknown type, a short row.
    for (name, row, needle) in [
        ("prob", "images/cell0.png 0.5 mono\n", "0.5"),
        ("kind", "images/cell0.png 1.0 cigs\n", "cigs"),
        ("short", "images/cell0.png 1.0\n", "2 fields"),
    ] {
        let dir = folder(name);
        std::fs::write(dir.join("labels.csv"), row).unwrap();
        let msg = refused(&dir, 150, needle);
        assert!(
            msg.contains("labels.csv") && msg.contains("line 1"),
            "{msg}"
        );
    }

    // A size the images cannot give.
    refused(&folder("zero"), 0, "image size 0");
    refused(&folder("big"), 301, "image size 301");
}
