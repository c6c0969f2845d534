//! Joint limits of the commands: position bounds and the largest change per
//! control tick, from the bundle's `[action.limits]`. A node config may only
//! make them stricter; a looser override is refused at construction, naming
//! the joint and both values.
//!
//! Applied in f64 (commands go out as float64): the step limit first, the
//! position clamp last, so a command is always inside the bounds exactly,
//! and, since the previous command is inside them too, clamping never
//! lengthens the step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bundle::PolicyBundle;

/// Why limits could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsError {
    #[error("limits for joint {joint:?}: the policy has no such joint (its joints: {known:?})")]
    UnknownJoint { joint: String, known: Vec<String> },
    #[error(
        "limits.{joint}.{key} = {config} is looser than the bundle's {bundle}: the node config \
         may only make limits stricter"
    )]
    Looser {
        joint: String,
        key: &'static str,
        bundle: f64,
        config: f64,
    },
    #[error("limits.{joint}.{key} = {value}: {expected}")]
    Invalid {
        joint: String,
        key: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error("limits.{joint}: lower {lower} is not below upper {upper}")]
    Empty {
        joint: String,
        lower: f64,
        upper: f64,
    },
    #[error("limits: {key} has {found} values for {expected} joints")]
    Length {
        key: &'static str,
        expected: usize,
        found: usize,
    },
}

/// A node config's override of one joint's limits (each key optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointLimitOverride {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub max_step: Option<f64>,
}

/// Per-joint limits in action units, `action.names` order.
#[derive(Debug, Clone, PartialEq)]
pub struct JointLimits {
    names: Vec<String>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    max_step: Vec<f64>,
}

impl JointLimits {
    /// The bundle's `[action.limits]` (validated at load).
    pub fn from_bundle(bundle: &PolicyBundle) -> Self {
        let (lower, upper, max_step) = bundle.limits();
        let f = |v: &[f32]| v.iter().map(|x| *x as f64).collect();
        JointLimits {
            names: bundle.action.names.clone(),
            lower: f(lower),
            upper: f(upper),
            max_step: f(max_step),
        }
    }

    /// Limits from plain lists (one value per name): finite, lower < upper,
    /// max_step > 0.
    pub fn new(
        names: Vec<String>,
        lower: Vec<f64>,
        upper: Vec<f64>,
        max_step: Vec<f64>,
    ) -> Result<Self, LimitsError> {
        for (key, v) in [
            ("lower", &lower),
            ("upper", &upper),
            ("max_step", &max_step),
        ] {
            if v.len() != names.len() {
                return Err(LimitsError::Length {
                    key,
                    expected: names.len(),
                    found: v.len(),
                });
            }
        }
        let limits = JointLimits {
            names,
            lower,
            upper,
            max_step,
        };
        for i in 0..limits.len() {
            limits.check_joint(i)?;
        }
        Ok(limits)
    }

    fn check_joint(&self, i: usize) -> Result<(), LimitsError> {
        let joint = || self.names[i].clone();
        for (key, value) in [("lower", self.lower[i]), ("upper", self.upper[i])] {
            if !value.is_finite() {
                return Err(LimitsError::Invalid {
                    joint: joint(),
                    key,
                    value,
                    expected: "a finite position",
                });
            }
        }
        if !(self.max_step[i].is_finite() && self.max_step[i] > 0.0) {
            return Err(LimitsError::Invalid {
                joint: joint(),
                key: "max_step",
                value: self.max_step[i],
                expected: "a finite step > 0",
            });
        }
        if self.lower[i] >= self.upper[i] {
            return Err(LimitsError::Empty {
                joint: joint(),
                lower: self.lower[i],
                upper: self.upper[i],
            });
        }
        Ok(())
    }

