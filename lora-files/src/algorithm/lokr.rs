//! LoKr (LyCORIS, Yeh et al. 2023): a Kronecker product `ΔW = w1 ⊗ w2`, each side either a full
//! matrix (`lokr_w1`, `lokr_w2`) or a low-rank product (`lokr_w1_a · lokr_w1_b`,
//! `lokr_w2_a · lokr_w2_b`), the second optionally with a Tucker core `lokr_t2`.
//!
//! With `w1 [a, c]` and `w2 [b, d, k..]`, `ΔW[a·B + b, c·D + d, k] = w1[a, c] · w2[b, d, k]`.
//! When both sides are full matrices LyCORIS uses scale 1 whatever `alpha` says.

use burn::tensor::{Device, Tensor};
use lora_conv::functional::{lokr, tucker2};
use lora_conv::{AnyAdapter, LoKrAdapter};

use super::modules::{part, put};
use super::{Algorithm, Delta, Factors, ModuleFactors, ModuleLayer, Site};
use crate::error::Result;

/// LoKr.
#[derive(Debug, Clone, Copy)]
pub struct LoKr;

impl LoKr {
    /// `w1` as `[a, c]`.
    fn w1(site: Site<'_>, factors: &Factors) -> Result<Tensor<2>> {
        if let Some(w1) = factors.get("lokr_w1") {
            if w1.shape.len() != 2 {
                return Err(site.shape_error("lokr_w1", "[a, c]", &w1.shape));
            }
            return Ok(w1.matrix(w1.shape[0]));
        }
        let a = site.factor(factors, "lokr_w1_a")?;
        let b = site.factor(factors, "lokr_w1_b")?;
        if a.shape.len() != 2 || b.shape.len() != 2 || a.shape[1] != b.shape[0] {
            return Err(site.shape_error(
                "lokr_w1_b",
                format!("[{}, c]", a.shape.get(1).copied().unwrap_or(0)),
                &b.shape,
            ));
        }
        Ok(a.matrix(a.shape[0]).matmul(b.matrix(b.shape[0])))
    }

    /// `w2` as `[b, d·K]`, with its full shape when the factors fix it.
    fn w2(site: Site<'_>, factors: &Factors) -> Result<(Tensor<2>, Option<Vec<usize>>)> {
        if let Some(w2) = factors.get("lokr_w2") {
            if w2.shape.len() < 2 {
                return Err(site.shape_error("lokr_w2", "[b, d, k..]", &w2.shape));
            }
            return Ok((w2.matrix(w2.shape[0]), Some(w2.shape.clone())));
        }
        let a = site.factor(factors, "lokr_w2_a")?;
        let b = site.factor(factors, "lokr_w2_b")?;
        if let Some(t) = factors.get("lokr_t2") {
            let r = t.shape.first().copied().unwrap_or(0);
            if t.shape.len() < 3 || t.shape[1] != r || r == 0 {
                return Err(site.shape_error("lokr_t2", "[r, r, k..]", &t.shape));
            }
            if a.shape.len() != 2 || a.shape[0] != r {
                return Err(site.shape_error("lokr_w2_a", format!("[{r}, b]"), &a.shape));
            }
            if b.shape.len() != 2 || b.shape[0] != r {
                return Err(site.shape_error("lokr_w2_b", format!("[{r}, d]"), &b.shape));
            }
            let mut shape = vec![a.shape[1], b.shape[1]];
            shape.extend_from_slice(&t.shape[2..]);
            let m = tucker2::delta(b.matrix(r), t.matrix(r), a.matrix(r).transpose(), 1.0);
            return Ok((m, Some(shape)));
        }
        if a.shape.len() != 2 || b.shape.len() != 2 || a.shape[1] != b.shape[0] {
            return Err(site.shape_error(
                "lokr_w2_b",
                format!("[{}, d·K]", a.shape.get(1).copied().unwrap_or(0)),
                &b.shape,
            ));
        }
        Ok((a.matrix(a.shape[0]).matmul(b.matrix(b.shape[0])), None))
    }
}

