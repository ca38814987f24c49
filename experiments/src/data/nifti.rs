//! NIfTI-1 volumes through the `nifti` crate.

use std::path::Path;

use nifti::{InMemNiftiObject, NiftiObject, NiftiVolume, RandomAccessNiftiVolume};

use super::{Result, format_error};

/// A 3-D scalar volume with its voxel-to-world affine.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Sizes `[nx, ny, nz]`.
    pub dims: [usize; 3],
    /// Values (scaled by the header's slope/intercept), x fastest: `x + nx·(y + ny·z)`.
    pub data: Vec<f32>,
    /// Rows of the voxel-to-world affine (the sform, or the pixdim scaling if there is none).
    pub affine: [[f32; 4]; 3],
}

impl Volume {
    /// The value at voxel `(x, y, z)`.
    ///
    /// # Panics
    /// Out of bounds (a programmer error).
    pub fn at(&self, x: usize, y: usize, z: usize) -> f32 {
        let [nx, ny, _] = self.dims;
        self.data[x + nx * (y + ny * z)]
    }

    /// World coordinates of voxel `(x, y, z)`.
    pub fn world(&self, x: usize, y: usize, z: usize) -> [f32; 3] {
        let v = [x as f32, y as f32, z as f32, 1.0];
        self.affine
            .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
    }
}

/// Read a `.nii` or `.nii.gz` 3-D volume.
///
/// The header is checked against the file's length before the `nifti` crate reads it, so a
/// truncated file or one that declares a huge volume is refused without allocating the
/// declared size.
///
/// # Errors
/// A missing or malformed file (bad header size, dimensions, voxel size or data offset, or less
/// data than the header declares), or a volume that is not 3-D.
pub fn read_volume(path: &Path) -> Result<Volume> {
    let bytes = checked_bytes(path)?;
    let object = InMemNiftiObject::from_reader(&bytes[..])
        .map_err(|e| format_error(path, format!("cannot read NIfTI: {e}")))?;
    let header = object.header().clone();
    let volume = object.into_volume();
    let dim = volume.dim().to_vec();
    if dim.len() != 3 {
        return Err(format_error(
            path,
            format!("expected a 3-D volume, got dims {dim:?}"),
        ));
    }
    let dims = [dim[0] as usize, dim[1] as usize, dim[2] as usize];
    let mut data = Vec::with_capacity(dims.iter().product());
    for z in 0..dim[2] {
        for y in 0..dim[1] {
            for x in 0..dim[0] {
                let v = volume
                    .get_f32(&[x, y, z])
                    .map_err(|e| format_error(path, format!("bad voxel ({x}, {y}, {z}): {e}")))?;
                data.push(v);
            }
        }
    }
    let affine = if header.sform_code > 0 {
        [header.srow_x, header.srow_y, header.srow_z]
    } else {
        let p = header.pixdim;
        [
            [p[1], 0.0, 0.0, 0.0],
            [0.0, p[2], 0.0, 0.0],
            [0.0, 0.0, p[3], 0.0],
        ]
    };
    Ok(Volume { dims, data, affine })
}

/// The file's bytes (decompressed for `.gz`), once its NIfTI-1 header (little- or big-endian)
/// has been checked against their length: header size 348, 1 to 7 positive dimensions, a voxel
/// size the datatypes have, a data offset of at least 348, and enough bytes after it for the
/// declared volume, all in checked arithmetic.
fn checked_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = super::read(path)?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out)
            .map_err(|e| format_error(path, format!("bad gzip data: {e}")))?;
        out
    } else {
        raw
    };
    let bad = |reason: String| Err(format_error(path, reason));
    if bytes.len() < 348 {
        return bad(format!(
            "{} bytes is shorter than a NIfTI-1 header (348)",
            bytes.len()
        ));
    }
    let le = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == 348;
    let be = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == 348;
    if !le && !be {
        return bad("not a NIfTI-1 file (header size is not 348)".into());
    }
    let i16_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1]];
        if le {
            i16::from_le_bytes(b)
        } else {
            i16::from_be_bytes(b)
        }
    };
    let f32_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if le {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        }
    };
    let ndim = i16_at(40);
    if !(1..=7).contains(&ndim) {
        return bad(format!("dim[0] = {ndim}: a volume has 1 to 7 dimensions"));
    }
    let mut voxels = 1usize;
    for i in 1..=ndim as usize {
        let d = i16_at(40 + 2 * i);
        if d <= 0 {
            return bad(format!("dim[{i}] = {d}: dimensions must be positive"));
        }
        voxels = voxels.saturating_mul(d as usize);
    }
    let bitpix = i16_at(72);
    if ![8, 16, 24, 32, 64, 128, 256].contains(&bitpix) {
        return bad(format!("bitpix = {bitpix} is not a NIfTI voxel size"));
    }
    let offset = f32_at(108);
    if !(offset.is_finite() && offset >= 348.0 && offset <= bytes.len() as f32) {
        return bad(format!(
            "vox_offset = {offset} is not within the {}-byte file",
            bytes.len()
        ));
    }
    let need = voxels.saturating_mul(bitpix as usize / 8);
    let have = bytes.len() - offset as usize;
    if need > have {
        return bad(format!(
            "the header declares {need} bytes of voxel data, the file holds {have}"
        ));
    }
    Ok(bytes)
}

/// Write an uncompressed NIfTI-1 (`.nii`) volume of unsigned bytes with an sform affine (for
/// tests and tools).
pub fn write_u8_nii(dims: [usize; 3], data: &[u8], affine: [[f32; 4]; 3]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    let put_i32 =
        |h: &mut Vec<u8>, at: usize, v: i32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put_i16 =
        |h: &mut Vec<u8>, at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 =
        |h: &mut Vec<u8>, at: usize, v: f32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put_i32(&mut h, 0, 348);
    let d = [3, dims[0], dims[1], dims[2], 1, 1, 1, 1];
    for (i, &v) in d.iter().enumerate() {
        put_i16(&mut h, 40 + 2 * i, i16::try_from(v).unwrap_or(i16::MAX));
    }
    put_i16(&mut h, 70, 2); // DT_UINT8
    put_i16(&mut h, 72, 8); // bitpix
    for i in 0..8 {
        put_f32(&mut h, 76 + 4 * i, 1.0); // pixdim
    }
    put_f32(&mut h, 108, 352.0); // vox_offset
    put_f32(&mut h, 112, 1.0); // scl_slope
    put_i16(&mut h, 254, 4); // sform_code
    for (r, row) in affine.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            put_f32(&mut h, 280 + 16 * r + 4 * c, v);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    h.extend_from_slice(data);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_written_volume() {
        let dims = [4, 3, 2];
        let data: Vec<u8> = (0..24).map(|i| i as u8 * 5).collect();
        let affine = [
            [2.0, 0.0, 0.0, -3.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 1.0],
        ];
        let path = std::env::temp_dir().join(format!("vol-{}.nii", std::process::id()));
        std::fs::write(&path, write_u8_nii(dims, &data, affine)).unwrap();
        let vol = read_volume(&path).unwrap();
        assert_eq!(vol.dims, dims);
        assert_eq!(vol.at(1, 2, 1), f32::from(data[1 + 4 * (2 + 3)]));
        assert_eq!(vol.world(1, 0, 0), [-1.0, 0.0, 1.0]);
        std::fs::write(&path, b"not a nifti file").unwrap();
        assert!(read_volume(&path).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
