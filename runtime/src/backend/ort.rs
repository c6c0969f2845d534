//! onnxruntime through the `ort` crate, with the ONNX Runtime library
//! loaded at run time (`load-dynamic`): nothing native is needed to build.
//!
//! The library comes from `ORT_DYLIB_PATH`, else `backend.ort_library`;
//! ONNX Runtime allows one environment per process, so the first backend
//! set up loads it and later ones share it. Each graph is a session with
//! explicit thread counts and spinning, the configured execution providers
//! tried in order, and I/O binding to tensors allocated once at load: a run
//! rebinds the inputs (a pointer store on CPU; the copy to the device on a
//! GPU) and runs through the C API, so nothing is allocated on the Rust side
//! per run.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::memory::Allocator;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{IoBinding, Session};
use ort::value::{Tensor, TensorElementType, ValueType};
use ort::AsPointer;

use super::check::{self, ElemType, FileDim, Signature, TensorFacts};
use super::{BackendConfig, BackendError, GraphSpec, Provider, MAX_IO};
use crate::bundle::BundleError;

/// The process's ONNX Runtime: the library and its environment.
struct Loaded {
    env: Environment,
    library: PathBuf,
    version: String,
    available: Vec<String>,
}

static LOADED: Mutex<Option<Arc<Loaded>>> = Mutex::new(None);

/// A handle on the loaded ONNX Runtime.
#[derive(Clone)]
pub(super) struct OrtRuntime(Arc<Loaded>);

impl std::fmt::Debug for OrtRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtRuntime")
            .field("library", &self.0.library)
            .field("version", &self.0.version)
            .finish()
    }
}

/// Where the library path came from.
fn library_path(config: &BackendConfig) -> Result<(PathBuf, &'static str), BackendError> {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => Ok((PathBuf::from(p), "ORT_DYLIB_PATH")),
        _ => match &config.ort_library {
            Some(p) => Ok((p.clone(), "backend.ort_library")),
            None => Err(BackendError::LibraryNotConfigured {
                min_api: ort::MINOR_VERSION,
            }),
        },
    }
}

/// "1.32.0" from the build info string (`ORT Build Info: git-branch=rel-1.32.0, ...`).
fn version_of(info: &str) -> String {
    info.split([',', ' '])
        .find_map(|part| part.strip_prefix("git-branch=rel-"))
        .map(str::to_string)
        .unwrap_or_else(|| info.chars().take(80).collect())
}

fn provider_available(p: Provider) -> bool {
    let r = match p {
        Provider::Tensorrt => ep::TensorRT::is_available(),
        Provider::Cuda => ep::CUDA::is_available(),
        Provider::Cpu => return true,
    };
    r.unwrap_or(false)
}

impl OrtRuntime {
    pub(super) fn init(config: &BackendConfig) -> Result<Self, BackendError> {
        let (path, source_of_path) = library_path(config)?;
        let lib_err = |message: String| BackendError::Library {
            path: path.clone(),
            source_of_path,
            message,
        };
        if !path.is_file() {
            return Err(lib_err("no such file".into()));
        }
        let canonical = path.canonicalize().map_err(|e| lib_err(e.to_string()))?;
        let mut slot = LOADED.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = match slot.as_ref() {
            Some(l) if l.library == canonical => l.clone(),
            Some(l) => {
                return Err(BackendError::LibraryMismatch {
                    loaded: l.library.clone(),
                    requested: canonical,
                })
            }
            None => {
                let env = ort::init_from(&canonical)
                    .map_err(|e| lib_err(e.to_string()))?
                    .with_name("sarm")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| lib_err(e.to_string()))?;
                let available = [Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
                    .into_iter()
                    .filter(|p| provider_available(*p))
                    .map(|p| p.to_string())
                    .collect();
                let l = Arc::new(Loaded {
                    env,
                    library: canonical,
                    version: version_of(ort::info()),
                    available,
                });
                tracing::info!(
                    "onnxruntime {} loaded from {} ({source_of_path}); providers in this build: {:?}",
                    l.version,
                    l.library.display(),
                    l.available
                );
                *slot = Some(l.clone());
                l
            }
        };
        drop(slot);
        if config.require_provider {
            let first = config.providers[0];
            if !loaded.available.iter().any(|a| a == &first.to_string()) {
                return Err(BackendError::ProviderUnavailable {
                    provider: first,
                    available: loaded.available.clone(),
                });
            }
        }
        Ok(OrtRuntime(loaded))
    }

    pub(super) fn library(&self) -> &Path {
        &self.0.library
    }

    pub(super) fn version(&self) -> &str {
        &self.0.version
    }

    pub(super) fn available_providers(&self) -> &[String] {
        &self.0.available
    }

