//! Augmentation that respects images without a preferred orientation (solar cells: busbars and
//! cracks run either way): the 8 symmetries of the square, rotations by 90 degrees and mirror
//! images. None of them resamples a pixel. [`crate::train::Augment::Dihedral`] applies one per
//! training example.

/// Symmetry `t` (0..8) of the `n`x`n` image `src`, written into `dst`: `t & 3` quarter turns
/// clockwise, then a left-right mirror when `t & 4` is set. `t = 0` is the identity.
pub fn dihedral(src: &[f32], n: usize, t: usize, dst: &mut [f32]) {
    for y in 0..n {
        for x in 0..n {
            // Where the output pixel (y, x) comes from: undo the mirror, then the turns.
            let (my, mx) = if t & 4 != 0 { (y, n - 1 - x) } else { (y, x) };
            let (sy, sx) = match t & 3 {
                0 => (my, mx),
                1 => (n - 1 - mx, my),
                2 => (n - 1 - my, n - 1 - mx),
                _ => (mx, n - 1 - my),
            };
            dst[y * n + x] = src[sy * n + sx];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8 transforms are distinct, each is a permutation, and they compose as the dihedral
    /// group does: four quarter turns are the identity, a mirror is its own inverse.
    #[test]
    fn the_eight_symmetries() {
        let n = 5;
        let src: Vec<f32> = (0..n * n).map(|i| i as f32).collect();
        let images: Vec<Vec<f32>> = (0..8)
            .map(|t| {
                let mut d = vec![0.0; n * n];
                dihedral(&src, n, t, &mut d);
                d
            })
            .collect();
        for (t, img) in images.iter().enumerate() {
            let mut sorted = img.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, src, "transform {t} is a permutation");
            for u in 0..t {
                assert_ne!(img, &images[u], "transforms {u} and {t} differ");
            }
        }
        // A quarter turn clockwise moves the top-left corner to the top-right.
        assert_eq!(images[1][n - 1], src[0]);
        let mut twice = vec![0.0; n * n];
        let mut four = vec![0.0; n * n];
        dihedral(&images[1], n, 1, &mut twice);
        assert_eq!(twice, images[2]);
        dihedral(&images[2], n, 2, &mut four);
        assert_eq!(four, src);
        let mut back = vec![0.0; n * n];
        dihedral(&images[4], n, 4, &mut back);
        assert_eq!(back, src);
    }
}
