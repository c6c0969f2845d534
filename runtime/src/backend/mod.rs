//! The inference seam: one backend-neutral graph type over tract and
//! onnxruntime.
//!
//! A [`Graph`] is an ONNX file loaded for fixed input shapes, with its input
//! and output buffers allocated once at load: callers fill
//! [`Graph::input_mut`], call [`Graph::run`] and read [`Graph::output`]. The
//! tensors a caller expects are declared ([`TensorDecl`]) and checked at load
//! by the same functions ([`check`]) whichever backend runs the graph: names,
//! element type, rank and fixed sizes against what the file declares, then
//! the concrete output shapes of a probe run on zeros.
//!
//! Only the modules below this one name an inference library: [`tract`]
//! (the default: pure Rust, no native library) and [`ort`] (onnxruntime,
//! loaded at run time). The encoder, the reward model, the scorer and the
//! policy code use [`Backend`] and [`Graph`] only.

mod check;
mod config;
mod ort;
mod tract;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use check::{Dim, ElemType, FileDim, Signature, TensorDecl, TensorFacts};
pub use config::{BackendConfig, BackendKind, Provider};

use crate::bundle::{BundleError, Precision};

/// The most inputs or outputs a graph may have (no heap for the list).
pub const MAX_IO: usize = 8;

/// What a graph is loaded for: the file, the manifest key that named it
/// (for errors), the tensors the caller reads and writes, and the sizes the
/// symbolic batch and time dimensions are bound to.
#[derive(Debug, Clone)]
pub struct GraphSpec<'a> {
    pub path: &'a Path,
    pub field: &'a str,
    pub inputs: &'a [TensorDecl],
    pub outputs: &'a [TensorDecl],
    pub batch: usize,
    pub time: usize,
}

impl GraphSpec<'_> {
    /// The concrete shape of a declared tensor under this spec.
    pub fn shape_of(&self, decl: &TensorDecl) -> Vec<usize> {
        decl.dims
            .iter()
            .map(|d| match d {
                Dim::Batch => self.batch,
                Dim::Time => self.time,
                Dim::Fixed(n) => *n,
            })
            .collect()
    }
}

/// Why a backend could not be set up (before any graph is loaded).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "backend `ort` needs the ONNX Runtime shared library (libonnxruntime.so, API >= 1.{min_api}): \
         set ORT_DYLIB_PATH or `backend.ort_library` to its path. The `onnxruntime` wheel on PyPI \
         ships one in onnxruntime/capi/ (`pip download onnxruntime==1.32.0 --no-deps` and unzip; \
         tests/setup.sh does this for the tests); onnxruntime-gpu and the Jetson builds bring CUDA \
         and TensorRT"
    )]
    LibraryNotConfigured { min_api: u32 },
    #[error("cannot load the ONNX Runtime library {path} (from {source_of_path}): {message}")]
    Library {
        path: PathBuf,
        source_of_path: &'static str,
        message: String,
    },
    #[error(
        "ONNX Runtime is already loaded from {loaded} in this process; cannot switch to {requested}"
    )]
    LibraryMismatch { loaded: PathBuf, requested: PathBuf },
    #[error("backend.{key}: {message}")]
    Config { key: &'static str, message: String },
    #[error(
        "execution provider {provider} is required (backend.require_provider = true) but this \
         ONNX Runtime library offers only {available:?}"
    )]
    ProviderUnavailable {
        provider: Provider,
        available: Vec<String>,
    },
}

/// Failure while running a loaded graph.
#[derive(Debug, thiserror::Error)]
#[error("running {path}: {message}")]
pub struct InferenceError {
    pub path: PathBuf,
    pub message: String,
}

/// A configured backend, ready to load graphs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Backend {
    config: Arc<BackendConfig>,
    ort: Option<ort::OrtRuntime>,
}

impl Default for Backend {
    fn default() -> Self {
        Backend::tract()
    }
}

impl Backend {
    /// tract with default settings (needs nothing at run time).
    pub fn tract() -> Self {
        Backend {
            config: Arc::new(BackendConfig::default()),
            ort: None,
        }
    }

    /// Sets up the configured backend: for `ort`, loads the ONNX Runtime
    /// library and checks the providers the config requires.
    pub fn new(config: &BackendConfig) -> Result<Self, BackendError> {
        config.validate()?;
        let ort = match config.kind {
            BackendKind::Tract => None,
            BackendKind::Ort => Some(ort::OrtRuntime::init(config)?),
        };
        Ok(Backend {
            config: Arc::new(config.clone()),
            ort,
        })
    }

    pub fn kind(&self) -> BackendKind {
        self.config.kind
    }

    pub fn config(&self) -> &BackendConfig {
        &self.config
    }

    /// Loads `spec.path` for the shapes in `spec` and checks it.
    pub fn load(&self, spec: &GraphSpec<'_>) -> Result<Graph, BundleError> {
        if spec.inputs.len() > MAX_IO || spec.outputs.len() > MAX_IO {
            return Err(BundleError::mismatch(
                spec.field,
                format!("at most {MAX_IO} inputs and outputs"),
                format!(
                    "{} inputs, {} outputs",
                    spec.inputs.len(),
                    spec.outputs.len()
                ),
            ));
        }
        let engine = match &self.ort {
            None => Engine::Tract(tract::TractGraph::load(spec)?),
            Some(rt) => Engine::Ort(Box::new(rt.load(spec, &self.config)?)),
        };
        // Each backend's load ends with a probe run on zeros; its output
        // shapes must be the declared ones.
        for (ix, decl) in spec.outputs.iter().enumerate() {
            check::output_shape(spec, decl, engine.output_shape(ix))?;
        }
        let graph = Graph {
            path: spec.path.to_path_buf(),
            engine,
        };
        Ok(graph)
    }

