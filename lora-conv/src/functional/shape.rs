//! Shape arithmetic shared by the per-type files: products and the matrix rank cap, all
//! saturating instead of overflowing.

/// The product of `dims`, saturating.
pub fn product(dims: &[usize]) -> usize {
    dims.iter().fold(1usize, |acc, &x| acc.saturating_mul(x))
}

/// The sum of `dims`, saturating.
pub fn sum(dims: &[usize]) -> usize {
    dims.iter().fold(0usize, |acc, &x| acc.saturating_add(x))
}

/// `min(t, c·K)` for a weight `[t, c, k..]`: the largest rank of its `[t, c·K]` unfolding, the
/// cap of the types whose factors multiply out to the flattened kernel (LoCon, LoHa, DoRA);
/// 0 for fewer than two axes.
pub fn matrix_rank_limit(shape: &[usize]) -> usize {
    let [t, rest @ ..] = shape else { return 0 };
    if rest.is_empty() {
        return 0;
    }
    (*t).min(product(rest))
}

/// `min(t, c)` for a weight `[t, c, ..]`: the cap of the types that factor the two channel
/// modes apart (Tucker-2); 0 for fewer than two axes.
pub fn channel_rank_limit(shape: &[usize]) -> usize {
    match shape {
        [t, c, ..] => (*t).min(*c),
        _ => 0,
    }
}
