//! LoHa (LyCORIS, Hyeon-Woo et al. 2022): the Hadamard product of two low-rank products,
//! `ΔW = (w1_a · w1_b) ⊙ (w2_a · w2_b)`, or with Tucker cores for conv kernels,
//! `ΔW = T(t1; w1_a, w1_b) ⊙ T(t2; w2_a, w2_b)` where
//! `T(t; a, b)[o, i, k] = Σ_p Σ_q a[p, o] · t[p, q, k] · b[q, i]`. The maths is
//! [`lora_conv::functional::loha`]'s and [`lora_conv::functional::loha_tucker`]'s; this file
//! reads and checks the factors.
//!
//! LyCORIS 4.1.3's `get_merged_weight` for LoHa multiplies by the scale twice; its forward
//! (and the maths) uses it once. The merge here uses it once.

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use lora_conv::functional::{loha, loha_tucker};
use lora_conv::{AnyAdapter, ConvAdapter, LoHaAdapter, LoHaTuckerAdapter};
use lora_core::LoraError;

use super::modules::{part, put};
use super::{Algorithm, Delta, Factor, Factors, ModuleFactors, ModuleLayer, Site, exactly};
use crate::error::Result;

/// LoHa: `hada_w{1,2}_a` `[out, r]`, `hada_w{1,2}_b` `[r, in·K]`; with Tucker cores,
/// `hada_w{1,2}_a` `[r, out]`, `hada_w{1,2}_b` `[r, in]`, `hada_t{1,2}` `[r, r, k..]`.
#[derive(Debug, Clone, Copy)]
pub struct LoHa;

const PLAIN: [&str; 4] = ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"];
const TUCKER: [&str; 6] = [
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
];

/// One of the two Hadamard factors, read and checked: `a [out, r]`, `b [r, in·K]` (plain) or
/// `[r, in]` (with a core), the core `[r, r·K]`, the product's `[out, in·K]`, and its full
/// shape when a core fixes it.
struct Side {
    a: Tensor<2>,
    b: Tensor<2>,
    core: Option<Tensor<2>>,
    dims: [usize; 2],
    shape: Option<Vec<usize>>,
}

impl LoHa {
    /// One of the two factors (`which` is 1 or 2), its shapes checked against rank `r`.
    fn side(site: Site<'_>, factors: &Factors, which: usize, r: usize) -> Result<Side> {
        let a_name = format!("hada_w{which}_a");
        let b_name = format!("hada_w{which}_b");
        let a = site.factor(factors, &a_name)?;
        let b = site.factor(factors, &b_name)?;
        let t_name = format!("hada_t{which}");
        match factors.get(&t_name) {
            None => {
                if a.shape.len() != 2 || a.shape[1] != r {
                    return Err(site.shape_error(&a_name, format!("[out, {r}]"), &a.shape));
                }
                if b.shape.len() != 2 || b.shape[0] != r {
                    return Err(site.shape_error(&b_name, format!("[{r}, in·K]"), &b.shape));
                }
                Ok(Side {
                    a: a.matrix(a.shape[0]),
                    b: b.matrix(r),
                    core: None,
                    dims: [a.shape[0], b.shape[1]],
                    shape: None,
                })
            }
            Some(t) => {
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
                let k: usize = t.shape[2..].iter().product();
                Ok(Side {
                    a: a.matrix(r).transpose(),
                    b: b.matrix(r),
                    core: Some(t.matrix(r)),
                    dims: [a.shape[1], b.shape[1] * k],
                    shape: Some(shape),
                })
            }
        }
    }
}

impl Algorithm for LoHa {
    fn name(&self) -> &'static str {
        "loha"
    }

    fn claims(&self, names: &[&str]) -> bool {
        exactly(names, &PLAIN) || exactly(names, &TUCKER)
    }

    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize> {
        let b = site.factor(factors, "hada_w1_b")?;
        match b.shape.first() {
            Some(&r) if r > 0 && b.shape.len() == 2 => Ok(r),
            _ => Err(site.shape_error("hada_w1_b", "[r, n] with r >= 1", &b.shape)),
        }
    }

    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta> {
        let r = self.rank(site, factors)?;
        let first = Self::side(site, factors, 1, r)?;
        let second = Self::side(site, factors, 2, r)?;
        let first_dims = first.dims;
        let mismatch = || {
            let actual = factors
                .get("hada_w2_a")
                .map(|f| f.shape.clone())
                .unwrap_or_default();
            site.shape_error(
                "hada_w2_a",
                format!("a second product of the first one's shape {first_dims:?}"),
                &actual,
            )
        };
        if first.dims != second.dims || first.shape != second.shape {
            return Err(mismatch());
        }
        let matrix = match (first.core, second.core) {
            (None, None) => loha::delta(first.a, first.b, second.a, second.b, 1.0),
            (Some(t1), Some(t2)) => {
                loha_tucker::delta([first.a, first.b, t1], [second.a, second.b, t2], 1.0)
            }
            _ => return Err(mismatch()),
        };
        Ok(Delta {
            matrix,
            shape: first.shape,
        })
    }

    fn has_module(&self) -> bool {
        true
    }

    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        let shape = layer.shape;
        if layer.factors.contains_key("hada_t1") {
            // LyCORIS's Tucker form: hada_w{1,2}_a [r, out], hada_w{1,2}_b [r, in],
            // hada_t{1,2} [r, r, k..].
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
            return Ok(AnyAdapter::new(adapter));
        }
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

    fn read_module(
        &self,
        module: &str,
        parts: &ModuleFactors<'_>,
        shape: &[usize],
    ) -> Option<(Factors, usize)> {
        let mut f = Factors::new();
        match module {
            "loha" => {
                for name in ["w1_a", "w1_b", "w2_a", "w2_b"] {
                    let (d, v) = part(parts, name)?;
                    put(&mut f, &format!("hada_{name}"), d.clone(), v.clone());
                }
            }
            "loha-tucker" => {
                // LyCORIS's Tucker layout: the output sides transposed, the cores unflattened.
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
            }
            _ => return None,
        }
        let rank = part(parts, "w1_a")?.0[1];
        Some((f, rank))
    }
}
