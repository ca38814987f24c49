//! Keep freed memory in the process, so that a training loop reuses it instead of asking the
//! kernel for fresh pages on every step.
//!
//! A training step allocates and frees the same large tensors (activations, their gradients,
//! im2col buffers) every step. glibc's malloc serves a request above its mmap threshold
//! (128 KiB at first, adjusted at run time) with a fresh `mmap`, and hands freed memory at the
//! top of its heap back to the kernel once more than the trim threshold is free. Each fresh
//! page then costs a page fault when the step first writes it. Measured on the development
//! machine (2 cores, burn `flex`), one full fine-tuning step of the bench CNN took 235–270 ms
//! with glibc's defaults and 208–212 ms with `mmap` off and trimming off; an adapter step
//! gained more (Tucker-2 rank 4: 188 -> 162 ms), because its frozen convs leave more of the
//! step to allocation.
//!
//! The cost is that the process keeps its peak heap until it exits, which is what a training
//! run needs anyway. The training binaries (`compare`, `inflate3d`, `demo`) and the timing
//! benches call [`keep_freed_memory`] first;
//! a program using the library crates can call it too, or start with
//! `GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647`.

/// Tell glibc's malloc to serve every request from its heaps (no `mmap`) and never trim them.
///
/// Returns whether both settings were applied: `false` where the C library is not glibc (the
/// call does nothing there) or glibc refused a value.
#[allow(unsafe_code)]
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers by value and changes only malloc's own
        // parameters, under malloc's lock; it is sound to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// glibc accepts both settings (a wrong parameter or value makes mallopt return 0).
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_both_settings() {
        assert!(super::keep_freed_memory());
    }
}
