//! Backend selection: which backends this build has, and the burn [`Device`] of each.
//!
//! A [`DeviceSpec`] names a backend and device; [`DeviceSpec::device`] creates it. CPU (burn's
//! pure-Rust `flex` backend) needs no feature. `wgpu` and `cuda` are cargo features of this
//! crate (forwarded by every crate above it), which is why the selection lives here; asking
//! for a backend that was not compiled in is an error that names the feature to enable. How a
//! command line spells a device (`--device wgpu:1`) is the binaries' business
//! (`experiments::cli::parse_device`).

use core::fmt;

use burn::tensor::Device;

use crate::LoraError;

/// Which backend and device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// burn `flex`, pure Rust on the CPU. Always available.
    #[default]
    Cpu,
    /// wgpu (Vulkan, Metal, DX12; Mesa lavapipe on a CPU-only Linux box). `None` lets wgpu pick
    /// the best adapter; `Some(i)` picks the i-th discrete GPU.
    Wgpu(Option<usize>),
    /// CUDA device with the given index.
    Cuda(usize),
}

impl DeviceSpec {
    /// Whether this build can create the device.
    pub fn is_compiled_in(&self) -> bool {
        match self {
            DeviceSpec::Cpu => true,
            DeviceSpec::Wgpu(_) => cfg!(feature = "wgpu"),
            DeviceSpec::Cuda(_) => cfg!(feature = "cuda"),
        }
    }

    /// Create the burn device (without autodiff; call `.autodiff()` on it to train).
    ///
    /// # Errors
    /// [`LoraError::Device`] when the backend's cargo feature is not enabled in this build.
    pub fn device(&self) -> Result<Device, LoraError> {
        match *self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu(index) => {
                use burn::tensor::DeviceKind;
                Ok(Device::wgpu(match index {
                    None => DeviceKind::DefaultDevice,
                    Some(i) => DeviceKind::DiscreteGpu(i),
                }))
            }
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => Ok(Device::cuda(index)),
            #[allow(unreachable_patterns)]
            other => Err(LoraError::Device(format!(
                "device `{other}` is not compiled into this build; rebuild with `--features {}` \
                 (the `cuda` feature needs network access at build time)",
                other.feature()
            ))),
        }
    }

    fn feature(&self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "",
            DeviceSpec::Wgpu(_) => "wgpu",
            DeviceSpec::Cuda(_) => "cuda",
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Wgpu(None) => write!(f, "wgpu"),
            DeviceSpec::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_backend_names_its_feature() {
        if !cfg!(feature = "cuda") {
            let err = DeviceSpec::Cuda(0).device().err().map(|e| e.to_string());
            let msg = err.unwrap_or_default();
            assert!(msg.contains("--features cuda"), "{msg}");
        }
        if !cfg!(feature = "wgpu") {
            let msg = DeviceSpec::Wgpu(None).device().err().map(|e| e.to_string());
            assert!(msg.unwrap_or_default().contains("--features wgpu"));
        }
        assert!(DeviceSpec::Cpu.device().is_ok());
    }
}