    pub(super) fn load(
        &self,
        spec: &GraphSpec<'_>,
        config: &BackendConfig,
    ) -> Result<OrtGraph, BundleError> {
        let onnx_err = |message: String| BundleError::Onnx {
            field: spec.field.to_string(),
            path: spec.path.to_path_buf(),
            message,
        };
        let builder = self
            .session_builder(config)
            .map_err(|e| onnx_err(e.to_string()))?;
        let (mut builder, provider) = register_providers(builder, spec, config)?;
        let mut session = builder
            .commit_from_file(spec.path)
            .map_err(|e| onnx_err(e.to_string()))?;

        let input_names: Vec<String> = session.inputs().iter().map(|o| o.name().into()).collect();
        let output_names: Vec<String> = session.outputs().iter().map(|o| o.name().into()).collect();
        check::names(spec, &input_names, &output_names)?;
        let facts = |outlets: &[ort::value::Outlet], name: &str| {
            let o = outlets.iter().find(|o| o.name() == name);
            facts_of(name, o.map(|o| o.dtype()))
        };
        let mut signature = Signature::default();
        for decl in spec.inputs {
            let f = facts(session.inputs(), &decl.name);
            check::input_facts(spec, decl, &f)?;
            signature.inputs.push(f);
        }
        for decl in spec.outputs {
            let f = facts(session.outputs(), &decl.name);
            check::output_facts(spec, decl, &f)?;
            signature.outputs.push(f);
        }

        let new_tensor = |shape: &[usize]| {
            Tensor::<f32>::new(&Allocator::default(), shape.to_vec())
                .map_err(|e| onnx_err(format!("allocating a tensor {shape:?}: {e}")))
        };
        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for decl in spec.inputs {
            inputs.push(new_tensor(&spec.shape_of(decl))?);
        }
        // The probe: a plain run on zeros gives the concrete output shapes,
        // which the caller checks against the declaration.
        let output_shapes: Vec<Vec<usize>> = {
            let feeds: Vec<(&str, &Tensor<f32>)> = spec
                .inputs
                .iter()
                .map(|d| d.name.as_str())
                .zip(inputs.iter())
                .collect();
            let outs = session
                .run(feeds)
                .map_err(|e| onnx_err(format!("probe run on zeros failed: {e}")))?;
            let mut shapes = Vec::new();
            for decl in spec.outputs {
                let v = outs
                    .get(&decl.name)
                    .ok_or_else(|| onnx_err(format!("no output {:?} from a run", decl.name)))?;
                let shape = match v.dtype() {
                    ValueType::Tensor { shape, .. } => {
                        shape.iter().map(|d| (*d).max(0) as usize).collect()
                    }
                    other => return Err(onnx_err(format!("output {:?} is {other}", decl.name))),
                };
                shapes.push(shape);
            }
            shapes
        };

        let mut binding = session
            .create_binding()
            .map_err(|e| onnx_err(e.to_string()))?;
        let mut outputs = Vec::with_capacity(spec.outputs.len());
        for (decl, shape) in spec.outputs.iter().zip(&output_shapes) {
            let mut t = new_tensor(shape)?;
            binding
                .bind_output(decl.name.as_str(), &mut t)
                .map_err(|e| onnx_err(format!("binding output {:?}: {e}", decl.name)))?;
            outputs.push(t);
        }
        let input_cnames = spec
            .inputs
            .iter()
            .map(|d| CString::new(d.name.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| onnx_err(format!("input name: {e}")))?;
        Ok(OrtGraph {
            _runtime: self.clone(),
            session,
            binding,
            inputs,
            input_cnames,
            outputs,
            output_shapes,
            signature,
            provider: provider.ort_name(),
        })
    }

    fn session_builder(&self, c: &BackendConfig) -> ort::Result<SessionBuilder> {
        // Each setter hands the builder back inside its error; only the message is kept.
        fn plain(e: ort::Error<SessionBuilder>) -> ort::Error {
            ort::Error::new(e.to_string())
        }
        Session::builder(&self.0.env)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(plain)?
            .with_intra_threads(c.intra_op_threads)
            .map_err(plain)?
            .with_inter_threads(c.inter_op_threads)
            .map_err(plain)?
            .with_parallel_execution(c.inter_op_threads > 1)
            .map_err(plain)?
            .with_intra_op_spinning(c.spinning)
            .map_err(plain)?
            .with_inter_op_spinning(c.spinning)
            .map_err(plain)
    }
}

/// Registers the first configured provider that works; warns about the
/// ones skipped, or fails when `require_provider` says the first must work.
fn register_providers(
    mut builder: SessionBuilder,
    spec: &GraphSpec<'_>,
    config: &BackendConfig,
) -> Result<(SessionBuilder, Provider), BundleError> {
    let required = config.require_provider.then(|| config.providers[0]);
    for &p in &config.providers {
        let dispatch = match p {
            Provider::Cpu => return Ok((builder, Provider::Cpu)),
            Provider::Cuda => ep::CUDA::default()
                .with_device_id(config.device_id)
                .build()
                .error_on_failure(),
            Provider::Tensorrt => {
                let mut trt = ep::TensorRT::default()
                    .with_device_id(config.device_id)
                    .with_fp16(config.tensorrt_fp16);
                if let Some(dir) = &config.tensorrt_cache_dir {
                    trt = trt
                        .with_engine_cache(true)
                        .with_engine_cache_path(dir.display());
                }
                trt.build().error_on_failure()
            }
        };
        let result = if provider_available(p) {
            dispatch.register(&mut builder).map_err(|e| e.to_string())
        } else {
            Err("not in this ONNX Runtime build".to_string())
        };
        match result {
            Ok(()) => return Ok((builder, p)),
            Err(e) if required == Some(p) => {
                return Err(BundleError::Onnx {
                    field: spec.field.to_string(),
                    path: spec.path.to_path_buf(),
                    message: format!(
                    "execution provider {p} is required (backend.require_provider) but failed: {e}"
                ),
                })
            }
            Err(e) => tracing::warn!(
                "{}: execution provider {p} unavailable ({e}); trying the next one",
                spec.field
            ),
        }
    }
    tracing::warn!(
        "{}: none of the providers {:?} registered; onnxruntime's CPU provider runs it",
        spec.field,
        config.providers
    );
    Ok((builder, Provider::Cpu))
}

fn facts_of(name: &str, dtype: Option<&ValueType>) -> TensorFacts {
    match dtype {
        Some(ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        }) => TensorFacts {
            name: name.to_string(),
            elem: if *ty == TensorElementType::Float32 {
                ElemType::F32
            } else {
                ElemType::Other(ty.to_string())
            },
            dims: shape
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    if *d >= 0 {
                        FileDim::Known(*d as usize)
                    } else {
                        FileDim::Symbolic(dimension_symbols.get(i).cloned().unwrap_or_default())
                    }
                })
                .collect(),
        },
        other => TensorFacts {
            name: name.to_string(),
            elem: ElemType::Other(other.map_or("missing".into(), |t| t.to_string())),
            dims: Vec::new(),
        },
    }
}

