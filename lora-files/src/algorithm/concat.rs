//! What the algorithm files share to add adapters up by concatenating their factors
//! ([`super::Algorithm::concatenate`]): the sum of rank-`r_i` updates is one update of rank
//! `Σ r_i` whose input-side factors are stacked and whose output-side factors sit side by side,
//! each part's weight and scale absorbed into its output side.

use super::{Factor, Factors};

/// One adapter of a combination: its factors, and the weight multiplying its raw update (the
/// combination's weight times the layer's scale).
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// The layer's factors.
    pub factors: &'a Factors,
    /// `weight · scale`: what its raw update is multiplied by in the sum.
    pub weight: f64,
}

impl Part<'_> {
    /// The factor `name`, or why it cannot combine.
    pub(crate) fn factor(&self, name: &str) -> Result<&Factor, String> {
        self.factors
            .get(name)
            .ok_or_else(|| format!("factor {name} is missing"))
    }

    /// The factor `name` multiplied by this part's weight.
    pub(crate) fn weighted(&self, name: &str) -> Result<Factor, String> {
        let f = self.factor(name)?;
        Ok(Factor {
            values: f
                .values
                .iter()
                .map(|v| (f64::from(*v) * self.weight) as f32)
                .collect(),
            shape: f.shape.clone(),
        })
    }
}

/// Why `fs` cannot combine when a factor has fewer than `axes` axes or not as many values as
/// its shape holds (the indexing below relies on both).
fn malformed<'a>(mut fs: impl Iterator<Item = &'a Factor>, axes: usize) -> Result<(), String> {
    match fs.find(|f| f.shape.len() < axes || f.values.len() != f.shape.iter().product::<usize>()) {
        Some(f) => Err(format!(
            "a factor of shape {:?} with {} values is not a factor of {axes} or more axes",
            f.shape,
            f.values.len()
        )),
        None => Ok(()),
    }
}

/// Factors `[r_i, rest..]` stacked along the first axis: `[Σ r_i, rest..]`.
pub(crate) fn stacked(fs: &[&Factor]) -> Result<Factor, String> {
    malformed(fs.iter().copied(), 2)?;
    let first = fs.first().ok_or("nothing to combine")?;
    let rest = &first.shape[1..];
    if fs.iter().any(|f| &f.shape[1..] != rest) {
        return Err("its adapters have different shapes".into());
    }
    let mut shape = vec![fs.iter().map(|f| f.shape[0]).sum()];
    shape.extend_from_slice(rest);
    Ok(Factor {
        shape,
        values: fs.iter().flat_map(|f| f.values.iter().copied()).collect(),
    })
}

/// Factors `[rows, r_i, 1..]` side by side along the second axis: `[rows, Σ r_i, 1..]`.
pub(crate) fn side_by_side(fs: &[Factor]) -> Result<Factor, String> {
    malformed(fs.iter(), 2)?;
    let first = fs.first().ok_or("nothing to combine")?;
    let rows = first.shape[0];
    let tail = &first.shape[2..];
    if fs
        .iter()
        .any(|f| f.shape[0] != rows || &f.shape[2..] != tail)
    {
        return Err("its adapters have different shapes".into());
    }
    let cols: Vec<usize> = fs.iter().map(|f| f.values.len() / rows.max(1)).collect();
    let mut values = Vec::with_capacity(fs.iter().map(|f| f.values.len()).sum());
    for row in 0..rows {
        for (f, c) in fs.iter().zip(&cols) {
            values.extend_from_slice(&f.values[row * c..(row + 1) * c]);
        }
    }
    let mut shape = vec![rows, fs.iter().map(|f| f.shape[1]).sum()];
    shape.extend_from_slice(tail);
    Ok(Factor { shape, values })
}

/// Cores `[r_i, r_i, k..]` on the diagonal of one `[Σ r_i, Σ r_i, k..]` core (zero elsewhere).
pub(crate) fn block_diagonal(cores: &[&Factor]) -> Result<Factor, String> {
    malformed(cores.iter().copied(), 3)?;
    let first = cores.first().ok_or("nothing to combine")?;
    let tail = &first.shape[2..];
    if cores
        .iter()
        .any(|m| m.shape[0] != m.shape[1] || &m.shape[2..] != tail)
    {
        return Err("its adapters have different shapes".into());
    }
    let total: usize = cores.iter().map(|m| m.shape[0]).sum();
    let k: usize = tail.iter().product();
    let mut values = vec![0f32; total * total * k];
    let mut at = 0;
    for m in cores {
        let r = m.shape[0];
        for p in 0..r {
            for q in 0..r {
                let src = (p * r + q) * k;
                let dst = ((at + p) * total + at + q) * k;
                values[dst..dst + k].copy_from_slice(&m.values[src..src + k]);
            }
        }
        at += r;
    }
    let mut shape = vec![total, total];
    shape.extend_from_slice(tail);
    Ok(Factor { shape, values })
}

/// The factors `[rows, r_i]` named `name` of every part side by side, each first multiplied by
/// its part's weight when `weighted`.
pub(crate) fn columns(parts: &[Part<'_>], name: &str, weighted: bool) -> Result<Factor, String> {
    let fs: Vec<Factor> = parts
        .iter()
        .map(|p| {
            if weighted {
                p.weighted(name)
            } else {
                p.factor(name).cloned()
            }
        })
        .collect::<Result<_, _>>()?;
    side_by_side(&fs)
}
