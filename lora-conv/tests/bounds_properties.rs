//! Property tests of the counting and bound functions over random geometries (1 to 3 spatial
//! axes, kernel sizes 1 to 5, one group, two groups or depthwise), each against an independent
//! brute force written here:
//! - `full_count` is `t · (s/g) · Π k_j`;
//! - `max_rank(v)` is the largest `r` whose `param_count(v, r)` is below `full_count`, found by
//!   walking up from 1;
//! - `max_rank_tucker2_below_locon` is the largest `r` at which Tucker-2 has fewer parameters than
//!   HF, found by walking up from 1;
//! - `param_count` is increasing in the rank (what the binary searches rely on).
//!
//! Knobs: `LORA_PROPTEST_CASES` (default 32; each case is a few hundred integer operations,
//! so this test runs 16 times as many) and `LORA_PROPTEST_SEED` (default 0x5eed).

#![allow(clippy::unwrap_used, missing_docs)]

use lora_conv::bounds::{full_count, max_rank, max_rank_tucker2_below_locon, param_count};
use lora_conv::{ConvGeometry, ConvVariant};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn draw(seed: u64) -> ConvGeometry {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = rng.random_range(1..=3usize);
    let (s, t, groups) = match rng.random_range(0..4) {
        0 => {
            let s = rng.random_range(1..=16);
            (s, s * rng.random_range(1..=3), s)
        }
        1 => (
            2 * rng.random_range(1..=16),
            2 * rng.random_range(1..=16),
            2,
        ),
        _ => (rng.random_range(1..=48), rng.random_range(1..=48), 1),
    };
    ConvGeometry {
        groups,
        ..ConvGeometry::new(s, t, (0..d).map(|_| rng.random_range(1..=5)).collect())
    }
}

/// The largest `r ≥ 0` with `below(r)` true for every rank up to it, walking up from 1.
fn walk(below: impl Fn(usize) -> bool) -> usize {
    let mut r = 0;
    while below(r + 1) {
        r += 1;
    }
    r
}

#[test]
fn counts_and_bounds_match_brute_force() {
    let cases = 16 * env_u64("LORA_PROPTEST_CASES", 32);
    let first = env_u64("LORA_PROPTEST_SEED", 0x5eed);
    for i in 0..cases {
        let seed = first.wrapping_add(i);
        let g = draw(seed);
        let what = format!("seed {seed}: {g:?}");
        let (t, c) = (g.out_channels, g.in_channels / g.groups);
        let k: usize = g.kernel.iter().product();
        let full = t * c * k;
        assert_eq!(full_count(&g), full, "{what}: full_count");
        for v in ConvVariant::BUILTIN {
            let walked = walk(|r| param_count(v, &g, r) < full);
            assert_eq!(max_rank(v, &g), walked, "{what}: max_rank({v})");
            for r in 0..=walked + 1 {
                assert!(
                    param_count(v, &g, r) < param_count(v, &g, r + 1),
                    "{what}: param_count({v}) not increasing at {r}"
                );
            }
        }
        let walked = walk(|r| {
            param_count(ConvVariant::Tucker2, &g, r) < param_count(ConvVariant::LoCon, &g, r)
        });
        assert_eq!(
            max_rank_tucker2_below_locon(&g),
            walked,
            "{what}: Tucker-2 below HF"
        );
    }
    eprintln!("counts and bounds: {cases} geometries");
}

/// The generator reaches depthwise, grouped, plain, 1x1 and every dimension.
#[test]
fn the_generator_covers_the_parameter_space() {
    let all: Vec<ConvGeometry> = (0..400).map(|i| draw(0x5eed + i)).collect();
    for d in 1..=3 {
        assert!(all.iter().any(|g| g.kernel.len() == d), "d = {d}");
    }
    assert!(
        all.iter()
            .any(|g| g.groups == g.in_channels && g.groups > 1)
    );
    assert!(all.iter().any(|g| g.groups == 2));
    assert!(all.iter().any(|g| g.kernel.iter().all(|&k| k == 1)));
    assert!(all.iter().any(|g| g.kernel.iter().any(|&k| k % 2 == 0)));
}
