//! NIfTI-1 volumes through the `nifti` crate.

use std::path::Path;

use nifti::{NiftiObject, NiftiVolume, RandomAccessNiftiVolume, ReaderOptions};

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
/// # Errors
/// A missing or malformed file, or a volume that is not 3-D.
pub fn read_volume(path: &Path) -> Result<Volume> {
    let object = ReaderOptions::new()
        .read_file(path)
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
