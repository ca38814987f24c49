//! Backend selection, in one place for every binary, test and benchmark.
//!
//! A [`DeviceSpec`] is parsed from the command line (`cpu`, `wgpu`, `wgpu:1`, `cuda`, `cuda:0`) and
//! turned into a burn [`Device`]. CPU (burn's pure-Rust `flex` backend) needs no feature. `wgpu`
//! and `cuda` are cargo features of this crate (forwarded by every crate above it); asking for a
//! backend that was not compiled in is an error that names the feature to enable.

use core::fmt;
use core::str::FromStr;

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

impl FromStr for DeviceSpec {
    type Err = LoraError;

    /// Parse `cpu`, `wgpu`, `wgpu:N`, `cuda` or `cuda:N` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((name, index)) => {
                let index = index.parse::<usize>().map_err(|_| {
                    LoraError::Device(format!("bad device index `{index}` in `{s}`"))
                })?;
                (name, Some(index))
            }
            None => (lower.as_str(), None),
        };
        match (name, index) {
            ("cpu" | "flex", None) => Ok(DeviceSpec::Cpu),
            ("wgpu", index) => Ok(DeviceSpec::Wgpu(index)),
            ("cuda", index) => Ok(DeviceSpec::Cuda(index.unwrap_or(0))),
            _ => Err(LoraError::Device(format!(
                "unknown device `{s}`; expected cpu, wgpu[:N] or cuda[:N]"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let cases = [
            ("cpu", DeviceSpec::Cpu),
            ("CPU", DeviceSpec::Cpu),
            ("wgpu", DeviceSpec::Wgpu(None)),
            ("wgpu:1", DeviceSpec::Wgpu(Some(1))),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ];
        for (text, spec) in cases {
            assert_eq!(text.parse::<DeviceSpec>(), Ok(spec), "{text}");
            assert_eq!(spec.to_string().parse::<DeviceSpec>(), Ok(spec));
        }
        for bad in ["tpu", "cpu:1", "wgpu:x", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad} should fail");
        }
    }

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
