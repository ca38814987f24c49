//! Seeded, stratified splits.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Split example indices into `(first, second)` where `second` holds `n_second` examples drawn
/// per class in proportion to the class sizes (largest remainder), and `first` the rest,
/// capped at `n_first` (also stratified). Deterministic for a seed.
pub fn stratified(
    labels: &[usize],
    n_first: usize,
    n_second: usize,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    for members in &mut by_class {
        members.shuffle(&mut rng);
    }
    let sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let second_counts = allocate(&sizes, n_second.min(labels.len()));
    let rest: Vec<usize> = sizes
        .iter()
        .zip(&second_counts)
        .map(|(s, c)| s - c)
        .collect();
    let first_counts = allocate(&rest, n_first.min(rest.iter().sum()));
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (c, members) in by_class.iter().enumerate() {
        second.extend_from_slice(&members[..second_counts[c]]);
        first.extend_from_slice(&members[second_counts[c]..second_counts[c] + first_counts[c]]);
    }
    first.shuffle(&mut rng);
    second.shuffle(&mut rng);
    (first, second)
}

/// Split `total` over classes in proportion to `sizes` (largest remainder), never more than a
/// class has.
fn allocate(sizes: &[usize], total: usize) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    if n == 0 {
        return vec![0; sizes.len()];
    }
    let mut counts: Vec<usize> = sizes.iter().map(|&s| s * total / n).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse((sizes[c] * total) % n));
    let mut left = total - counts.iter().sum::<usize>();
    for &c in order.iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if counts[c] < sizes[c] {
            counts[c] += 1;
            left -= 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_split_is_exact_disjoint_and_seeded() {
        // 3 classes of 50, 30, 20.
        let labels: Vec<usize> = (0..100)
            .map(|i| {
                if i < 50 {
                    0
                } else if i < 80 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let (train, test) = stratified(&labels, 60, 20, 1);
        assert_eq!(test.len(), 20);
        assert_eq!(train.len(), 60);
        let count = |idx: &[usize], c| idx.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!(
            [count(&test, 0), count(&test, 1), count(&test, 2)],
            [10, 6, 4]
        );
        assert_eq!(
            [count(&train, 0), count(&train, 1), count(&train, 2)],
            [30, 18, 12]
        );
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 80, "disjoint");
        assert_eq!(
            stratified(&labels, 60, 20, 1),
            (train.clone(), test.clone())
        );
        assert_ne!(stratified(&labels, 60, 20, 2).1, test);
    }
}