impl Algorithm for LoKr {
    fn name(&self) -> &'static str {
        "lokr"
    }

    fn claims(&self, names: &[&str]) -> bool {
        let has = |n: &str| names.contains(&n);
        let side1 = has("lokr_w1") != (has("lokr_w1_a") && has("lokr_w1_b"));
        let side2 = has("lokr_w2") != (has("lokr_w2_a") && has("lokr_w2_b"));
        let known = names.iter().all(|n| {
            [
                "lokr_w1",
                "lokr_w1_a",
                "lokr_w1_b",
                "lokr_w2",
                "lokr_w2_a",
                "lokr_w2_b",
                "lokr_t2",
            ]
            .contains(n)
        });
        let core_ok = !has("lokr_t2") || has("lokr_w2_a");
        side1 && side2 && known && core_ok
    }

    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize> {
        if let Some(t) = factors.get("lokr_t2") {
            return Ok(t.shape.first().copied().unwrap_or(0).max(1));
        }
        for (name, axis) in [("lokr_w1_a", 1), ("lokr_w2_a", 1)] {
            if let Some(f) = factors.get(name) {
                return match f.shape.get(axis) {
                    Some(&r) if r > 0 && f.shape.len() == 2 => Ok(r),
                    _ => Err(site.shape_error(name, "[n, r] with r >= 1", &f.shape)),
                };
            }
        }
        // Both sides full: LyCORIS's "full matrix" mode, rank 1 by its convention.
        Ok(1)
    }

    fn scale(&self, alpha: Option<f64>, rank: usize, factors: &Factors) -> f64 {
        if factors.contains_key("lokr_w1") && factors.contains_key("lokr_w2") {
            return 1.0;
        }
        alpha.unwrap_or(rank as f64) / rank.max(1) as f64
    }

    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta> {
        let w1 = Self::w1(site, factors)?;
        let (w2, w2_shape) = Self::w2(site, factors)?;
        let [a, c] = w1.dims();
        let matrix = lokr::kron(w1, w2);
        let shape = w2_shape.map(|s| {
            let mut full = vec![a * s[0], c * s[1]];
            full.extend_from_slice(&s[2..]);
            full
        });
        Ok(Delta { matrix, shape })
    }

    fn has_module(&self) -> bool {
        true
    }

    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        if layer.factors.contains_key("lokr_t2") {
            return Err(layer.wrong(
                "LoKr with a Tucker core (lokr_t2) has no trainable module type; merge it into \
                 the base instead",
            ));
        }
        let mat = |n: &str| layer.matrix(n, device);
        let w1 = if layer.factors.contains_key("lokr_w1") {
            mat("lokr_w1")?
        } else {
            mat("lokr_w1_a")?.matmul(mat("lokr_w1_b")?)
        };
        let w2 = if layer.factors.contains_key("lokr_w2") {
            Err(mat("lokr_w2")?)
        } else {
            Ok((mat("lokr_w2_a")?, mat("lokr_w2_b")?))
        };
        Ok(AnyAdapter::new(LoKrAdapter::from_factors(
            layer.path,
            layer.shape,
            w1,
            w2,
            layer.scale,
        )?))
    }

    fn read_module(&self, parts: &ModuleFactors<'_>, shape: &[usize]) -> Option<(Factors, usize)> {
        let mut f = Factors::new();
        let (d1, v1) = part(parts, "w1")?;
        put(&mut f, "lokr_w1", d1.clone(), v1.clone());
        let rank = match (part(parts, "w2"), part(parts, "w2_a"), part(parts, "w2_b")) {
            (Some((d, v)), _, _) => {
                // LyCORIS stores a full w2 as [b, c2, k..]. In PyTorch layout: burn's Linear
                // weight is [in, out].
                let c = if shape.len() == 2 {
                    shape[0]
                } else {
                    shape.get(1).copied().unwrap_or(1)
                };
                let c2 = c / d1[1].max(1);
                let w2 = [d[0], c2].into_iter().chain(shape.iter().skip(2).copied());
                put(&mut f, "lokr_w2", w2.collect(), v.clone());
                1
            }
            (None, Some((da, va)), Some((db, vb))) => {
                put(&mut f, "lokr_w2_a", da.clone(), va.clone());
                put(&mut f, "lokr_w2_b", db.clone(), vb.clone());
                da[1]
            }
            _ => return None,
        };
        Some((f, rank))
    }
}
