//! sensor_msgs/JointState -> the bundle's joint order.
//!
//! Joints are matched by name; extra joints are ignored, a missing one makes
//! the message unusable. The name-to-slot map is rebuilt only when the
//! publisher's name list changes (it normally never does).

use crate::msg::JointState;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JointError {
    #[error("joint state lacks {missing:?} (the bundle needs {needed} joints)")]
    Missing { missing: Vec<String>, needed: usize },
    #[error("joint state has {names} names but {positions} positions")]
    Lengths { names: usize, positions: usize },
    #[error("joint {name} is not finite: {value}")]
    NotFinite { name: String, value: f64 },
    #[error("joint state names {name:?} twice")]
    Duplicate { name: String },
}

impl JointError {
    pub fn kind(&self) -> &'static str {
        match self {
            JointError::Missing { .. } => "joints_missing",
            JointError::Lengths { .. } => "joints_lengths",
            JointError::NotFinite { .. } => "joints_not_finite",
            JointError::Duplicate { .. } => "joints_duplicate",
        }
    }
}

/// Maps a publisher's joint order onto the bundle's.
#[derive(Debug, Clone)]
pub struct JointMap {
    wanted: Vec<String>,
    /// The last name list seen, and for each wanted joint its index in it.
    seen: Vec<String>,
    slots: Vec<usize>,
}

impl JointMap {
    pub fn new(bundle_order: &[String]) -> Self {
        JointMap {
            wanted: bundle_order.to_vec(),
            seen: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Writes the positions in bundle order into `out` (one value per joint).
    pub fn reorder(&mut self, msg: &JointState, out: &mut [f32]) -> Result<(), JointError> {
        if msg.name.len() != msg.position.len() {
            return Err(JointError::Lengths {
                names: msg.name.len(),
                positions: msg.position.len(),
            });
        }
        if msg.name != self.seen {
            self.rebuild(&msg.name)?;
        }
        for (o, &slot) in out.iter_mut().zip(&self.slots) {
            let v = msg.position[slot];
            if !v.is_finite() {
                return Err(JointError::NotFinite {
                    name: msg.name[slot].clone(),
                    value: v,
                });
            }
            *o = v as f32;
        }
        Ok(())
    }

    fn rebuild(&mut self, names: &[String]) -> Result<(), JointError> {
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(JointError::Duplicate { name: n.clone() });
            }
        }
        let mut slots = Vec::with_capacity(self.wanted.len());
        let mut missing = Vec::new();
        for w in &self.wanted {
            match names.iter().position(|n| n == w) {
                Some(i) => slots.push(i),
                None => missing.push(w.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(JointError::Missing {
                missing,
                needed: self.wanted.len(),
            });
        }
        self.seen = names.to_vec();
        self.slots = slots;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(names: &[&str], pos: &[f64]) -> JointState {
        JointState {
            name: names.iter().map(|s| s.to_string()).collect(),
            position: pos.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn reorders_by_name_and_ignores_extras() {
        let mut m = JointMap::new(&["a".into(), "b".into()]);
        let mut out = [0.0; 2];
        m.reorder(&js(&["x", "b", "a"], &[9.0, 2.0, 1.0]), &mut out)
            .unwrap();
        assert_eq!(out, [1.0, 2.0]);
        m.reorder(&js(&["a", "b"], &[3.0, 4.0]), &mut out).unwrap();
        assert_eq!(out, [3.0, 4.0]);
    }

    #[test]
    fn bad_joint_states_are_errors() {
        let mut m = JointMap::new(&["a".into(), "b".into()]);
        let mut out = [0.0; 2];
        let e = m.reorder(&js(&["a"], &[1.0]), &mut out).unwrap_err();
        assert_eq!(
            e,
            JointError::Missing {
                missing: vec!["b".into()],
                needed: 2
            }
        );
        assert_eq!(
            m.reorder(&js(&["a", "b"], &[1.0]), &mut out)
                .unwrap_err()
                .kind(),
            "joints_lengths"
        );
        assert_eq!(
            m.reorder(&js(&["a", "b"], &[1.0, f64::NAN]), &mut out)
                .unwrap_err()
                .kind(),
            "joints_not_finite"
        );
        assert_eq!(
            m.reorder(&js(&["a", "a", "b"], &[1.0, 1.0, 2.0]), &mut out)
                .unwrap_err()
                .kind(),
            "joints_duplicate"
        );
    }
}