    /// What this backend is, for logs, `sarm inspect` and /diagnostics.
    pub fn describe(&self) -> BackendInfo {
        BackendInfo {
            kind: self.config.kind,
            library: self.ort.as_ref().map(|o| o.library().to_path_buf()),
            version: match &self.ort {
                Some(o) => o.version().to_string(),
                None => tract::VERSION.to_string(),
            },
            available_providers: self
                .ort
                .as_ref()
                .map(|o| o.available_providers().to_vec())
                .unwrap_or_default(),
        }
    }
}

/// Identity of a configured backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendInfo {
    pub kind: BackendKind,
    /// The ONNX Runtime library loaded (ort only).
    pub library: Option<PathBuf>,
    pub version: String,
    /// Execution providers the ONNX Runtime library was built with (ort only).
    pub available_providers: Vec<String>,
}

impl BackendInfo {
    /// Key/value pairs for /diagnostics.
    pub fn key_values(&self) -> Vec<(&'static str, String)> {
        let mut kv = vec![
            ("backend", self.kind.as_str().to_string()),
            ("backend_version", self.version.clone()),
        ];
        if let Some(lib) = &self.library {
            kv.push(("backend_library", lib.display().to_string()));
            kv.push((
                "backend_available_providers",
                self.available_providers.join(","),
            ));
        }
        kv
    }
}

/// Says why int8 is a poor choice on this backend, when it is: tract runs
/// QDQ int8 graphs slower than their fp32 versions (measured by
/// `sarm bench`), onnxruntime runs them with integer kernels. The node logs
/// it at start-up when the config picks int8.
pub fn precision_warning(kind: BackendKind, precision: Precision) -> Option<&'static str> {
    match (kind, precision) {
        (BackendKind::Tract, Precision::Int8) => Some(
            "int8 on the tract backend is slower than fp32 (tract evaluates QDQ graphs in float with \
             extra quantize/dequantize work; see `sarm bench BUNDLE --backend tract`); int8 pays on \
             backend = \"ort\"",
        ),
        _ => None,
    }
}

/// A loaded graph with its preallocated input and output buffers.
pub struct Graph {
    path: PathBuf,
    engine: Engine,
}

// One per loaded graph, built once and never moved on the hot path: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Tract(tract::TractGraph),
    Ort(Box<ort::OrtGraph>),
}

impl Engine {
    fn output_shape(&self, ix: usize) -> &[usize] {
        match self {
            Engine::Tract(g) => g.output_shape(ix),
            Engine::Ort(g) => g.output_shape(ix),
        }
    }
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("path", &self.path)
            .field("provider", &self.provider())
            .finish()
    }
}

impl Graph {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names and shapes of the inputs and outputs as the file declares them.
    pub fn signature(&self) -> &Signature {
        match &self.engine {
            Engine::Tract(g) => g.signature(),
            Engine::Ort(g) => g.signature(),
        }
    }

    /// Where the graph runs: `tract`, or the onnxruntime execution provider
    /// that took the graph (`CPUExecutionProvider`, `CUDAExecutionProvider`, ...).
    pub fn provider(&self) -> &str {
        match &self.engine {
            Engine::Tract(_) => "tract",
            Engine::Ort(g) => g.provider(),
        }
    }

    /// Input `ix` (declaration order), to be filled in place before [`Self::run`].
    pub fn input_mut(&mut self, ix: usize) -> &mut [f32] {
        match &mut self.engine {
            Engine::Tract(g) => g.input_mut(ix),
            Engine::Ort(g) => g.input_mut(ix),
        }
    }

    /// Input `ix` as last written.
    pub fn input(&self, ix: usize) -> &[f32] {
        match &self.engine {
            Engine::Tract(g) => g.input(ix),
            Engine::Ort(g) => g.input(ix),
        }
    }

    /// All inputs at once, in declaration order (disjoint borrows).
    pub fn inputs_mut(&mut self) -> heapless::Vec<&mut [f32], MAX_IO> {
        let mut out = heapless::Vec::new();
        match &mut self.engine {
            Engine::Tract(g) => g.inputs_mut(&mut out),
            Engine::Ort(g) => g.inputs_mut(&mut out),
        }
        out
    }

    /// Output `ix` (declaration order) of the last run.
    pub fn output(&self, ix: usize) -> &[f32] {
        match &self.engine {
            Engine::Tract(g) => g.output(ix),
            Engine::Ort(g) => g.output(ix),
        }
    }

    /// Runs the graph on the current inputs. Allocations made inside are
    /// attributed to [`crate::alloc_scope::Scope::Model`].
    pub fn run(&mut self) -> Result<(), InferenceError> {
        let engine = &mut self.engine;
        let result =
            crate::alloc_scope::within(crate::alloc_scope::Scope::Model, || match engine {
                Engine::Tract(g) => g.run(),
                Engine::Ort(g) => g.run(),
            });
        result.map_err(|message| InferenceError {
            path: self.path.clone(),
            message,
        })
    }
}
