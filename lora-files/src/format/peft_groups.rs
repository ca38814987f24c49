//! LoRA on grouped convs in PEFT files.
//!
//! PEFT 0.21.2 adapts a conv with `groups = g` by an ungrouped `lora_A` conv, `[R, in, k..]`,
//! followed by a grouped pointwise `lora_B` conv, `[out, R/g, 1..]`, with `R` (the config's
//! rank, divisible by `g`) and the scale `alpha/R` (`alpha/sqrt(R)` with rsLoRA). Output
//! channel `o`, in group `j = o / (out/g)`, reads rows `j·R/g .. (j+1)·R/g` of `lora_A`.
//!
//! Here a LoCon on a grouped conv has `down` `[r, in/g, k..]` and `up` `[out, r, 1..]`, and
//! its update has the grouped weight's shape `[out, in/g, k..]`: the same `down` acts on each
//! input group. That is exactly a PEFT LoRA of rank `R = r·g` whose `lora_A` is
//! block-sparse: rows `j·r .. (j+1)·r` hold `down` on input group `j`'s channels and zeros
//! elsewhere; `lora_B` is `up` unchanged. The scale is kept by writing `alpha = scale·R`
//! (`scale·sqrt(R)` with rsLoRA). `lora_A` is `g²` times the size of `down`.
//!
//! Reading reverses it. A `lora_A` with a non-zero entry outside its group's block (anything
//! PEFT trained) lets an output channel see other groups' inputs, which no grouped weight
//! does, and PEFT cannot merge it either: it is refused with [`FileError::NotAWeightUpdate`].
//! Block-sparse factors whose diagonal blocks differ are read exactly as a LoCon of rank `R`
//! whose `up` is zero outside each output group's rows.

use crate::adapter::LayerAdapter;
use crate::algorithm::{Factor, Factors};
use crate::error::{FileError, Result};

const DOWN: &str = "lora_down.weight";
const UP: &str = "lora_up.weight";

/// The rank PEFT's config gives a layer: `rank · groups`.
pub(crate) fn peft_rank(layer: &LayerAdapter) -> usize {
    layer.rank * layer.groups.max(1)
}

/// `lora_A` and `lora_B` for `layer` in PEFT's layout (for `groups = 1`, the factors as
/// they are).
///
/// # Errors
/// [`FileError::Inexpressible`] when `groups` does not divide the output channels, the layer
/// is not a conv, or it carries a DoRA magnitude (PEFT's DoRA on grouped convs is not checked
/// here).
pub(crate) fn to_peft(layer: &LayerAdapter) -> Result<(Factor, Factor)> {
    let refuse = |why: String| FileError::Inexpressible {
        layer: layer.module.clone(),
        algorithm: layer.algorithm.name().to_string(),
        format: "peft".to_string(),
        why,
    };
    let (down, up) = match (layer.factors.get(DOWN), layer.factors.get(UP)) {
        (Some(d), Some(u)) => (d, u),
        _ => return Err(refuse(format!("LoRA needs both {DOWN} and {UP}"))),
    };
    let g = layer.groups.max(1);
    if g == 1 {
        return Ok((down.clone(), up.clone()));
    }
    if down.shape.len() < 3 {
        return Err(refuse(format!(
            "groups = {g} on a layer whose down factor {:?} is not a conv's",
            down.shape
        )));
    }
    let out = up.shape[0];
    if !out.is_multiple_of(g) {
        return Err(refuse(format!(
            "groups = {g} does not divide the {out} output channels"
        )));
    }
    if layer.magnitude.is_some() {
        return Err(refuse(
            "DoRA on a grouped conv is not written to PEFT (its layout there is not checked)"
                .to_string(),
        ));
    }
    let r = layer.rank;
    let c = down.shape[1];
    let kernel: usize = down.shape[2..].iter().product();
    let cin = c * g;
    let mut a = vec![0f32; r * g * cin * kernel];
    for j in 0..g {
        for i in 0..r {
            for ch in 0..c {
                let from = (i * c + ch) * kernel;
                let to = ((j * r + i) * cin + j * c + ch) * kernel;
                a[to..to + kernel].copy_from_slice(&down.values[from..from + kernel]);
            }
        }
    }
    let mut shape = vec![r * g, cin];
    shape.extend_from_slice(&down.shape[2..]);
    Ok((Factor { shape, values: a }, up.clone()))
}

