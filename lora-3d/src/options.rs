//! How to inflate: depth, mode, and what happens to adapters.

use crate::error::{InflateError, Result};

/// The largest depth kernel inflation accepts. Far above any real use; a larger request
/// (`usize::MAX`, say) is refused before anything of that size is allocated.
pub const MAX_DEPTH: usize = 4095;

/// How a 2D kernel fills the depth axis of its 3D kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateMode {
    /// The 2D kernel in the centre depth slice, zeros elsewhere. With depth stride 1 and depth
    /// padding `(kd-1)/2`, every output slice equals the 2D layer on the matching input slice,
    /// for any input.
    Centre,
    /// The 2D kernel repeated over depth and divided by `kd` (I3D, Carreira & Zisserman 2017).
    /// Exact only for inputs that are constant along depth, and only on output slices whose
    /// depth window lies inside the volume (all of them with depth padding 0).
    Mean,
}

impl InflateMode {
    fn name(self) -> &'static str {
        match self {
            InflateMode::Centre => "centre",
            InflateMode::Mean => "mean",
        }
    }
}

/// What inflation does with LoRA adapters attached to the 2D model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Inflate each adapter along with its weight (LoCon: centre the down kernel; Tucker-2: centre
    /// the mid kernel; CP: add a depth factor that is one-hot at the centre) and attach it to
    /// the 3D weight, merge state included. The 3D adapted net equals the 2D adapted net per
    /// slice, and can be trained further on volumes.
    Inflate,
    /// Fold the updates into the weights, then inflate plain weights (for fresh 3D adapters on
    /// top of a fine-tuned 2D net).
    Merge,
    /// Drop the adapters and inflate the pretrained base weights (for fresh 3D adapters on the
    /// original base).
    Discard,
}

/// Inflation settings.
///
/// The defaults (`InflateOptions::new(3)`) are the design document's: centre mode, depth
/// stride 1, depth padding `(kd-1)/2`, adapters inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflateOptions {
    /// Depth kernel size `kd` (odd).
    pub depth: usize,
    /// How the 2D kernel fills the depth axis.
    pub mode: InflateMode,
    /// Depth stride of every inflated conv.
    pub depth_stride: usize,
    /// Depth padding of every inflated conv; `None` means `(kd-1)/2`.
    pub depth_padding: Option<usize>,
    /// What to do with adapters.
    pub adapters: AdapterPolicy,
}

impl InflateOptions {
    /// Centre mode with depth kernel `depth`, stride 1, padding `(depth-1)/2`.
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            mode: InflateMode::Centre,
            depth_stride: 1,
            depth_padding: None,
            adapters: AdapterPolicy::Inflate,
        }
    }

    /// Set the mode.
    pub fn with_mode(mut self, mode: InflateMode) -> Self {
        self.mode = mode;
        self
    }

    /// Set the depth stride.
    pub fn with_depth_stride(mut self, stride: usize) -> Self {
        self.depth_stride = stride;
        self
    }

    /// Set the depth padding.
    pub fn with_depth_padding(mut self, padding: usize) -> Self {
        self.depth_padding = Some(padding);
        self
    }

    /// Set the adapter policy.
    pub fn with_adapters(mut self, policy: AdapterPolicy) -> Self {
        self.adapters = policy;
        self
    }

    /// The depth padding in effect.
    pub fn padding(&self) -> usize {
        self.depth_padding
            .unwrap_or(self.depth.saturating_sub(1) / 2)
    }

    /// Check the settings.
    ///
    /// # Errors
    /// [`InflateError::ZeroDepth`], [`InflateError::EvenDepth`],
    /// [`InflateError::DepthTooLarge`] above [`MAX_DEPTH`]; in centre mode,
    /// [`InflateError::InexactDepth`] for a depth stride other than 1 or a depth padding other
    /// than `(kd-1)/2`; in mean mode, for a zero stride or a padding above `(kd-1)/2`.
    pub fn validate(&self) -> Result<()> {
        let depth = self.depth;
        if depth == 0 {
            return Err(InflateError::ZeroDepth);
        }
        if depth.is_multiple_of(2) {
            return Err(InflateError::EvenDepth { depth });
        }
        if depth > MAX_DEPTH {
            return Err(InflateError::DepthTooLarge {
                depth,
                max: MAX_DEPTH,
            });
        }
        let centre = (depth - 1) / 2;
        let inexact = |reason: String| InflateError::InexactDepth {
            mode: self.mode.name(),
            depth,
            reason,
        };
        match self.mode {
            InflateMode::Centre if self.depth_stride != 1 => Err(inexact(format!(
                "depth stride {} skips slices; per-slice exactness needs stride 1",
                self.depth_stride
            ))),
            InflateMode::Centre if self.padding() != centre => Err(inexact(format!(
                "depth padding {} shifts the slices; per-slice exactness needs (kd-1)/2 = {centre}",
                self.padding()
            ))),
            InflateMode::Mean if self.depth_stride == 0 => {
                Err(inexact("depth stride 0".to_string()))
            }
            InflateMode::Mean if self.padding() > centre => Err(inexact(format!(
                "depth padding {} exceeds (kd-1)/2 = {centre}: the output grows in depth",
                self.padding()
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(InflateOptions::new(3).validate().is_ok());
        assert!(InflateOptions::new(1).validate().is_ok());
        assert!(matches!(
            InflateOptions::new(0).validate(),
            Err(InflateError::ZeroDepth)
        ));
        assert!(matches!(
            InflateOptions::new(4).validate(),
            Err(InflateError::EvenDepth { depth: 4 })
        ));
        let err = InflateOptions::new(3)
            .with_depth_stride(2)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("stride 2"), "{err}");
        let err = InflateOptions::new(5)
            .with_depth_padding(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("(kd-1)/2 = 2"), "{err}");
        // Mean mode may use valid depth padding and a stride.
        let mean = InflateOptions::new(3).with_mode(InflateMode::Mean);
        assert!(mean.clone().with_depth_padding(0).validate().is_ok());
        assert!(mean.clone().with_depth_stride(2).validate().is_ok());
        assert!(mean.with_depth_padding(2).validate().is_err());
    }
}
