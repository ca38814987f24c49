//! The crate's one use of `unsafe`: a bounds-checked, single-threaded call of the `gemm` crate's
//! f32 matrix product (the kernel burn's `flex` backend itself runs), for operands that are
//! strided views into plain slices.

use core::fmt;

/// A matrix view into a slice: element `(r, c)` is `data[offset + r·row_stride + c·col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("len", &self.data.len())
            .field("offset", &self.offset)
            .field("row_stride", &self.row_stride)
            .field("col_stride", &self.col_stride)
            .finish()
    }
}

impl View<'_> {
    /// Whether every element of a `rows x cols` matrix lies inside the slice.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        let last = (rows - 1)
            .checked_mul(self.row_stride)
            .zip((cols - 1).checked_mul(self.col_stride))
            .and_then(|(a, b)| a.checked_add(b))
            .and_then(|d| d.checked_add(self.offset));
        matches!(last, Some(i) if i < self.data.len())
            && isize::try_from(self.row_stride).is_ok()
            && isize::try_from(self.col_stride).is_ok()
    }
}

/// `dst = lhs · rhs` for an `m x k` `lhs` and a `k x n` `rhs`, into a row-major `m x n` `dst`,
/// on the calling thread. Returns `false`, and leaves `dst` untouched, when an operand does not
/// fit its slice.
pub(crate) fn matmul(dst: &mut [f32], m: usize, n: usize, k: usize, lhs: View, rhs: View) -> bool {
    let fits =
        dst.len() == m * n && lhs.covers(m, k) && rhs.covers(k, n) && isize::try_from(n).is_ok();
    if !fits {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        dst.fill(0.0);
        return true;
    }
    // SAFETY: `covers` checked that every element the product reads, at
    // `offset + r·row_stride + c·col_stride` for r < rows and c < cols, lies inside its slice
    // (and that the strides fit in isize); `dst` is exactly m·n elements written row-major
    // (column stride 1, row stride n), and is borrowed mutably, so nothing else aliases it.
    // With `read_dst` false gemm overwrites dst (alpha is ignored) with beta·lhs·rhs.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the triple loop, with transposed and offset operands.
    #[test]
    fn matches_the_loop_on_strided_views() {
        let (m, n, k) = (5, 7, 9);
        let a: Vec<f32> = (0..200).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
        let b: Vec<f32> = (0..200).map(|i| ((i * 17) % 19) as f32 - 9.0).collect();
        // lhs (r, c) at 3 + r + c·m (column-major); rhs (r, c) at 5 + r·n + c.
        let lhs = View {
            data: &a,
            offset: 3,
            row_stride: 1,
            col_stride: m,
        };
        let rhs = View {
            data: &b,
            offset: 5,
            row_stride: n,
            col_stride: 1,
        };
        let mut dst = vec![f32::NAN; m * n];
        assert!(matmul(&mut dst, m, n, k, lhs, rhs));
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|i| a[3 + r + i * m] * b[5 + i * n + c]).sum();
                assert!((dst[r * n + c] - want).abs() < 1e-3, "({r}, {c})");
            }
        }
    }

    /// An operand one element past its slice is refused, and dst stays as it was.
    #[test]
    fn refuses_out_of_bounds() {
        let a = vec![1.0f32; 12];
        let mut dst = vec![7.0f32; 4];
        let ok = View {
            data: &a,
            offset: 0,
            row_stride: 3,
            col_stride: 1,
        };
        let past = View {
            data: &a,
            offset: 1,
            row_stride: 3,
            col_stride: 1,
        };
        assert!(matmul(
            &mut dst,
            2,
            2,
            3,
            ok,
            View {
                row_stride: 2,
                col_stride: 1,
                ..ok
            }
        ));
        assert!(!matmul(&mut dst, 4, 2, 3, past, ok));
        let before = dst.clone();
        assert!(!matmul(&mut dst, 2, 2, 3, ok, View { offset: 7, ..ok }));
        assert_eq!(dst, before);
    }
}