/// PEFT's factors for one layer (`lora_down`/`lora_up` = `lora_A`/`lora_B`), with `lora_B`'s
/// second axis `R/g` smaller than `lora_A`'s rank `R`, as this crate's grouped LoCon:
/// the factors, their rank and the groups. Factors of an ungrouped layer come back as they
/// are, with groups 1. `prefix` is the layer's key prefix in `file`.
///
/// # Errors
/// [`FileError::Shape`] when the two ranks or the channels do not divide;
/// [`FileError::NotAWeightUpdate`] naming `lora_A` when it has a non-zero entry outside its
/// group's block.
pub(crate) fn from_peft(
    file: &str,
    prefix: &str,
    factors: Factors,
) -> Result<(Factors, usize, usize)> {
    let (Some(a), Some(b)) = (factors.get(DOWN), factors.get(UP)) else {
        return Ok((factors, 0, 1));
    };
    let big = a.shape.first().copied().unwrap_or(0);
    let r = b.shape.get(1).copied().unwrap_or(0);
    if a.shape.len() < 3 || b.shape.len() != a.shape.len() || r == big || r == 0 {
        return Ok((factors, big, 1));
    }
    let shape_error = |key: &str, expected: String, actual: &[usize]| FileError::Shape {
        file: file.to_string(),
        key: format!("{prefix}.{key}"),
        expected,
        actual: actual.to_vec(),
    };
    if !big.is_multiple_of(r) {
        return Err(shape_error(
            "lora_B.weight",
            format!("[out, R/groups, 1..] with R/groups dividing lora_A's rank R = {big}"),
            &b.shape,
        ));
    }
    let g = big / r;
    let (cin, out) = (a.shape[1], b.shape[0]);
    if !cin.is_multiple_of(g) || !out.is_multiple_of(g) {
        return Err(shape_error(
            "lora_A.weight",
            format!(
                "in channels divisible by groups = {g} (R = {big} over lora_B's {r}), with \
                 {out} output channels also divisible"
            ),
            &a.shape,
        ));
    }
    let c = cin / g;
    let kernel: usize = a.shape[2..].iter().product();
    let at = |row: usize, ch: usize| (row * cin + ch) * kernel;
    // Every entry outside row block j x channel block j must be exactly zero.
    for row in 0..big {
        let j = row / r;
        for ch in (0..cin).filter(|ch| ch / c != j) {
            let cell = &a.values[at(row, ch)..at(row, ch) + kernel];
            if let Some(v) = cell.iter().find(|v| **v != 0.0) {
                return Err(FileError::NotAWeightUpdate {
                    file: file.to_string(),
                    key: format!("{prefix}.lora_A.weight"),
                    why: format!(
                        "a LoRA on a conv with groups = {g} (lora_A {:?}, lora_B {:?}) whose \
                         lora_A row {row} (group {j}) is {v} on input channel {ch} (group {}); \
                         only a lora_A that is zero outside each group's block is a change of \
                         the grouped weight (PEFT cannot merge this adapter either)",
                        a.shape,
                        b.shape,
                        ch / c
                    ),
                });
            }
        }
    }
    let block = |j: usize| -> Vec<f32> {
        let mut v = Vec::with_capacity(r * c * kernel);
        for i in 0..r {
            let row = j * r + i;
            v.extend_from_slice(&a.values[at(row, j * c)..at(row, j * c + c)]);
        }
        v
    };
    let first = block(0);
    let mut down_shape = vec![r, c];
    down_shape.extend_from_slice(&a.shape[2..]);
    let mut out_factors = Factors::new();
    if (1..g).all(|j| block(j) == first) {
        out_factors.insert(
            DOWN.to_string(),
            Factor {
                shape: down_shape,
                values: first,
            },
        );
        out_factors.insert(UP.to_string(), b.clone());
        return Ok((out_factors, r, g));
    }
    // Different blocks: rank R, each output group's up reading its own block.
    let down: Vec<f32> = (0..g).flat_map(block).collect();
    down_shape[0] = big;
    let per_group = out / g;
    let mut up = vec![0f32; out * big];
    for o in 0..out {
        let j = o / per_group;
        for i in 0..r {
            up[o * big + j * r + i] = b.values[o * r + i];
        }
    }
    let mut up_shape = b.shape.clone();
    up_shape[1] = big;
    out_factors.insert(
        DOWN.to_string(),
        Factor {
            shape: down_shape,
            values: down,
        },
    );
    out_factors.insert(
        UP.to_string(),
        Factor {
            shape: up_shape,
            values: up,
        },
    );
    Ok((out_factors, big, g))
}
