//! The load-time checks every backend applies, in one place: a graph has
//! the declared inputs and outputs (by name), f32 tensors of the declared
//! rank whose sizes agree with the declaration, and a probe run gives the
//! declared concrete output shapes. Errors name the manifest field, what
//! was expected and what the file has.

use super::GraphSpec;
use crate::bundle::BundleError;

/// One dimension of a declared tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// A symbolic or concrete batch dimension, bound to the spec's batch.
    Batch,
    /// A symbolic or concrete time dimension, bound to the spec's time length.
    Time,
    /// A fixed size that must match exactly.
    Fixed(usize),
}

/// A tensor the runtime reads or writes, by name and shape (f32 always).
#[derive(Debug, Clone, PartialEq, Eq)]
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

    pub fn describe(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| match d {
                Dim::Batch => "B".to_string(),
                Dim::Time => "T".to_string(),
                Dim::Fixed(n) => n.to_string(),
            })
            .collect();
        format!("f32 {} [{}]", self.name, dims.join(", "))
    }
}

/// Element type of a tensor as a file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemType {
    F32,
    /// Anything else, as the backend names it.
    Other(String),
}

/// One dimension as a file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDim {
    Known(usize),
    /// A named (or unnamed, empty) symbolic dimension.
    Symbolic(String),
}

/// A tensor as a file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorFacts {
    pub name: String,
    pub elem: ElemType,
    pub dims: Vec<FileDim>,
}

impl TensorFacts {
    /// `f32 [batch, 3, 224, 224]`.
    pub fn describe(&self) -> String {
        let elem = match &self.elem {
            ElemType::F32 => "f32".to_string(),
            ElemType::Other(s) => s.clone(),
        };
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| match d {
                FileDim::Known(n) => n.to_string(),
                FileDim::Symbolic(s) if s.is_empty() => "?".to_string(),
                FileDim::Symbolic(s) => s.clone(),
            })
            .collect();
        format!("{elem} [{}]", dims.join(", "))
    }
}

/// Names and shapes of a graph's declared inputs and outputs as the file
/// declares them (for `sarm inspect`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    pub inputs: Vec<TensorFacts>,
    pub outputs: Vec<TensorFacts>,
}

/// Every declared input is in the file and the file has no other input;
/// every declared output is in the file (others are ignored).
pub fn names(
    spec: &GraphSpec<'_>,
    file_inputs: &[String],
    file_outputs: &[String],
) -> Result<(), BundleError> {
    let field = spec.field;
    for decl in spec.inputs {
        if !file_inputs.iter().any(|n| n == &decl.name) {
            return Err(BundleError::mismatch(
                format!("{field} input"),
                format!("an input named {:?}", decl.name),
                format!("inputs {file_inputs:?}"),
            ));
        }
    }
    if file_inputs.len() != spec.inputs.len() {
        return Err(BundleError::mismatch(
            format!("{field} inputs"),
            format!(
                "{:?}",
                spec.inputs
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
            ),
            format!("{file_inputs:?}"),
        ));
    }
    for decl in spec.outputs {
        if !file_outputs.iter().any(|n| n == &decl.name) {
            return Err(BundleError::mismatch(
                format!("{field} output"),
                format!("an output named {:?}", decl.name),
                format!("outputs {file_outputs:?}"),
            ));
        }
    }
    Ok(())
}

fn mismatch(spec: &GraphSpec<'_>, decl: &TensorDecl, found: String) -> BundleError {
    BundleError::mismatch(
        format!("{} tensor {:?}", spec.field, decl.name),
        decl.describe(),
        found,
    )
}

/// An input's declared facts: f32, the declared rank, fixed sizes known and
/// equal; a known batch or time size equal to what will be fed.
pub fn input_facts(
    spec: &GraphSpec<'_>,
    decl: &TensorDecl,
    facts: &TensorFacts,
) -> Result<(), BundleError> {
    facts_agree(spec, decl, facts, true)
}

/// An output's declared facts: f32, the declared rank, known sizes equal to
/// the declaration (symbolic ones are checked by the probe run).
pub fn output_facts(
    spec: &GraphSpec<'_>,
    decl: &TensorDecl,
    facts: &TensorFacts,
) -> Result<(), BundleError> {
    facts_agree(spec, decl, facts, false)
}

fn facts_agree(
    spec: &GraphSpec<'_>,
    decl: &TensorDecl,
    facts: &TensorFacts,
    fixed_must_be_known: bool,
) -> Result<(), BundleError> {
    if facts.elem != ElemType::F32 || facts.dims.len() != decl.dims.len() {
        return Err(mismatch(spec, decl, facts.describe()));
    }
    let concrete = spec.shape_of(decl);
    for ((dim, want), size) in facts.dims.iter().zip(&decl.dims).zip(concrete) {
        match dim {
            FileDim::Known(v) if *v != size => return Err(mismatch(spec, decl, facts.describe())),
            FileDim::Symbolic(_) if fixed_must_be_known && matches!(want, Dim::Fixed(_)) => {
                return Err(mismatch(spec, decl, facts.describe()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The probe run's output shape is the declared concrete shape.
pub fn output_shape(
    spec: &GraphSpec<'_>,
    decl: &TensorDecl,
    found: &[usize],
) -> Result<(), BundleError> {
    let want = spec.shape_of(decl);
    if found != want.as_slice() {
        return Err(BundleError::mismatch(
            format!("{} tensor {:?}", spec.field, decl.name),
            format!(
                "{} = {want:?} for batch {} and T = {}",
                decl.describe(),
                spec.batch,
                spec.time
            ),
            format!("shape {found:?} from a run"),
        ));
    }
    Ok(())
}
