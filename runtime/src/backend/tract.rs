//! tract-onnx: load an ONNX graph, bind the symbolic batch and time
//! dimensions, optimise, and keep a ready-to-run state with its input
//! tensors, which the runtime fills in place.
//!
//! Symbolic dimensions are bound with `set_symbols` on the typed model, not
//! by overriding input facts: the exporter's dimension names are kept and
//! every node sees the concrete sizes before optimisation.

use std::collections::HashMap;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::check::{self, ElemType, FileDim, Signature, TensorFacts};
use super::{Dim, GraphSpec, MAX_IO};
use crate::bundle::BundleError;

/// The tract version the runtime is built with (the one the exporter's
/// Python binding checks against).
pub const VERSION: &str = "tract-onnx 0.23.9";

pub(super) struct TractGraph {
    state: TypedSimpleState,
    inputs: Vec<InputBuffer>,
    outputs: TVec<TValue>,
    output_shapes: Vec<Vec<usize>>,
    signature: Signature,
}

fn facts_of(name: &str, fact: &TypedFact) -> TensorFacts {
    TensorFacts {
        name: name.to_string(),
        elem: if fact.datum_type == f32::datum_type() {
            ElemType::F32
        } else {
            ElemType::Other(format!("{:?}", fact.datum_type))
        },
        dims: fact
            .shape
            .iter()
            .map(|d| match d.to_i64() {
                Ok(v) if v >= 0 => FileDim::Known(v as usize),
                _ => FileDim::Symbolic(format!("{d}")),
            })
            .collect(),
    }
}

impl TractGraph {
    pub(super) fn load(spec: &GraphSpec<'_>) -> Result<Self, BundleError> {
        let onnx_err = |e: TractError| BundleError::Onnx {
            field: spec.field.to_string(),
            path: spec.path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let model = tract_onnx::onnx()
            .model_for_path(spec.path)
            .map_err(onnx_err)?;
        let input_names: Vec<String> = model
            .input_outlets()
            .map_err(onnx_err)?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
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
        check::names(spec, &input_names, &output_labels)?;
        let model = model
            .with_input_names(spec.inputs.iter().map(|d| d.name.as_str()))
            .map_err(onnx_err)?
            .with_outputs_by_name(spec.outputs.iter().map(|d| d.name.as_str()))
            .map_err(onnx_err)?;
        let typed = model.into_typed().map_err(onnx_err)?;

        let mut signature = Signature::default();
        let mut bindings: HashMap<Symbol, TDim> = HashMap::new();
        for (ix, decl) in spec.inputs.iter().enumerate() {
            let fact = typed.input_fact(ix).map_err(onnx_err)?;
            let facts = facts_of(&decl.name, fact);
            check::input_facts(spec, decl, &facts)?;
            for (dim, want) in fact.shape.iter().zip(&decl.dims) {
                if let TDim::Sym(sym) = dim {
                    let size = match want {
                        Dim::Batch => spec.batch,
                        Dim::Time => spec.time,
                        Dim::Fixed(n) => *n,
                    };
                    bindings.insert(sym.clone(), TDim::Val(size as i64));
                }
            }
            signature.inputs.push(facts);
        }
        for (ix, decl) in spec.outputs.iter().enumerate() {
            let facts = facts_of(&decl.name, typed.output_fact(ix).map_err(onnx_err)?);
            check::output_facts(spec, decl, &facts)?;
            signature.outputs.push(facts);
        }
        let plan = typed
            .set_symbols(&bindings)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(onnx_err)?;
        let state = plan.spawn().map_err(onnx_err)?;
        let inputs = spec
            .inputs
            .iter()
            .map(|d| InputBuffer::zeros(&spec.shape_of(d)))
            .collect::<TractResult<Vec<_>>>()
            .map_err(onnx_err)?;
        let mut graph = TractGraph {
            state,
            inputs,
            outputs: TVec::new(),
            output_shapes: vec![Vec::new(); spec.outputs.len()],
            signature,
        };
        graph
            .run()
            .map_err(|e| onnx_err(TractError::msg(format!("probe run on zeros failed: {e}"))))?;
        Ok(graph)
    }

    pub(super) fn signature(&self) -> &Signature {
        &self.signature
    }

    pub(super) fn input_mut(&mut self, ix: usize) -> &mut [f32] {
        self.inputs[ix].data_mut()
    }

    pub(super) fn input(&self, ix: usize) -> &[f32] {
        self.inputs[ix].data()
    }

    pub(super) fn inputs_mut<'a>(&'a mut self, out: &mut heapless::Vec<&'a mut [f32], MAX_IO>) {
        for b in self.inputs.iter_mut() {
            // Cannot overflow: load refuses more than MAX_IO inputs.
            let _ = out.push(b.data_mut());
        }
    }

    pub(super) fn output(&self, ix: usize) -> &[f32] {
        self.outputs
            .get(ix)
            .and_then(|v| v.try_as_plain_ram().ok())
            .and_then(|p| p.as_slice::<f32>().ok())
            .unwrap_or(&[])
    }

    pub(super) fn output_shape(&self, ix: usize) -> &[usize] {
        &self.output_shapes[ix]
    }

    pub(super) fn run(&mut self) -> Result<(), String> {
        // The previous outputs go first: tract allocates fresh ones.
        self.outputs.clear();
        let inputs: TVec<TValue> = self.inputs.iter().map(InputBuffer::value).collect();
        self.outputs = self.state.run(inputs).map_err(|e| format!("{e:#}"))?;
        for (ix, v) in self.outputs.iter().enumerate() {
            if v.datum_type() != f32::datum_type() {
                return Err(format!("output {ix} is {:?}, not f32", v.datum_type()));
            }
            if let Some(shape) = self.output_shapes.get_mut(ix) {
                if shape.as_slice() != v.shape() {
                    shape.clear();
                    shape.extend_from_slice(v.shape());
                }
            }
        }
        Ok(())
    }
}

/// A zero-filled f32 tensor shared with tract without copying.
///
/// The runtime fills it in place between calls; tract drops its reference
/// when a run ends, so `Arc::make_mut` does not copy on the next fill.
#[derive(Debug)]
struct InputBuffer(Arc<Tensor>);

impl InputBuffer {
    fn zeros(shape: &[usize]) -> TractResult<Self> {
        Ok(InputBuffer(Arc::new(Tensor::zero::<f32>(shape)?)))
    }

    fn data_mut(&mut self) -> &mut [f32] {
        let tensor = Arc::make_mut(&mut self.0);
        // The buffer was created as plain f32 and is never replaced.
        match tensor.to_plain_array_view_mut::<f32>() {
            Ok(view) => view.into_slice().unwrap_or_default(),
            Err(_) => &mut [],
        }
    }

    fn data(&self) -> &[f32] {
        match self.0.to_plain_array_view::<f32>() {
            Ok(view) => view.to_slice().unwrap_or_default(),
            Err(_) => &[],
        }
    }

    fn value(&self) -> TValue {
        TValue::from_const(self.0.clone())
    }
}
