//! tract-onnx: load an ONNX graph, check its tensor names and shapes against
//! what the bundle declares, bind the symbolic batch and time dimensions and
//! keep a ready-to-run state.
//!
//! Symbolic dimensions are bound with `set_symbols` on the typed model, not by
//! overriding input facts: the exporter's dimension names are kept and every
//! node sees the concrete sizes before optimisation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::bundle::BundleError;

/// One dimension of a declared tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// A symbolic or concrete batch dimension, bound to 1.
    Batch,
    /// A symbolic or concrete time dimension, bound to the window length.
    Time,
    /// A fixed size that must match exactly.
    Fixed(usize),
}

/// A tensor the runtime reads or writes, by name and shape.
#[derive(Debug, Clone)]
pub struct TensorDecl {
    pub name: String,
    pub dims: Vec<Dim>,
}

impl TensorDecl {
    pub fn new(name: impl Into<String>, dims: &[Dim]) -> Self {
        TensorDecl {
            name: name.into(),
            dims: dims.to_vec(),
        }
    }

    fn describe(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| match d {
                Dim::Batch => "B".to_string(),
                Dim::Time => "T".to_string(),
                Dim::Fixed(n) => n.to_string(),
            })
            .collect();
        format!("{} [{}]", self.name, dims.join(", "))
    }
}

/// Failure while running a loaded graph.
#[derive(Debug, thiserror::Error)]
#[error("running {path}: {message}")]
pub struct InferenceError {
    pub path: PathBuf,
    pub message: String,
}

/// A loaded, optimised graph with a reusable execution state.
pub struct OnnxGraph {
    path: PathBuf,
    state: TypedSimpleState,
    inputs: Vec<TensorDecl>,
    outputs: Vec<TensorDecl>,
    /// Input and output facts as found in the file, for `sarm inspect`.
    pub signature: Signature,
}

impl std::fmt::Debug for OnnxGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxGraph")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// Names and shapes of a graph's inputs and outputs as the file declares them.
#[derive(Debug, Clone, Default)]
pub struct Signature {
    pub inputs: Vec<(String, String)>,
    pub outputs: Vec<(String, String)>,
}

