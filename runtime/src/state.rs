//! Joint state -> model input: LeRobot's MEAN_STD normalisation
//! `(x - mean) / (std + eps)` in float32, then zero padding to the model's
//! state dimension (`pad_state_to_max_dim`).

use crate::bundle::manifest::StateSpec;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("joint vector has {found} values, the bundle expects {expected}")]
    Length { expected: usize, found: usize },
    #[error("joint {index} ({name}) is not finite: {value}")]
    NotFinite {
        index: usize,
        name: String,
        value: f32,
    },
}

#[derive(Debug, Clone)]
pub struct StateNormalizer {
    names: Vec<String>,
    mean: Vec<f32>,
    std_eps: Vec<f32>,
    model_dim: usize,
}

impl StateNormalizer {
    /// From a validated manifest.
    pub fn new(spec: &StateSpec) -> Self {
        StateNormalizer {
            names: spec.joint_names.clone(),
            mean: spec.mean.clone(),
            std_eps: spec.std.iter().map(|s| s + spec.eps).collect(),
            model_dim: spec.model_dim,
        }
    }

    pub fn joints(&self) -> usize {
        self.names.len()
    }

    pub fn model_dim(&self) -> usize {
        self.model_dim
    }

    /// Checks a joint vector (bundle order) without writing anything.
    pub fn check(&self, joints: &[f32]) -> Result<(), StateError> {
        if joints.len() != self.names.len() {
            return Err(StateError::Length {
                expected: self.names.len(),
                found: joints.len(),
            });
        }
        if let Some((index, value)) = joints.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StateError::NotFinite {
                index,
                name: self.names[index].clone(),
                value: *value,
            });
        }
        Ok(())
    }

    /// Writes the normalised, padded state (`model_dim` values) into `out`.
    pub fn write(&self, joints: &[f32], out: &mut [f32]) -> Result<(), StateError> {
        self.check(joints)?;
        for (i, o) in out.iter_mut().enumerate().take(self.model_dim) {
            *o = if i < joints.len() {
                (joints[i] - self.mean[i]) / self.std_eps[i]
            } else {
                0.0
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StateSpec {
        StateSpec {
            joint_names: vec!["a".into(), "b".into()],
            mean: vec![1.0, -1.0],
            std: vec![2.0, 0.5],
            eps: 1e-8,
            model_dim: 4,
        }
    }

    #[test]
    fn normalises_and_pads() {
        let n = StateNormalizer::new(&spec());
        let mut out = [9.0; 4];
        n.write(&[3.0, 0.0], &mut out).unwrap();
        assert_eq!(out, [1.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn rejects_bad_vectors() {
        let n = StateNormalizer::new(&spec());
        let mut out = [0.0; 4];
        assert_eq!(
            n.write(&[1.0], &mut out),
            Err(StateError::Length {
                expected: 2,
                found: 1
            })
        );
        let e = n.write(&[1.0, f32::NAN], &mut out).unwrap_err();
        assert!(e.to_string().contains("(b)"), "{e}");
    }
}
