//! sarm-runtime: the engine that runs LeRobot-trained SARM reward models
//! and the policies they judge.
//!
//! Layers, bottom up:
//! - [`bundle`]: the model bundle (manifest + ONNX files) and its validation;
//! - [`backend`]: the inference seam: a backend-neutral graph with checked
//!   tensor signatures and preallocated buffers, run by tract (default) or
//!   onnxruntime (loaded at run time);
//! - [`preprocess`], [`encoder`], [`state`]: camera image and joint state to
//!   model inputs;
//! - [`window`], [`cache`]: which frames a window reads, and the per-frame
//!   embedding cache;
//! - [`reward`], [`progress`], [`smoothing`]: LeRobot's stage/subtask
//!   step, global progress from the temporal proportions, and optional
//!   confidence-weighted smoothing;
//! - [`scorer`]: the per-episode loop tying them together;
//! - [`rate`]: the model's frame clock (which camera frames are scored);
//! - [`policy`]: policy bundles (LeRobot ACT), the policy step at the
//!   control rate (action queue, temporal ensembling) and the safety layer.
//!
//! No middleware here: the wire (ROS 2, Zenoh, MCAP) lives in `sarm-ros`.

pub mod alloc_scope;
pub mod backend;
pub mod bundle;
pub mod cache;
pub mod encoder;
pub mod policy;
pub mod preprocess;
pub mod progress;
pub mod rabc;
pub mod rate;
pub mod reward;
pub mod scorer;
pub mod smoothing;
pub mod state;
pub mod window;

pub use backend::{Backend, BackendConfig, BackendError, BackendKind};
pub use bundle::{Bundle, BundleError, HeadKind, Precision};
pub use scorer::{
    FrameData, FrameScore, HeadScore, PushTimings, ScoreError, Scorer, ScorerBackend, ScorerConfig,
};
