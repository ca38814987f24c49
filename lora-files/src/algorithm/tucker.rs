//! Tucker-2 (LyCORIS LoCon with `use_tucker`): `ΔW[t, s, k] = Σ up[t, p] · mid[p, q, k] ·
//! down[q, s]`, a pointwise down projection, a kxk core and a pointwise up projection.

use burn::tensor::Device;
use lora_conv::functional::tucker2;
use lora_conv::{AnyAdapter, Tucker2Adapter};

use super::concat::{self, Part};
use super::locon::concatenate_down_up;
use super::modules::{by_rank, ones, part, put};
use super::{Algorithm, Delta, Factors, ModuleFactors, ModuleLayer, Site, exactly, pointwise};
use crate::error::Result;

/// Tucker-2: `lora_down.weight` `[r, in/groups, 1..]`, `lora_mid.weight` `[r, r, k..]`,
/// `lora_up.weight` `[out, r, 1..]`.
#[derive(Debug, Clone, Copy)]
pub struct Tucker2;

const DOWN: &str = "lora_down.weight";
const MID: &str = "lora_mid.weight";
const UP: &str = "lora_up.weight";

impl Algorithm for Tucker2 {
    fn name(&self) -> &'static str {
        "tucker2"
    }

    fn claims(&self, names: &[&str]) -> bool {
        exactly(names, &[DOWN, MID, UP])
    }

    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize> {
        let (r, _) = pointwise(site, DOWN, site.factor(factors, DOWN)?)?;
        if r == 0 {
            return Err(site.shape_error(DOWN, "[r, in, 1..] with r >= 1", &factors[DOWN].shape));
        }
        Ok(r)
    }

    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta> {
        let r = self.rank(site, factors)?;
        let (_, c) = pointwise(site, DOWN, site.factor(factors, DOWN)?)?;
        let (t, ur) = pointwise(site, UP, site.factor(factors, UP)?)?;
        let mid = site.factor(factors, MID)?;
        if mid.shape.len() < 3 || mid.shape[0] != r || mid.shape[1] != r {
            return Err(site.shape_error(MID, format!("[{r}, {r}, k..]"), &mid.shape));
        }
        if ur != r {
            return Err(site.shape_error(UP, format!("[out, {r}, 1..]"), &factors[UP].shape));
        }
        let mut shape = vec![t, c];
        shape.extend_from_slice(&mid.shape[2..]);
        Ok(Delta {
            matrix: tucker2::delta(
                factors[DOWN].matrix(r),
                mid.matrix(r),
                factors[UP].matrix(t),
                1.0,
            ),
            shape: Some(shape),
        })
    }

    fn concatenate(&self, parts: &[Part<'_>]) -> std::result::Result<Factors, String> {
        let mut factors = concatenate_down_up(parts)?;
        let mids: Vec<_> = parts
            .iter()
            .map(|p| p.factor(MID))
            .collect::<std::result::Result<_, _>>()?;
        factors.insert(MID.to_string(), concat::block_diagonal(&mids)?);
        Ok(factors)
    }

    fn has_module(&self) -> bool {
        true
    }

    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        by_rank!(layer, layer.axes(MID), D => Ok(AnyAdapter::new(Tucker2Adapter::from_lycoris::<D>(
            layer.path,
            layer.tensor::<D>(DOWN, device)?,
            layer.tensor::<D>(MID, device)?,
            layer.tensor::<D>(UP, device)?,
            layer.scale,
        )?)))
    }

    fn read_module(&self, parts: &ModuleFactors<'_>, shape: &[usize]) -> Option<(Factors, usize)> {
        let (dd, dv) = part(parts, "down")?;
        let ((_, mv), (_, uv)) = (part(parts, "mid")?, part(parts, "up")?);
        let r = dd[0];
        let pointwise = || ones(shape.len() - 2);
        let mut f = Factors::new();
        let down = [r, dd[1]].into_iter().chain(pointwise());
        put(&mut f, DOWN, down.collect(), dv.clone());
        let mid = [r, r].into_iter().chain(shape[2..].iter().copied());
        put(&mut f, MID, mid.collect(), mv.clone());
        let up = [shape[0], r].into_iter().chain(pointwise());
        put(&mut f, UP, up.collect(), uv.clone());
        Some((f, r))
    }
}
