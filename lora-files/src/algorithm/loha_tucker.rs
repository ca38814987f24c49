//! LoHa with Tucker cores (LyCORIS's LoHa with `use_tucker` on a conv kernel):
//! `ΔW = T(t1; w1_a, w1_b) ⊙ T(t2; w2_a, w2_b)` where
//! `T(t; a, b)[o, i, k] = Σ_p Σ_q a[p, o] · t[p, q, k] · b[q, i]`. The maths is
//! [`lora_conv::functional::loha_tucker`]'s; this file reads and checks the factors. Native
//! files before version 3 called it `loha` (its `hada_t1` core tells it from plain LoHa).

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use lora_conv::functional::loha_tucker;
use lora_conv::{AnyAdapter, ConvAdapter, LoHaTuckerAdapter};

use super::loha::{hada_rank, second_mismatch};
use super::modules::{part, put};
use super::{Algorithm, Delta, Factor, Factors, ModuleFactors, ModuleLayer, Site, exactly};
use crate::error::Result;

/// LoHa-Tucker: `hada_w{1,2}_a` `[r, out]`, `hada_w{1,2}_b` `[r, in]`, `hada_t{1,2}`
/// `[r, r, k..]`.
#[derive(Debug, Clone, Copy)]
pub struct LoHaTucker;

const NAMES: [&str; 6] = [
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
];

/// One of the two factors (`which` is 1 or 2), checked against rank `r`: the output side
/// `[out, r]`, the input side `[r, in]`, the core `[r, r·K]`, and the product's full shape.
fn side(
    site: Site<'_>,
    factors: &Factors,
    which: usize,
    r: usize,
) -> Result<([Tensor<2>; 3], Vec<usize>)> {
    let a_name = format!("hada_w{which}_a");
    let b_name = format!("hada_w{which}_b");
    let t_name = format!("hada_t{which}");
    let a = site.factor(factors, &a_name)?;
    let b = site.factor(factors, &b_name)?;
    let t = site.factor(factors, &t_name)?;
    if a.shape.len() != 2 || a.shape[0] != r {
        return Err(site.shape_error(&a_name, format!("[{r}, out]"), &a.shape));
    }
    if b.shape.len() != 2 || b.shape[0] != r {
        return Err(site.shape_error(&b_name, format!("[{r}, in]"), &b.shape));
    }
    if t.shape.len() < 3 || t.shape[0] != r || t.shape[1] != r {
        return Err(site.shape_error(&t_name, format!("[{r}, {r}, k..]"), &t.shape));
    }
    let mut shape = vec![a.shape[1], b.shape[1]];
    shape.extend_from_slice(&t.shape[2..]);
    Ok(([a.matrix(r).transpose(), b.matrix(r), t.matrix(r)], shape))
}

impl Algorithm for LoHaTucker {
    fn name(&self) -> &'static str {
        "loha-tucker"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["loha"]
    }

    fn claims(&self, names: &[&str]) -> bool {
        exactly(names, &NAMES)
    }

    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize> {
        hada_rank(site, factors)
    }

    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta> {
        let r = self.rank(site, factors)?;
        let (first, shape) = side(site, factors, 1, r)?;
        let (second, second_shape) = side(site, factors, 2, r)?;
        if shape != second_shape {
            let k: usize = shape[2..].iter().product();
            return Err(second_mismatch(site, factors, [shape[0], shape[1] * k]));
        }
        Ok(Delta {
            matrix: loha_tucker::delta(first, second, 1.0),
            shape: Some(shape),
        })
    }

    fn has_module(&self) -> bool {
        true
    }

    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        let shape = layer.shape;
        // LyCORIS's layout: hada_w{1,2}_a [r, out], hada_w{1,2}_b [r, in], hada_t{1,2}
        // [r, r, k..].
        let r = layer
            .factor("hada_w1_a")?
            .shape
            .first()
            .copied()
            .unwrap_or(0);
        let flat = |n: &str| layer.matrix(n, device);
        let adapter = LoHaTuckerAdapter {
            w1_a: Param::from_tensor(flat("hada_w1_a")?.transpose()),
            w1_b: Param::from_tensor(flat("hada_w1_b")?),
            t1: Param::from_tensor(flat("hada_t1")?),
            w2_a: Param::from_tensor(flat("hada_w2_a")?.transpose()),
            w2_b: Param::from_tensor(flat("hada_w2_b")?),
            t2: Param::from_tensor(flat("hada_t2")?),
            scale: layer.scale,
            shape: shape.to_vec(),
        };
        let expected = LoHaTuckerAdapter::param_count(shape, r);
        if lora_core::Adapter::trainable_params(&adapter) != expected {
            return Err(layer.wrong(format!(
                "LoHa Tucker factors of rank {r} do not fit a weight of shape {shape:?}"
            )));
        }
        Ok(AnyAdapter::new(adapter))
    }

    fn read_module(&self, parts: &ModuleFactors<'_>, shape: &[usize]) -> Option<(Factors, usize)> {
        // LyCORIS's layout: the output sides transposed, the cores unflattened.
        let mut f = Factors::new();
        for which in ["1", "2"] {
            let (da, va) = part(parts, &format!("w{which}_a"))?;
            let a = Factor {
                shape: da.clone(),
                values: va.clone(),
            };
            f.insert(format!("hada_w{which}_a"), a.transposed());
            let (db, vb) = part(parts, &format!("w{which}_b"))?;
            put(&mut f, &format!("hada_w{which}_b"), db.clone(), vb.clone());
            let (dt, vt) = part(parts, &format!("t{which}"))?;
            let core = [dt[0], dt[0]]
                .into_iter()
                .chain(shape.iter().skip(2).copied());
            put(
                &mut f,
                &format!("hada_t{which}"),
                core.collect(),
                vt.clone(),
            );
        }
        let rank = part(parts, "w1_a")?.0[1];
        Some((f, rank))
    }
}
