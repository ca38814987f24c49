//! CP (canonical polyadic, Lebedev et al. 2014): one factor per mode of the kernel. No peer
//! library has a file layout for it, so only the native format holds it.

use burn::tensor::Device;
use lora_conv::functional::cp;
use lora_conv::{AnyAdapter, CpAdapter};

use super::concat::{self, Part};
use super::modules::{part, put};
use super::{Algorithm, Delta, Factors, ModuleFactors, ModuleLayer, Site};
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

    fn concatenate(&self, parts: &[Part<'_>]) -> std::result::Result<Factors, String> {
        // The down factors `[r, in]` stacked; the up and spatial factors `[rows, r]` side by
        // side, the up factor carrying the weights.
        let mut factors = Factors::new();
        for name in parts
            .first()
            .map(|p| p.factors.keys())
            .into_iter()
            .flatten()
        {
            let f = if name == DOWN {
                let downs: Vec<_> = parts
                    .iter()
                    .map(|p| p.factor(DOWN))
                    .collect::<std::result::Result<_, _>>()?;
                concat::stacked(&downs)?
            } else {
                concat::columns(parts, name, name == UP)?
            };
            factors.insert(name.clone(), f);
        }
        Ok(factors)
    }

    fn has_module(&self) -> bool {
        true
    }

    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        let (up, down) = (layer.factor(UP)?, layer.factor(DOWN)?);
        let spatial_names: Vec<String> = (0..layer.factors.len().saturating_sub(2))
            .map(spatial_name)
            .collect();
        let mut shape = vec![up.shape[0], down.shape[1]];
        let mut spatial = Vec::with_capacity(spatial_names.len());
        for name in &spatial_names {
            shape.push(layer.factor(name)?.shape[0]);
            spatial.push(layer.param(name, device)?);
        }
        Ok(AnyAdapter::new(CpAdapter {
            up: layer.param(UP, device)?,
            down: layer.param(DOWN, device)?,
            spatial,
            scale: layer.scale,
            shape,
        }))
    }

    fn read_module(&self, parts: &ModuleFactors<'_>, shape: &[usize]) -> Option<(Factors, usize)> {
        let ((ud, uv), (dd, dv)) = (part(parts, "up")?, part(parts, "down")?);
        let mut f = Factors::new();
        put(&mut f, UP, ud.clone(), uv.clone());
        put(&mut f, DOWN, dd.clone(), dv.clone());
        for j in 0..shape.len().saturating_sub(2) {
            let (sd, sv) = part(parts, &format!("spatial.{j}"))?;
            put(&mut f, &spatial_name(j), sd.clone(), sv.clone());
        }
        Some((f, dd[0]))
    }
}
