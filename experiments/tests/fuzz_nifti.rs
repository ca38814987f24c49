//! The NIfTI reader on mangled files: every truncation, every bit of the 352-byte header
//! flipped, and volumes declared far larger than the data. Every outcome is a volume whose
//! sizes match its data or an `Err` naming the file, never a panic; a file with less data than
//! its header declares is always refused, and is refused before anything of the declared size
//! is allocated (the header is checked against the file's length first).

#![allow(clippy::unwrap_used, missing_docs)]
// A counting allocator (forwarding to `System`) to see what a read allocates.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use experiments::data::nifti::{read_volume, write_u8_nii};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` unchanged; the counter is bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as `System.alloc`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `System.dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as `System.realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fuzz-nifti-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Whether `bytes` read as a volume; fails the test on a panic or an inconsistent volume.
fn check(path: &Path, bytes: &[u8], what: &str) -> bool {
    std::fs::write(path, bytes).unwrap();
    match catch_unwind(AssertUnwindSafe(|| read_volume(path))) {
        Err(_) => panic!("{what}: the reader panicked"),
        Ok(Ok(v)) => {
            assert_eq!(v.data.len(), v.dims.iter().product::<usize>(), "{what}");
            true
        }
        Ok(Err(e)) => {
            let message = e.to_string();
            assert!(
                message.contains(&path.display().to_string()),
                "{what}: the error does not name the file: {message}"
            );
            false
        }
    }
}

fn put_i16(bytes: &mut [u8], at: usize, v: i16) {
    bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn mangled_nifti_files_are_refused_without_panicking() {
    let path = scratch("t1.nii");
    let affine = [
        [2.0, 0.0, 0.0, -3.0],
        [0.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, 2.0, 1.0],
    ];
    let good = write_u8_nii(
        [4, 3, 2],
        &(0..24).map(|i| i as u8).collect::<Vec<_>>(),
        affine,
    );
    assert!(check(&path, &good, "the intact file"));
    let mut tried = 1;
    for len in 0..good.len() {
        assert!(
            !check(&path, &good[..len], &format!("truncated to {len} bytes")),
            "a file truncated to {len} bytes was accepted"
        );
        tried += 1;
    }
    for byte in 0..352 {
        for bit in 0..8 {
            let mut bytes = good.clone();
            bytes[byte] ^= 1 << bit;
            check(&path, &bytes, &format!("bit {bit} of byte {byte} flipped"));
            tried += 1;
        }
    }
    // Declared volumes far beyond the 24 bytes of data: refused, and no single allocation
    // during the read comes near the declared size (1 GB for 1000³ bytes).
    for dims in [[i16::MAX; 3], [1000, 1000, 1000], [4, 3, 3]] {
        let mut bytes = good.clone();
        for (i, d) in dims.iter().enumerate() {
            put_i16(&mut bytes, 42 + 2 * i, *d);
        }
        std::fs::write(&path, &bytes).unwrap();
        LARGEST.store(0, Ordering::Relaxed);
        let accepted = check(&path, &bytes, &format!("declared dims {dims:?}"));
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            !accepted,
            "declared dims {dims:?} with 24 bytes of data were accepted"
        );
        assert!(
            largest < 1 << 20,
            "declared dims {dims:?}: the read allocated {largest} bytes at once"
        );
        tried += 1;
    }
    let mut wide = good.clone();
    put_i16(&mut wide, 72, 64); // bitpix 64 with 24 bytes of data
    assert!(!check(&path, &wide, "bitpix 64"));
    let gz = scratch("t1.nii.gz");
    assert!(!check(&gz, &good, "plain bytes named .gz"));
    tried += 2;
    eprintln!("{tried} mangled NIfTI files tried");
}
