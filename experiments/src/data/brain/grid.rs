//! Putting two volumes on one grid: trilinear resampling through the voxel-to-world affines,
//! and block averaging to coarser voxels.

use std::path::Path;

use crate::data::nifti::Volume;
use crate::data::{Result, format_error};

/// `src` resampled onto the grid of `dims` voxels with voxel-to-world `affine`: each target
/// voxel takes the trilinear interpolation of `src` at the same world point, 0 outside `src`.
/// Where the two grids differ by whole voxels (two 1 mm MNI templates) this is an exact shift.
///
/// # Errors
/// A format error naming `path` when `src`'s affine cannot be inverted.
pub fn resample_onto(
    src: &Volume,
    path: &Path,
    dims: [usize; 3],
    affine: [[f32; 4]; 3],
) -> Result<Volume> {
    let inverse = invert(src.affine).ok_or_else(|| {
        format_error(
            path,
            format!("the voxel-to-world affine {:?} is singular", src.affine),
        )
    })?;
    let map = |m: &[[f64; 4]; 3], p: [f64; 3]| -> [f64; 3] {
        std::array::from_fn(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3])
    };
    let forward: [[f64; 4]; 3] = affine.map(|row| row.map(f64::from));
    let [nx, ny, nz] = dims;
    let mut data = Vec::with_capacity(nx * ny * nz);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let world = map(&forward, [x as f64, y as f64, z as f64]);
                data.push(trilinear(src, map(&inverse, world)));
            }
        }
    }
    Ok(Volume { dims, data, affine })
}

/// The value of `v` at fractional voxel `p`, 0 outside the volume.
fn trilinear(v: &Volume, p: [f64; 3]) -> f32 {
    let base = p.map(f64::floor);
    let frac: [f64; 3] = std::array::from_fn(|k| p[k] - base[k]);
    let mut sum = 0.0f64;
    for corner in 0..8usize {
        let mut weight = 1.0;
        let mut at = [0usize; 3];
        let mut inside = true;
        for k in 0..3 {
            let up = (corner >> k) & 1 == 1;
            weight *= if up { frac[k] } else { 1.0 - frac[k] };
            let i = base[k] + if up { 1.0 } else { 0.0 };
            if i < 0.0 || i >= v.dims[k] as f64 {
                inside = false;
            } else {
                at[k] = i as usize;
            }
        }
        if weight != 0.0 && inside {
            sum += weight * f64::from(v.at(at[0], at[1], at[2]));
        }
    }
    sum as f32
}

/// The inverse of an affine map given as three rows `[a b c | t]`.
fn invert(m: [[f32; 4]; 3]) -> Option<[[f64; 4]; 3]> {
    let a: [[f64; 3]; 3] = std::array::from_fn(|r| std::array::from_fn(|c| f64::from(m[r][c])));
    let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let cof =
        |r0: usize, r1: usize, c0: usize, c1: usize| a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0];
    // The adjugate (transposed cofactors) over the determinant.
    let inv = [
        [cof(1, 2, 1, 2), -cof(0, 2, 1, 2), cof(0, 1, 1, 2)],
        [-cof(1, 2, 0, 2), cof(0, 2, 0, 2), -cof(0, 1, 0, 2)],
        [cof(1, 2, 0, 1), -cof(0, 2, 0, 1), cof(0, 1, 0, 1)],
    ]
    .map(|row| row.map(|v| v / det));
    let t = [f64::from(m[0][3]), f64::from(m[1][3]), f64::from(m[2][3])];
    Some(std::array::from_fn(|r| {
        let shift = -(inv[r][0] * t[0] + inv[r][1] * t[1] + inv[r][2] * t[2]);
        [inv[r][0], inv[r][1], inv[r][2], shift]
    }))
}

