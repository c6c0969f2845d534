//! Policies at the control rate (LeRobot ACT first): the policy bundle, the
//! step LeRobot's `select_action` takes, and the safety layer every command
//! passes last.
//!
//! - [`manifest`], [`bundle`]: `kind = "policy"` bundles, validated;
//! - [`normalize`]: LeRobot's normaliser and unnormaliser, bit for bit;
//! - [`observation`]: camera frames and joint state -> normalised tensors;
//! - [`model`]: the graph call through the backend seam;
//! - [`queue`], [`ensemble`], [`selector`]: chunks -> one action per tick
//!   (the action queue, ACT's temporal ensembling);
//! - [`stepper`]: the synchronous step tying them together;
//! - [`limits`], [`safety`]: joint limits (only ever stricter than the
//!   bundle's) and the clock-driven safety state machine.

pub mod bundle;
pub mod ensemble;
pub mod limits;
pub mod manifest;
pub mod model;
pub mod normalize;
pub mod observation;
pub mod queue;
pub mod safety;
pub mod selector;
pub mod stepper;

pub use bundle::{PolicyBundle, StepperMode};
pub use limits::{JointLimitOverride, JointLimits, LimitsError};
pub use model::{CallTimings, PolicyError, PolicyModel};
pub use observation::{Frame, Observation, ObservationError};
pub use safety::{
    ActionInput, ArmRefusal, Control, Decision, FaultCause, InputStatus, Nanos, SafetyConfig,
    SafetyConfigError, SafetyCounters, SafetyEvent, SafetyEventKind, SafetyLayer, SafetyState,
    Tick, TripCause, TripKind,
};
pub use selector::{ActionSelector, Served};
pub use stepper::{PolicyStepper, Step, StepTimings, StepperOptions};
