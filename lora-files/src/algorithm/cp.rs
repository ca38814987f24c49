//! CP (canonical polyadic, Lebedev et al. 2014): one factor per mode of the kernel. No peer
//! library has a file layout for it, so only the native format holds it.

use lora_conv::functional::cp;

use super::{Algorithm, Delta, Factors, Site};
use crate::error::Result;

/// CP: `cp_up` `[out, r]`, `cp_down` `[r, in/groups]`, and `cp_spatial_{j}` `[k_j, r]` for
/// each spatial axis `j` in order.
#[derive(Debug, Clone, Copy)]
pub struct Cp;

const UP: &str = "cp_up";
const DOWN: &str = "cp_down";

fn spatial_name(j: usize) -> String {
    format!("cp_spatial_{j}")
}

impl Algorithm for Cp {
    fn name(&self) -> &'static str {
        "cp"
    }

    fn claims(&self, names: &[&str]) -> bool {
        names.contains(&UP)
            && names.contains(&DOWN)
            && names.len() > 2
            && (0..names.len() - 2).all(|j| names.contains(&spatial_name(j).as_str()))
    }

    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize> {
        let up = site.factor(factors, UP)?;
        match up.shape.as_slice() {
            [_, r] if *r > 0 => Ok(*r),
            _ => Err(site.shape_error(UP, "[out, r] with r >= 1", &up.shape)),
        }
    }

    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta> {
        let r = self.rank(site, factors)?;
        let up = site.factor(factors, UP)?;
        let down = site.factor(factors, DOWN)?;
        if down.shape.len() != 2 || down.shape[0] != r {
            return Err(site.shape_error(DOWN, format!("[{r}, in]"), &down.shape));
        }
        let mut shape = vec![up.shape[0], down.shape[1]];
        let mut spatial = Vec::new();
        for j in 0..factors.len() - 2 {
            let name = spatial_name(j);
            let f = site.factor(factors, &name)?;
            if f.shape.len() != 2 || f.shape[1] != r {
                return Err(site.shape_error(&name, format!("[k_{j}, {r}]"), &f.shape));
            }
            shape.push(f.shape[0]);
            spatial.push(f.matrix(f.shape[0]));
        }
        Ok(Delta {
            matrix: cp::delta(up.matrix(up.shape[0]), down.matrix(r), &spatial, 1.0),
            shape: Some(shape),
        })
    }

    fn lycoris_names(&self) -> bool {
        false
    }
}
