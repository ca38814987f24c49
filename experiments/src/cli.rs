//! Command-line pieces shared by the binaries.

use lora_core::DeviceSpec;

/// Parse `--device` (`cpu`, `wgpu[:N]`, `cuda[:N]`) for clap.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse::<DeviceSpec>().map_err(|e| e.to_string())
}