impl OnnxGraph {
    /// Loads `path`, checks it has `inputs` and `outputs` (by name, rank and
    /// fixed sizes), binds batch = 1 and time = `time_len`, and optimises.
    /// `field` is the manifest key that named the file, for errors.
    pub fn load(
        path: &Path,
        field: &str,
        inputs: &[TensorDecl],
        outputs: &[TensorDecl],
        time_len: usize,
    ) -> Result<Self, BundleError> {
        let onnx_err = |e: TractError| BundleError::Onnx {
            field: field.to_string(),
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let model = tract_onnx::onnx().model_for_path(path).map_err(onnx_err)?;

        let input_names: Vec<String> = model
            .input_outlets()
            .map_err(onnx_err)?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        for decl in inputs {
            if !input_names.iter().any(|n| n == &decl.name) {
                return Err(BundleError::mismatch(
                    format!("{field} input"),
                    format!("an input named {:?}", decl.name),
                    format!("inputs {input_names:?}"),
                ));
            }
        }
        if input_names.len() != inputs.len() {
            return Err(BundleError::mismatch(
                format!("{field} inputs"),
                format!(
                    "{:?}",
                    inputs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>()
                ),
                format!("{input_names:?}"),
            ));
        }
        let output_labels: Vec<String> = model
            .output_outlets()
            .map_err(onnx_err)?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        for decl in outputs {
            if !output_labels.iter().any(|n| n == &decl.name) {
                return Err(BundleError::mismatch(
                    format!("{field} output"),
                    format!("an output named {:?}", decl.name),
                    format!("outputs {output_labels:?}"),
                ));
            }
        }
        let model = model
            .with_input_names(inputs.iter().map(|d| d.name.as_str()))
            .map_err(onnx_err)?
            .with_outputs_by_name(outputs.iter().map(|d| d.name.as_str()))
            .map_err(onnx_err)?;
        let typed = model.into_typed().map_err(onnx_err)?;

        let mut signature = Signature::default();
        let mut bindings: HashMap<Symbol, TDim> = HashMap::new();
        for (ix, decl) in inputs.iter().enumerate() {
            let fact = typed.input_fact(ix).map_err(onnx_err)?;
            signature.inputs.push((
                decl.name.clone(),
                format!("{:?} {:?}", fact.datum_type, fact.shape),
            ));
            check_shape(field, decl, fact, time_len, Some(&mut bindings))?;
        }
        let bound = typed.set_symbols(&bindings).map_err(onnx_err)?;
        for (ix, decl) in outputs.iter().enumerate() {
            let declared = typed.output_fact(ix).map_err(onnx_err)?;
            signature.outputs.push((
                decl.name.clone(),
                format!("{:?} {:?}", declared.datum_type, declared.shape),
            ));
            let fact = bound.output_fact(ix).map_err(onnx_err)?;
            check_shape(field, decl, fact, time_len, None)?;
        }
        let plan = bound
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(onnx_err)?;
        let state = plan.spawn().map_err(onnx_err)?;
        Ok(OnnxGraph {
            path: path.to_path_buf(),
            state,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            signature,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the graph. Inputs are in declaration order; outputs too.
    pub fn run(&mut self, inputs: TVec<TValue>) -> Result<TVec<TValue>, InferenceError> {
        let state = &mut self.state;
        crate::alloc_scope::within(crate::alloc_scope::Scope::Model, || state.run(inputs)).map_err(
            |e| InferenceError {
                path: self.path.clone(),
                message: format!("{e:#}"),
            },
        )
    }
}

/// Checks a fact against a declaration; on inputs, records the symbol bindings.
fn check_shape(
    field: &str,
    decl: &TensorDecl,
    fact: &TypedFact,
    time_len: usize,
    mut bindings: Option<&mut HashMap<Symbol, TDim>>,
) -> Result<(), BundleError> {
    let mismatch = || {
        BundleError::mismatch(
            format!("{field} tensor {:?}", decl.name),
            format!("f32 {}", decl.describe()),
            format!("{:?} {:?}", fact.datum_type, fact.shape),
        )
    };
    if fact.datum_type != f32::datum_type() || fact.rank() != decl.dims.len() {
        return Err(mismatch());
    }
    for (dim, want) in fact.shape.iter().zip(&decl.dims) {
        let concrete = match want {
            Dim::Batch => 1,
            Dim::Time => time_len,
            Dim::Fixed(n) => *n,
        };
        match dim.to_i64() {
            Ok(v) => {
                // A concrete batch or time size must equal what we will feed.
                if v != concrete as i64 {
                    return Err(mismatch());
                }
            }
            Err(_) => {
                if matches!(want, Dim::Fixed(_)) {
                    return Err(mismatch());
                }
                if let (Some(b), TDim::Sym(sym)) = (bindings.as_deref_mut(), dim) {
                    b.insert(sym.clone(), TDim::Val(concrete as i64));
                }
            }
        }
    }
    Ok(())
}

/// A zero-filled f32 tensor shared with tract without copying.
///
/// The runtime fills it in place between calls; tract drops its reference
/// when a run ends, so `Arc::get_mut` succeeds again for the next fill.
#[derive(Debug)]
pub struct InputBuffer(Arc<Tensor>);

impl InputBuffer {
    pub fn zeros(shape: &[usize]) -> TractResult<Self> {
        Ok(InputBuffer(Arc::new(Tensor::zero::<f32>(shape)?)))
    }

    /// Mutable access to the data. `Arc::make_mut` copies only if tract
    /// still holds a reference, which it does not once `run` has returned.
    pub fn data_mut(&mut self) -> &mut [f32] {
        let tensor = Arc::make_mut(&mut self.0);
        // The buffer was created as plain f32 and is never replaced.
        match tensor.to_plain_array_view_mut::<f32>() {
            Ok(view) => view.into_slice().unwrap_or_default(),
            Err(_) => &mut [],
        }
    }

    pub fn value(&self) -> TValue {
        TValue::from_const(self.0.clone())
    }
}

/// Reads an f32 output of `graph`.
pub fn f32_output<'a>(v: &'a TValue, path: &Path) -> Result<&'a [f32], InferenceError> {
    v.try_as_plain_ram()
        .and_then(|p| p.as_slice::<f32>())
        .map_err(|e| InferenceError {
            path: path.to_path_buf(),
            message: format!("output is not plain f32: {e}"),
        })
}
