//! LoHa (LyCORIS, Hyeon-Woo et al. 2022): the Hadamard product of two low-rank products,
//! `ΔW = (w1_a · w1_b) ⊙ (w2_a · w2_b)`. The maths is [`lora_conv::functional::loha`]'s; this
//! file reads and checks the factors. Its Tucker form is [`super::LoHaTucker`].
//!
//! LyCORIS 4.1.3's `get_merged_weight` for LoHa multiplies by the scale twice; its forward
//! (and the maths) uses it once. The merge here uses it once.

use burn::tensor::{Device, Tensor};
use lora_conv::functional::loha;
use lora_conv::{AnyAdapter, LoHaAdapter};
use lora_core::LoraError;

use super::modules::{part, put};
use super::{Algorithm, Delta, Factors, ModuleFactors, ModuleLayer, Site, exactly};
use crate::error::Result;

/// LoHa: `hada_w{1,2}_a` `[out, r]`, `hada_w{1,2}_b` `[r, in·K]`.
#[derive(Debug, Clone, Copy)]
pub struct LoHa;

const NAMES: [&str; 4] = ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"];

/// The rank of a LoHa layer, plain or Tucker: the first axis of `hada_w1_b`.
pub(crate) fn hada_rank(site: Site<'_>, factors: &Factors) -> Result<usize> {
    let b = site.factor(factors, "hada_w1_b")?;
    match b.shape.first() {
        Some(&r) if r > 0 && b.shape.len() == 2 => Ok(r),
        _ => Err(site.shape_error("hada_w1_b", "[r, n] with r >= 1", &b.shape)),
    }
}

/// The error for a second Hadamard factor whose product's shape is not the first one's.
pub(crate) fn second_mismatch(
    site: Site<'_>,
    factors: &Factors,
    first: [usize; 2],
) -> crate::FileError {
    let actual = factors
        .get("hada_w2_a")
        .map(|f| f.shape.clone())
        .unwrap_or_default();
    site.shape_error(
        "hada_w2_a",
        format!("a second product of the first one's shape {first:?}"),
        &actual,
    )
}

/// One of the two factors (`which` is 1 or 2), checked against rank `r`: `a [out, r]`,
/// `b [r, in·K]`.
fn side(site: Site<'_>, factors: &Factors, which: usize, r: usize) -> Result<[Tensor<2>; 2]> {
    let a_name = format!("hada_w{which}_a");
    let b_name = format!("hada_w{which}_b");
    let a = site.factor(factors, &a_name)?;
    let b = site.factor(factors, &b_name)?;
    if a.shape.len() != 2 || a.shape[1] != r {
        return Err(site.shape_error(&a_name, format!("[out, {r}]"), &a.shape));
    }
    if b.shape.len() != 2 || b.shape[0] != r {
        return Err(site.shape_error(&b_name, format!("[{r}, in·K]"), &b.shape));
    }
    Ok([a.matrix(a.shape[0]), b.matrix(r)])
}

impl Algorithm for LoHa {
    fn name(&self) -> &'static str {
        "loha"
    }

    fn claims(&self, names: &[&str]) -> bool {
        exactly(names, &NAMES)
    }

    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize> {
        hada_rank(site, factors)
    }

    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta> {
        let r = self.rank(site, factors)?;
        let [a1, b1] = side(site, factors, 1, r)?;
        let [a2, b2] = side(site, factors, 2, r)?;
        let first = [a1.dims()[0], b1.dims()[1]];
        if first != [a2.dims()[0], b2.dims()[1]] {
            return Err(second_mismatch(site, factors, first));
        }
        Ok(Delta {
            matrix: loha::delta(a1, b1, a2, b2, 1.0),
            shape: None,
        })
    }

    fn has_module(&self) -> bool {
        true
    }

    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        let shape = layer.shape;
        let (a, b) = (layer.factor("hada_w1_a")?, layer.factor("hada_w1_b")?);
        if shape.first() != a.shape.first()
            || shape.get(1..).map(|s| s.iter().product::<usize>()) != b.shape.get(1).copied()
        {
            return Err(LoraError::ShapeMismatch {
                path: format!("{} (hada_w1_a · hada_w1_b)", layer.path),
                expected: shape.to_vec(),
                actual: vec![a.shape[0], b.shape[1]],
            });
        }
        Ok(AnyAdapter::new(LoHaAdapter {
            w1_a: layer.param("hada_w1_a", device)?,
            w1_b: layer.param("hada_w1_b", device)?,
            w2_a: layer.param("hada_w2_a", device)?,
            w2_b: layer.param("hada_w2_b", device)?,
            scale: layer.scale,
            shape: shape.to_vec(),
        }))
    }

    fn read_module(&self, parts: &ModuleFactors<'_>, _shape: &[usize]) -> Option<(Factors, usize)> {
        let mut f = Factors::new();
        for name in ["w1_a", "w1_b", "w2_a", "w2_b"] {
            let (d, v) = part(parts, name)?;
            put(&mut f, &format!("hada_{name}"), d.clone(), v.clone());
        }
        let rank = part(parts, "w1_a")?.0[1];
        Some((f, rank))
    }
}
