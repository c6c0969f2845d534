//! The policy step at the control rate, exactly LeRobot's
//! `ACTPolicy.select_action` with its pre/post-processors: when the
//! selector needs a chunk (queue empty, or every tick with temporal
//! ensembling), prepare the observation and run the model; then serve this
//! tick's action, unnormalised into action units.
//!
//! A steady-state step allocates nothing on this side of the inference
//! call (`runtime/tests/policy_alloc.rs`). For a node that runs the model on
//! its own thread, ahead of the deadline, [`PolicyStepper::into_parts`]
//! gives the model and the selector separately.

use std::time::{Duration, Instant};

use super::bundle::{PolicyBundle, StepperMode};
use super::model::{PolicyError, PolicyModel};
use super::observation::Observation;
use super::selector::ActionSelector;
use crate::backend::Backend;
use crate::bundle::{BundleError, Precision};

/// How long a step's parts took (zero for the parts that did not run).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimings {
    /// Observation -> normalised tensors (only when the model ran).
    pub observation: Duration,
    /// The graph run (only when the model ran).
    pub inference: Duration,
    /// The whole step.
    pub total: Duration,
}

/// One control tick's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step<'a> {
    /// The action in action units, `action.names` order (before the safety
    /// layer).
    pub action: &'a [f32],
    /// The same row normalised (LeRobot's stepper state).
    pub normalized: &'a [f32],
    /// Whether the model ran at this tick.
    pub model_ran: bool,
    pub timings: StepTimings,
}

/// Settings a node may choose; every one defaults to the bundle's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepperOptions {
    /// The queue or ensembling mode (LeRobot's `n_action_steps` /
    /// `temporal_ensemble_coeff` at load time); the bundle's when `None`.
    pub mode: Option<StepperMode>,
}

/// The policy of a bundle, stepped once per control tick.
#[derive(Debug)]
pub struct PolicyStepper {
    model: PolicyModel,
    selector: ActionSelector,
    cameras: Vec<String>,
    state_names: Vec<String>,
    action_names: Vec<String>,
    fps: f64,
}

impl PolicyStepper {
    /// Loads the bundle's graph of `precision` on `backend`.
    pub fn load(
        bundle: &PolicyBundle,
        backend: &Backend,
        precision: Precision,
        options: StepperOptions,
    ) -> Result<Self, BundleError> {
        let mode = options.mode.unwrap_or(bundle.mode);
        mode.check(bundle.chunk_size, "stepper mode")?;
        let model = PolicyModel::load(bundle, backend, precision)?;
        let selector = ActionSelector::new(
            mode,
            bundle.chunk_size,
            bundle.action_dim(),
            bundle.action.normalization.clone(),
        );
        Ok(PolicyStepper {
            model,
            selector,
            cameras: bundle.cameras.iter().map(|c| c.camera.clone()).collect(),
            state_names: bundle
                .state
                .as_ref()
                .map(|s| s.names.clone())
                .unwrap_or_default(),
            action_names: bundle.action.names.clone(),
            fps: bundle.fps(),
        })
    }

    /// Camera names, in the order [`Observation::frames`] takes them.
    pub fn cameras(&self) -> &[String] {
        &self.cameras
    }

    /// Joint names, in the order [`Observation::state`] takes them.
    pub fn state_names(&self) -> &[String] {
        &self.state_names
    }

    /// Joint names of the action, in order.
    pub fn action_names(&self) -> &[String] {
        &self.action_names
    }

    /// The control rate in Hz.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// One control tick.
    pub fn control_period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.fps)
    }

    pub fn mode(&self) -> StepperMode {
        self.selector.mode()
    }

    /// Whether the next [`Self::step`] runs the model (LeRobot: the queue
    /// is empty, or always with temporal ensembling).
    pub fn needs_inference(&self) -> bool {
        self.selector.needs_chunk()
    }

    /// Ticks the stepper can still serve without running the model.
    pub fn buffered(&self) -> usize {
        self.selector.buffered()
    }

    /// One control tick: runs the model if the selector needs a chunk, then
    /// returns this tick's action. On an error nothing was served; the
    /// queue or ensemble is unchanged.
    pub fn step(&mut self, obs: &Observation<'_>) -> Result<Step<'_>, PolicyError> {
        let t0 = Instant::now();
        let mut timings = StepTimings::default();
        let model_ran = self.selector.needs_chunk();
        if model_ran {
            let call = self.model.infer(obs)?;
            timings.observation = call.observation;
            timings.inference = call.inference;
            // The graph's output shape was checked at load against the
            // same chunk size, so this does not fail in practice.
            self.selector.push_chunk(self.model.chunk(), 0)?;
        }
        // A chunk was just pushed when nothing was held, so there is an
        // action; `Starved` would mean a selector bug.
        let served = self.selector.next_action().ok_or(PolicyError::Starved)?;
        timings.total = t0.elapsed();
        Ok(Step {
            action: served.action,
            normalized: served.normalized,
            model_ran,
            timings,
        })
    }

    /// A new episode: the queue or the ensemble is emptied (LeRobot's
    /// `policy.reset()`); the next step runs the model.
    pub fn reset(&mut self) {
        self.selector.reset();
    }

    pub fn model(&self) -> &PolicyModel {
        &self.model
    }

    pub fn model_mut(&mut self) -> &mut PolicyModel {
        &mut self.model
    }

    pub fn selector(&self) -> &ActionSelector {
        &self.selector
    }

    /// The model and the selector, for a node that runs the model on its
    /// own thread (see [`ActionSelector`]).
    pub fn into_parts(self) -> (PolicyModel, ActionSelector) {
        (self.model, self.selector)
    }
}