pub(super) struct OrtGraph {
    // Keeps the environment alive as long as the session.
    _runtime: OrtRuntime,
    session: Session,
    binding: IoBinding,
    inputs: Vec<Tensor<f32>>,
    input_cnames: Vec<CString>,
    outputs: Vec<Tensor<f32>>,
    output_shapes: Vec<Vec<usize>>,
    signature: Signature,
    provider: &'static str,
}

impl OrtGraph {
    pub(super) fn signature(&self) -> &Signature {
        &self.signature
    }

    pub(super) fn provider(&self) -> &str {
        self.provider
    }

    pub(super) fn input_mut(&mut self, ix: usize) -> &mut [f32] {
        self.inputs[ix].extract_tensor_mut().1
    }

    pub(super) fn input(&self, ix: usize) -> &[f32] {
        self.inputs[ix].extract_tensor().1
    }

    pub(super) fn inputs_mut<'a>(&'a mut self, out: &mut heapless::Vec<&'a mut [f32], MAX_IO>) {
        for t in self.inputs.iter_mut() {
            // Cannot overflow: load refuses more than MAX_IO inputs.
            let _ = out.push(t.extract_tensor_mut().1);
        }
    }

    pub(super) fn output(&self, ix: usize) -> &[f32] {
        self.outputs[ix].extract_tensor().1
    }

    pub(super) fn output_shape(&self, ix: usize) -> &[usize] {
        &self.output_shapes[ix]
    }

    pub(super) fn run(&mut self) -> Result<(), String> {
        let api = ort::api();
        let binding = self.binding.ptr_mut();
        for (name, value) in self.input_cnames.iter().zip(&self.inputs) {
            // SAFETY: the binding, the name and the value are live for the
            // call; ONNX Runtime keeps its own reference to the value.
            let status = unsafe { (api.BindInput)(binding, name.as_ptr(), value.ptr()) };
            // SAFETY: `status` was just returned by the C API.
            unsafe { ort::Error::result_from_status(status) }.map_err(|e| e.to_string())?;
        }
        // SAFETY: the session and the binding are live and owned by this
        // graph (`&mut self`: no other run at the same time); the outputs
        // were bound at load to tensors this graph owns.
        let status = unsafe {
            (api.RunWithBinding)(self.session.ptr_mut(), std::ptr::null(), self.binding.ptr())
        };
        // SAFETY: `status` was just returned by the C API.
        unsafe { ort::Error::result_from_status(status) }.map_err(|e| e.to_string())
    }
}
