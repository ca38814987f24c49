//! LoRA / LoCon: `ΔW = up · down`, with `down` the kxk (or linear) down projection and `up` a
//! pointwise up projection. PEFT's `lora_A`/`lora_B` are the same factors under other names.

use lora_conv::functional::locon;

use super::{Algorithm, Delta, Factors, Site, exactly, pointwise};
use crate::error::Result;

/// LoRA on a linear layer, LoCon on a convolution (kohya, LyCORIS, PEFT).
#[derive(Debug, Clone, Copy)]
pub struct LoCon;

/// Factor names: `lora_down.weight` `[r, in/groups, k..]`, `lora_up.weight` `[out, r, 1..]`.
const DOWN: &str = "lora_down.weight";
const UP: &str = "lora_up.weight";

impl Algorithm for LoCon {
    fn name(&self) -> &'static str {
        "lora"
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
}