    /// These limits tightened by `overrides` (joint name -> override). Any
    /// override looser than the current value, for an unknown joint, or
    /// leaving an empty range is an error.
    pub fn stricter(
        mut self,
        overrides: &BTreeMap<String, JointLimitOverride>,
    ) -> Result<Self, LimitsError> {
        for (joint, o) in overrides {
            let Some(i) = self.names.iter().position(|n| n == joint) else {
                return Err(LimitsError::UnknownJoint {
                    joint: joint.clone(),
                    known: self.names.clone(),
                });
            };
            let looser = |key, bundle, config| LimitsError::Looser {
                joint: joint.clone(),
                key,
                bundle,
                config,
            };
            if let Some(v) = o.lower {
                if v < self.lower[i] {
                    return Err(looser("lower", self.lower[i], v));
                }
                self.lower[i] = v;
            }
            if let Some(v) = o.upper {
                if v > self.upper[i] {
                    return Err(looser("upper", self.upper[i], v));
                }
                self.upper[i] = v;
            }
            if let Some(v) = o.max_step {
                if v > self.max_step[i] {
                    return Err(looser("max_step", self.max_step[i], v));
                }
                self.max_step[i] = v;
            }
            // NaN compares false above; caught here with the joint named.
            self.check_joint(i)?;
        }
        Ok(self)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn lower(&self) -> &[f64] {
        &self.lower
    }

    pub fn upper(&self) -> &[f64] {
        &self.upper
    }

    pub fn max_step(&self) -> &[f64] {
        &self.max_step
    }

    /// `x` clamped into joint `i`'s bounds.
    pub fn clamp_position(&self, i: usize, x: f64) -> f64 {
        x.clamp(self.lower[i], self.upper[i])
    }

    /// The next command towards `target` from `prev` (a command inside the
    /// bounds): each joint moves at most `max_step`, then is clamped into its
    /// bounds. Returns how many joints the step limit and the bounds changed.
    pub fn apply(&self, prev: &[f64], target: &[f32], out: &mut [f64]) -> Clipped {
        let mut clipped = Clipped::default();
        for i in 0..self.len() {
            let t = target[i] as f64;
            let s = self.max_step[i];
            let d = t - prev[i];
            let step = d.clamp(-s, s);
            if step != d {
                clipped.step += 1;
            }
            let v = prev[i] + step;
            let c = v.clamp(self.lower[i], self.upper[i]);
            if c != v || t < self.lower[i] || t > self.upper[i] {
                clipped.position += 1;
            }
            out[i] = c;
        }
        clipped
    }
}

/// Joints a command limited, by rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clipped {
    /// Joints whose change was cut to `max_step`.
    pub step: usize,
    /// Joints whose target was outside the position bounds.
    pub position: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> JointLimits {
        JointLimits::new(
            vec!["a".into(), "b".into()],
            vec![-1.0, 0.0],
            vec![1.0, 2.0],
            vec![0.1, 0.5],
        )
        .unwrap()
    }

    fn o(lower: Option<f64>, upper: Option<f64>, max_step: Option<f64>) -> JointLimitOverride {
        JointLimitOverride {
            lower,
            upper,
            max_step,
        }
    }

    #[test]
    fn stricter_overrides_apply() {
        let l = limits()
            .stricter(&BTreeMap::from([(
                "b".to_string(),
                o(Some(0.5), Some(1.5), Some(0.25)),
            )]))
            .unwrap();
        assert_eq!(l.lower(), [-1.0, 0.5]);
        assert_eq!(l.upper(), [1.0, 1.5]);
        assert_eq!(l.max_step(), [0.1, 0.25]);
        // Equal to the bundle's is not looser.
        limits()
            .stricter(&BTreeMap::from([(
                "a".to_string(),
                o(Some(-1.0), Some(1.0), Some(0.1)),
            )]))
            .unwrap();
    }

    #[test]
    fn looser_overrides_name_the_joint_and_both_values() {
        for (ov, key, bundle, config) in [
            (o(Some(-1.5), None, None), "lower", -1.0, -1.5),
            (o(None, Some(1.01), None), "upper", 1.0, 1.01),
            (o(None, None, Some(0.2)), "max_step", 0.1, 0.2),
        ] {
            let e = limits()
                .stricter(&BTreeMap::from([("a".to_string(), ov)]))
                .unwrap_err();
            assert_eq!(
                e,
                LimitsError::Looser {
                    joint: "a".into(),
                    key,
                    bundle,
                    config
                }
            );
            let text = e.to_string();
            assert!(
                text.contains("limits.a.") && text.contains(&config.to_string()),
                "{text}"
            );
            assert!(text.contains(&bundle.to_string()), "{text}");
        }
        let e = limits()
            .stricter(&BTreeMap::from([(
                "c".to_string(),
                o(Some(0.0), None, None),
            )]))
            .unwrap_err();
        assert!(matches!(e, LimitsError::UnknownJoint { .. }), "{e}");
        let e = limits()
            .stricter(&BTreeMap::from([(
                "a".to_string(),
                o(Some(0.5), Some(0.2), None),
            )]))
            .unwrap_err();
        assert!(matches!(e, LimitsError::Empty { .. }), "{e}");
        let e = limits()
            .stricter(&BTreeMap::from([(
                "a".to_string(),
                o(None, None, Some(f64::NAN)),
            )]))
            .unwrap_err();
        assert!(
            matches!(
                e,
                LimitsError::Invalid {
                    key: "max_step",
                    ..
                }
            ),
            "{e}"
        );
        let e = limits()
            .stricter(&BTreeMap::from([(
                "a".to_string(),
                o(None, None, Some(0.0)),
            )]))
            .unwrap_err();
        assert!(
            matches!(
                e,
                LimitsError::Invalid {
                    key: "max_step",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn step_limit_then_clamp() {
        let l = limits();
        let mut out = [0.0; 2];
        // a: 0 -> 0.5 limited to 0.1; b: 1.9 -> 5 limited to 2.4, clamped to 2.
        let c = l.apply(&[0.0, 1.9], &[0.5, 5.0], &mut out);
        assert_eq!(out, [0.1, 2.0]);
        assert_eq!(
            c,
            Clipped {
                step: 2,
                position: 1
            }
        );
        let c = l.apply(&[0.0, 1.0], &[-0.05, 1.25], &mut out);
        // The target is f32: passed through unchanged, widened.
        assert_eq!(out, [-0.05f32 as f64, 1.25]);
        assert_eq!(c, Clipped::default());
    }
}
