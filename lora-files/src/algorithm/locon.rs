//! LoRA / LoCon: `ΔW = up · down`, with `down` the kxk (or linear) down projection and `up` a
//! pointwise up projection. PEFT's `lora_A`/`lora_B` are the same factors under other names
//! (grouped convs aside: `crate::format::peft_groups` converts). Native files before version 3
//! called it `lora`.

use burn::tensor::Device;
use lora_conv::functional::locon;
use lora_conv::{AnyAdapter, LoConAdapter};
use lora_core::LoraError;

use super::concat::{self, Part};
use super::modules::{by_rank, ones, part, put};
use super::{
    Algorithm, Delta, Factor, Factors, ModuleFactors, ModuleLayer, Site, exactly, pointwise,
};
use crate::LayerAdapter;
use crate::error::Result;
use crate::format::peft_groups;

/// LoRA on a linear layer, LoCon on a convolution (kohya, LyCORIS, PEFT).
#[derive(Debug, Clone, Copy)]
pub struct LoCon;

/// Factor names: `lora_down.weight` `[r, in/groups, k..]`, `lora_up.weight` `[out, r, 1..]`.
const DOWN: &str = "lora_down.weight";
const UP: &str = "lora_up.weight";

impl Algorithm for LoCon {
    fn name(&self) -> &'static str {
        "locon"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["lora"]
    }

    fn claims(&self, names: &[&str]) -> bool {
        exactly(names, &[DOWN, UP])
    }

    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize> {
        let down = site.factor(factors, DOWN)?;
        match down.shape.first() {
            Some(&r) if r > 0 && down.shape.len() >= 2 => Ok(r),
            _ => Err(site.shape_error(DOWN, "[r, in, k..] with r >= 1", &down.shape)),
        }
    }

    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta> {
        let r = self.rank(site, factors)?;
        let down = site.factor(factors, DOWN)?;
        let up = site.factor(factors, UP)?;
        let (t, ur) = pointwise(site, UP, up)?;
        if ur != r || up.shape.len() != down.shape.len() {
            let mut expected = vec![t, r];
            expected.extend(std::iter::repeat_n(1, down.shape.len().saturating_sub(2)));
            return Err(site.shape_error(UP, format!("{expected:?}"), &up.shape));
        }
        let mut shape = vec![t];
        shape.extend_from_slice(&down.shape[1..]);
        Ok(Delta {
            matrix: locon::delta(down.matrix(r), up.matrix(t), 1.0),
            shape: Some(shape),
        })
    }

    fn peft_factors(&self, layer: &LayerAdapter) -> Option<Result<(Factor, Factor)>> {
        Some(peft_groups::to_peft(layer))
    }

    fn concatenate(&self, parts: &[Part<'_>]) -> std::result::Result<Factors, String> {
        concatenate_down_up(parts)
    }

    fn has_module(&self) -> bool {
        true
    }

    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        let (down, up) = (layer.factor(DOWN)?, layer.factor(UP)?);
        if layer.axes(DOWN) == 2 {
            // PEFT's layout is LoCon's on the PyTorch layout [out, in]; the carrier transposes
            // the update into burn's [in, out].
            if down.shape[0] != up.shape[1] {
                return Err(LoraError::ShapeMismatch {
                    path: format!("{} (lora_up)", layer.path),
                    expected: vec![up.shape[0], down.shape[0]],
                    actual: up.shape.clone(),
                });
            }
            return Ok(AnyAdapter::new(LoConAdapter {
                down: layer.param(DOWN, device)?,
                up: layer.param(UP, device)?,
                scale: layer.scale,
                shape: vec![up.shape[0], down.shape[1]],
            }));
        }
        by_rank!(layer, layer.axes(DOWN), D => Ok(AnyAdapter::new(LoConAdapter::from_peft::<D>(
            layer.path,
            layer.tensor::<D>(DOWN, device)?,
            layer.tensor::<D>(UP, device)?,
            layer.scale,
        )?)))
    }

    fn read_module(&self, parts: &ModuleFactors<'_>, shape: &[usize]) -> Option<(Factors, usize)> {
        let ((dd, dv), (ud, uv)) = (part(parts, "down")?, part(parts, "up")?);
        let mut f = Factors::new();
        if shape.len() == 2 {
            // A linear LoCon is PEFT's LoRA, already in PyTorch layout.
            put(&mut f, DOWN, dd.clone(), dv.clone());
            put(&mut f, UP, ud.clone(), uv.clone());
            return Some((f, dd[0]));
        }
        let r = dd[0];
        let down = [r].into_iter().chain(shape[1..].iter().copied());
        put(&mut f, DOWN, down.collect(), dv.clone());
        let up = [shape[0], r].into_iter().chain(ones(shape.len() - 2));
        put(&mut f, UP, up.collect(), uv.clone());
        Some((f, r))
    }
}

/// LoCon's (and Tucker-2's outer) factors of a sum of adapters: the down factors stacked, the
/// up factors side by side, each weighted.
pub(crate) fn concatenate_down_up(parts: &[Part<'_>]) -> std::result::Result<Factors, String> {
    let downs: Vec<&Factor> = parts
        .iter()
        .map(|p| p.factor(DOWN))
        .collect::<std::result::Result<_, _>>()?;
    let mut factors = Factors::new();
    factors.insert(DOWN.to_string(), concat::stacked(&downs)?);
    factors.insert(UP.to_string(), concat::columns(parts, UP, true)?);
    Ok(factors)
}
