//! The IDX format of (Fashion-)MNIST, optionally gzip-compressed.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::{Images, Result, format_error, read};

/// Read an IDX file: magic `0x00 0x00 0x08 ndim`, then `ndim` big-endian u32 sizes, then u8
/// data. Returns the sizes and the data. `.gz` files are decompressed.
///
/// # Errors
/// A missing file, bad gzip, a wrong magic number, sizes whose product overflows, or a data
/// length that disagrees with the sizes.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = read(path)?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format_error(path, format!("bad gzip data: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(format_error(
            path,
            "not an IDX file of unsigned bytes (magic 00 00 08 nd)",
        ));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format_error(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    // Checked: declared sizes can multiply past usize (the count is compared with the bytes
    // present before anything of that size is allocated).
    let Some(count) = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        return Err(format_error(
            path,
            format!("IDX sizes {dims:?} overflow: no file holds that many bytes"),
        ));
    };
    if bytes.len() - header != count {
        return Err(format_error(
            path,
            format!(
                "IDX sizes {dims:?} need {count} bytes of data, the file has {}",
                bytes.len() - header
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Read an images file `[n, h, w]` and a labels file `[n]` into [`Images`] (pixels / 255).
///
/// # Errors
/// As [`read_idx`], and a count mismatch between the files.
pub fn read_images(images: &Path, labels: &Path) -> Result<Images> {
    let (dims, pixels) = read_idx(images)?;
    let (ldims, labels_raw) = read_idx(labels)?;
    if dims.len() != 3 || ldims.len() != 1 || dims[0] != ldims[0] {
        return Err(format_error(
            images,
            format!("images {dims:?} and labels {ldims:?} do not pair up"),
        ));
    }
    Ok(Images {
        pixels: pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        dims: dims[1..].to_vec(),
        labels: labels_raw.iter().map(|&l| l as usize).collect(),
    })
}

/// Write an IDX file (for tests and tools).
///
/// # Panics
/// If a size does not fit in a u32 or `data` disagrees with `dims` (programmer errors).
pub fn write_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "IDX data length"
    );
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d).unwrap_or(u32::MAX);
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    #[test]
    fn round_trip_plain_and_gz() {
        let dir = std::env::temp_dir().join(format!("idx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 10) as u8).collect();
        let images = dir.join("img-idx3-ubyte.gz");
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&write_idx(&[2, 3, 4], &pixels)).unwrap();
        std::fs::write(&images, gz.finish().unwrap()).unwrap();
        let labels = dir.join("lbl-idx1-ubyte");
        std::fs::write(&labels, write_idx(&[2], &[7, 3])).unwrap();

        let set = read_images(&images, &labels).unwrap();
        assert_eq!(set.dims, vec![3, 4]);
        assert_eq!(set.labels, vec![7, 3]);
        assert_eq!(set.pixels[5], 50.0 / 255.0);

        // A truncated file and a label count mismatch are errors.
        std::fs::write(&labels, write_idx(&[3], &[1, 2, 3])).unwrap();
        assert!(read_images(&images, &labels).is_err());
        std::fs::write(&labels, &write_idx(&[2], &[1, 2])[..9]).unwrap();
        let err = read_idx(&labels).unwrap_err().to_string();
        assert!(err.contains("need 2 bytes"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
