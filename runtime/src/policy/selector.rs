//! From model chunks to one action per control tick: LeRobot's
//! `select_action` after the model call (the action queue or temporal
//! ensembling, on the normalised chunk), then the action's unnormalisation
//! into action units.
//!
//! Kept apart from the model so a node can run the model on another thread
//! ahead of time: [`ActionSelector::buffered`] says how many ticks can still
//! be served, [`ActionSelector::push_chunk`] takes a chunk when it arrives
//! (with how many ticks old its observation is), and
//! [`ActionSelector::next_action`] serves each tick, or says it has nothing
//! (a missed inference deadline).

use super::bundle::StepperMode;
use super::ensemble::TemporalEnsembler;
use super::normalize::Normalization;
use super::queue::ActionQueue;

/// A chunk of the wrong size.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("model chunk has {found} values, {expected} expected ({chunk_size} rows x {dim})")]
pub struct ChunkSizeError {
    pub expected: usize,
    pub found: usize,
    pub chunk_size: usize,
    pub dim: usize,
}

#[derive(Debug, Clone)]
enum Strategy {
    Queue(ActionQueue),
    Ensemble(TemporalEnsembler),
}

/// The action queue or the temporal ensemble, and the unnormalisation.
#[derive(Debug, Clone)]
pub struct ActionSelector {
    strategy: Strategy,
    mode: StepperMode,
    chunk_size: usize,
    dim: usize,
    unnormalize: Normalization,
    /// The last action served, in action units.
    action: Vec<f32>,
}

/// What [`ActionSelector::next_action`] served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Served<'a> {
    /// The action in action units, in the bundle's `action.names` order.
    pub action: &'a [f32],
    /// The same row before unnormalisation (what LeRobot's stepper holds).
    pub normalized: &'a [f32],
}

impl ActionSelector {
    /// For chunks of `chunk_size` rows of `dim` values (a mode already
    /// checked against the chunk size).
    pub fn new(
        mode: StepperMode,
        chunk_size: usize,
        dim: usize,
        unnormalize: Normalization,
    ) -> Self {
        let strategy = match mode {
            StepperMode::Queue { n_action_steps } => {
                Strategy::Queue(ActionQueue::new(n_action_steps, dim))
            }
            StepperMode::TemporalEnsemble { coeff } => {
                Strategy::Ensemble(TemporalEnsembler::new(coeff, chunk_size, dim))
            }
        };
        ActionSelector {
            strategy,
            mode,
            chunk_size,
            dim,
            unnormalize,
            action: vec![0.0; 2 * dim],
        }
    }

    pub fn mode(&self) -> StepperMode {
        self.mode
    }

    /// Values in one chunk (`chunk_size * dim`).
    pub fn chunk_len(&self) -> usize {
        self.chunk_size * self.dim
    }

    /// Whether LeRobot would run the model at the next tick: the queue is
    /// empty, or always with temporal ensembling.
    pub fn needs_chunk(&self) -> bool {
        match &self.strategy {
            Strategy::Queue(q) => q.is_empty(),
            Strategy::Ensemble(_) => true,
        }
    }

    /// Ticks that can still be served without a new chunk: the deadline
    /// of the next model call, in ticks.
    pub fn buffered(&self) -> usize {
        match &self.strategy {
            Strategy::Queue(q) => q.len(),
            Strategy::Ensemble(e) => e.len(),
        }
    }

    /// Takes a model chunk (normalised, `chunk_size` rows). `skip`: ticks
    /// between the observation it was computed from and the tick it first
    /// serves (LeRobot: 0). Queue: its rows `skip .. skip + n_action_steps`
    /// replace what is queued; ensembling: averaged in.
    pub fn push_chunk(&mut self, chunk: &[f32], skip: usize) -> Result<(), ChunkSizeError> {
        if chunk.len() != self.chunk_len() {
            return Err(ChunkSizeError {
                expected: self.chunk_len(),
                found: chunk.len(),
                chunk_size: self.chunk_size,
                dim: self.dim,
            });
        }
        match &mut self.strategy {
            Strategy::Queue(q) => {
                q.clear();
                q.extend_from_chunk(chunk, skip);
            }
            Strategy::Ensemble(e) => e.update(chunk, skip),
        }
        Ok(())
    }

    /// This tick's action (action units), or `None` when nothing is
    /// buffered: the model call this tick needed has not delivered.
    pub fn next_action(&mut self) -> Option<Served<'_>> {
        let row = match &mut self.strategy {
            Strategy::Queue(q) => q.pop()?,
            Strategy::Ensemble(e) => e.consume()?,
        };
        let (action, normalized) = self.action.split_at_mut(self.dim);
        normalized.copy_from_slice(row);
        self.unnormalize.unnormalize_into(normalized, action);
        Some(Served { action, normalized })
    }

    /// A new episode: the queue or the ensemble is emptied.
    pub fn reset(&mut self) {
        match &mut self.strategy {
            Strategy::Queue(q) => q.clear(),
            Strategy::Ensemble(e) => e.reset(),
        }
    }

    /// The temporal ensemble (ensembling mode), for inspection.
    pub fn ensemble(&self) -> Option<&TemporalEnsembler> {
        match &self.strategy {
            Strategy::Ensemble(e) => Some(e),
            Strategy::Queue(_) => None,
        }
    }

    /// Rows in the action queue (queue mode), for inspection.
    pub fn queue_len(&self) -> Option<usize> {
        match &self.strategy {
            Strategy::Queue(q) => Some(q.len()),
            Strategy::Ensemble(_) => None,
        }
    }
}