/// Block-average a volume by `f` along each axis (x fastest in and out); trailing voxels that
/// do not fill a block are dropped.
pub fn block_average(v: &Volume, f: usize) -> Vec<f32> {
    let f = f.max(1);
    let [nx, ny, nz] = [v.dims[0] / f, v.dims[1] / f, v.dims[2] / f];
    let mut out = Vec::with_capacity(nx * ny * nz);
    let scale = 1.0 / (f * f * f) as f32;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let mut sum = 0.0;
                for dz in 0..f {
                    for dy in 0..f {
                        for dx in 0..f {
                            sum += v.at(x * f + dx, y * f + dy, z * f + dz);
                        }
                    }
                }
                out.push(sum * scale);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(
        dims: [usize; 3],
        affine: [[f32; 4]; 3],
        f: impl Fn(usize, usize, usize) -> f32,
    ) -> Volume {
        let mut data = Vec::new();
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    data.push(f(x, y, z));
                }
            }
        }
        Volume { dims, data, affine }
    }

    /// Two 1 mm grids offset by whole voxels (as the two MNI templates are): an exact shift,
    /// zero where the target lies outside the source.
    #[test]
    fn whole_voxel_offsets_shift_exactly() {
        let src_affine = [
            [1.0, 0.0, 0.0, -8.0],
            [0.0, 1.0, 0.0, -9.0],
            [0.0, 0.0, 1.0, -1.0],
        ];
        let dst_affine = [
            [1.0, 0.0, 0.0, -5.0],
            [0.0, 1.0, 0.0, -6.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        let src = volume([12, 13, 5], src_affine, |x, y, z| {
            (x + 20 * y + 400 * z) as f32
        });
        let out = resample_onto(&src, Path::new("src"), [10, 10, 5], dst_affine).unwrap();
        // Target voxel (x, y, z) is world (x-5, y-6, z), source voxel (x+3, y+3, z+1).
        for z in 0..5 {
            for y in 0..10 {
                for x in 0..10 {
                    let want = if x + 3 < 12 && y + 3 < 13 && z + 1 < 5 {
                        src.at(x + 3, y + 3, z + 1)
                    } else {
                        0.0
                    };
                    assert_eq!(out.at(x, y, z), want, "({x}, {y}, {z})");
                }
            }
        }
    }

    /// A linear field is reproduced exactly by trilinear interpolation at half-voxel offsets,
    /// through a scaled and flipped affine.
    #[test]
    fn linear_fields_interpolate_exactly() {
        let src_affine = [
            [-2.0, 0.0, 0.0, 20.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
        ];
        // World (wx, wy, wz) at source voxel (x, y, z) = (20 - 2x, 2y, 2z); the field is
        // 3·wx + wy - wz.
        let src = volume([11, 8, 8], src_affine, |x, y, z| {
            3.0 * (20.0 - 2.0 * x as f32) + 2.0 * y as f32 - 2.0 * z as f32
        });
        let dst_affine = [
            [1.0, 0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0, 1.0],
            [0.0, 0.0, 1.0, 1.0],
        ];
        let out = resample_onto(&src, Path::new("src"), [12, 10, 10], dst_affine).unwrap();
        for z in 0..10 {
            for y in 0..10 {
                for x in 0..12 {
                    let (wx, wy, wz) = (x as f32 + 1.0, y as f32 + 1.0, z as f32 + 1.0);
                    let want = 3.0 * wx + wy - wz;
                    assert!((out.at(x, y, z) - want).abs() < 1e-4, "({x}, {y}, {z})");
                }
            }
        }
        let singular = Volume {
            affine: [[0.0; 4]; 3],
            ..src
        };
        let err =
            resample_onto(&singular, Path::new("flat.nii"), [2, 2, 2], dst_affine).unwrap_err();
        assert!(err.to_string().contains("flat.nii"), "{err}");
    }

    #[test]
    fn block_average_means_blocks() {
        let affine = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        let v = volume([4, 2, 2], affine, |x, _, _| x as f32);
        assert_eq!(block_average(&v, 2), vec![0.5, 2.5]);
    }
}
