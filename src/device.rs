//! Which device the model runs on: `--device auto|cpu|cuda|metal`.
//!
//! The default build is CPU-only; the `cuda` and `metal` cargo features pass through to candle. `auto`
//! takes a GPU when the build has one and it is present, else the CPU. Not for: thread settings.

use candle_core::Device;

/// The user's choice of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
    Metal,
}

/// Opens the chosen device and returns it with a description for the user ("cpu", "cuda:0", ...).
pub fn open(choice: DeviceChoice) -> Result<(Device, String), String> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, cpu_name())),
        DeviceChoice::Cuda => {
            if !cfg!(feature = "cuda") {
                return Err("this imgvec was built without CUDA: rebuild with `cargo build --release --features cuda`".into());
            }
            Device::new_cuda(0)
                .map(|d| (d, "cuda:0".to_string()))
                .map_err(|e| format!("cannot open CUDA device 0: {e}"))
        }
        DeviceChoice::Metal => {
            if !cfg!(feature = "metal") {
                return Err("this imgvec was built without Metal: rebuild on macOS with `cargo build --release --features metal`".into());
            }
            Device::new_metal(0)
                .map(|d| (d, "metal:0".to_string()))
                .map_err(|e| format!("cannot open Metal device 0: {e}"))
        }
        DeviceChoice::Auto => {
            if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok((d, "cuda:0 (auto)".to_string()));
                }
            }
            if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
                if let Ok(d) = Device::new_metal(0) {
                    return Ok((d, "metal:0 (auto)".to_string()));
                }
            }
            Ok((Device::Cpu, format!("{} (auto)", cpu_name())))
        }
    }
}

fn cpu_name() -> String {
    format!("cpu, {} threads", candle_core::utils::get_num_threads())
}
