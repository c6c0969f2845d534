//! `[backend]`: which inference backend runs the models, and how. The node
//! embeds it in its TOML; `sarm label`, `bench` and `inspect` build it from
//! `--backend` and their flags.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::BackendError;

/// Which library runs the graphs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// tract-onnx: pure Rust, no native library, the default.
    #[default]
    Tract,
    /// onnxruntime, loaded at run time (`ORT_DYLIB_PATH` or `ort_library`).
    Ort,
}

impl BackendKind {
    pub const ALL: [BackendKind; 2] = [BackendKind::Tract, BackendKind::Ort];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::Ort => "ort",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tract" => Some(BackendKind::Tract),
            "ort" | "onnxruntime" => Some(BackendKind::Ort),
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An onnxruntime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// NVIDIA TensorRT (onnxruntime-gpu, Jetson builds).
    Tensorrt,
    /// NVIDIA CUDA (onnxruntime-gpu, Jetson builds).
    Cuda,
    /// onnxruntime's own CPU kernels (always available).
    Cpu,
}

impl Provider {
    /// onnxruntime's name for it.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Tensorrt => "TensorrtExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::Cpu => "CPUExecutionProvider",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Tensorrt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        })
    }
}

/// The `[backend]` table. Every key has a default; unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// `tract` (default) or `ort`.
    pub kind: BackendKind,
    /// ort: path of libonnxruntime.so. `ORT_DYLIB_PATH`, when set, wins.
    pub ort_library: Option<PathBuf>,
    /// ort: execution providers in order of preference; the first that
    /// registers takes the graph. `cpu` is always the last resort.
    pub providers: Vec<Provider>,
    /// ort: fail at load when the first provider is unavailable, instead of
    /// falling back to the next with a warning.
    pub require_provider: bool,
    /// ort: threads within an operator, per graph (1 = the calling thread only).
    pub intra_op_threads: usize,
    /// ort: threads across operators, per graph (graphs run sequentially).
    pub inter_op_threads: usize,
    /// ort: let idle pool threads spin before sleeping. Off by default: on a
    /// small CPU the spinning pools of several graphs steal each other's
    /// cores (measured 91 ms vs 47 ms per step on 2 cores).
    pub spinning: bool,
    /// ort, cuda/tensorrt: the GPU to use.
    pub device_id: i32,
    /// ort, tensorrt: cache built engines here (building takes minutes on a
    /// Jetson); none = no cache.
    pub tensorrt_cache_dir: Option<PathBuf>,
    /// ort, tensorrt: allow fp16 kernels.
    pub tensorrt_fp16: bool,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            kind: BackendKind::Tract,
            ort_library: None,
            providers: vec![Provider::Cpu],
            require_provider: false,
            intra_op_threads: 1,
            inter_op_threads: 1,
            spinning: false,
            device_id: 0,
            tensorrt_cache_dir: None,
            tensorrt_fp16: false,
        }
    }
}

/// The most threads a graph may be given.
const MAX_THREADS: usize = 256;

impl BackendConfig {
    /// The default configuration of `kind`.
    pub fn of_kind(kind: BackendKind) -> Self {
        BackendConfig {
            kind,
            ..BackendConfig::default()
        }
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), BackendError> {
        let bad = |key, message: String| Err(BackendError::Config { key, message });
        if self.providers.is_empty() {
            return bad(
                "providers",
                "at least one of \"tensorrt\", \"cuda\", \"cpu\"".into(),
            );
        }
        let mut seen = Vec::new();
        for p in &self.providers {
            if seen.contains(p) {
                return bad("providers", format!("{p} is listed twice"));
            }
            seen.push(*p);
        }
        for (key, n) in [
            ("intra_op_threads", self.intra_op_threads),
            ("inter_op_threads", self.inter_op_threads),
        ] {
            if n == 0 || n > MAX_THREADS {
                return bad(key, format!("a thread count 1..={MAX_THREADS}, found {n}"));
            }
        }
        if self.device_id < 0 {
            return bad(
                "device_id",
                format!("a GPU index >= 0, found {}", self.device_id),
            );
        }
        if let Some(p) = &self.ort_library {
            if p.as_os_str().is_empty() {
                return bad("ort_library", "a path (or leave the key out)".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_defaults() {
        let c: BackendConfig = toml::from_str(
            r#"
            kind = "ort"
            ort_library = "/opt/ort/libonnxruntime.so"
            providers = ["tensorrt", "cuda", "cpu"]
            require_provider = true
            intra_op_threads = 2
            "#,
        )
        .unwrap();
        assert_eq!(c.kind, BackendKind::Ort);
        assert_eq!(
            c.providers,
            vec![Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
        );
        assert_eq!(c.inter_op_threads, 1);
        assert!(!c.spinning);
        c.validate().unwrap();
        let back: BackendConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let empty: BackendConfig = toml::from_str("").unwrap();
        assert_eq!(empty, BackendConfig::default());
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = toml::from_str::<BackendConfig>("kind = \"onnx\"").unwrap_err();
        assert!(e.to_string().contains("tract"), "{e}");
        let e = toml::from_str::<BackendConfig>("threads = 2").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<BackendConfig>("providers = [\"gpu\"]").unwrap_err();
        assert!(e.to_string().contains("cuda"), "{e}");
        let c = BackendConfig {
            intra_op_threads: 0,
            ..BackendConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("intra_op_threads"));
        let c = BackendConfig {
            providers: vec![Provider::Cpu, Provider::Cpu],
            ..BackendConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("providers"));
    }
}
