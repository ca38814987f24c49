//! # lora-3d
//!
//! 2D -> 3D inflation of kernels, layers, networks and adapters (in progress; see the issue
//! tracker). A 2D kernel placed in the centre depth slice of a 3D kernel, with depth padding
//! `(kd-1)/2` and depth stride 1, makes the 3D network equal the 2D network on every slice.
//!
//! ```
//! assert_eq!(lora_3d::centre_padding(3), Some(1));
//! assert_eq!(lora_3d::centre_padding(4), None);
//! ```

/// The depth padding that keeps a centre-inflated kernel of odd depth `kd` exact per slice,
/// `(kd - 1) / 2`, or `None` for an even or zero depth.
pub fn centre_padding(kd: usize) -> Option<usize> {
    (kd % 2 == 1).then(|| (kd - 1) / 2)
}
