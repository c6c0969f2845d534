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
//! - [`policy`]: policy bundles (LeRobot ACT), the policy step at the
//!   control rate (action queue, temporal ensembling) and the safety layer;
//! - [`episode`]: per-frame rewards, online RA-BC weights and the episode's
//!   progress series (what the node and `sarm label` derive from scores);
//! - [`judge`]: success and stall verdicts from an episode's progress;
//! - [`clock`]: the robot clock (wall or ROS 2 sim time);
//! - [`rate`]: the model's frame clock (which camera frames are scored);
//! - [`sync`]: pairing camera frames with joint states by stamp.
//!
//! No middleware here: the wire (ROS 2, Zenoh, MCAP) lives in `sarm-ros`.

pub mod alloc_scope;
pub mod backend;
pub mod bundle;
pub mod cache;
pub mod clock;
pub mod encoder;
pub mod episode;
pub mod judge;
pub mod policy;
pub mod preprocess;
pub mod progress;
pub mod rabc;
pub mod rate;
pub mod reward;
pub mod scorer;
pub mod smoothing;
pub mod state;
pub mod sync;
pub mod window;

pub use backend::{Backend, BackendConfig, BackendError, BackendKind};
pub use bundle::{Bundle, BundleError, HeadKind, Precision};
pub use clock::{Clock, ClockSource};
pub use scorer::{
    FrameData, FrameScore, HeadScore, PushTimings, ScoreError, Scorer, ScorerBackend, ScorerConfig,
};
