//! LeRobot datasets (layout v3.0) for offline labelling: where a dataset
//! is, its metadata, one episode's rows, its camera frames, and which
//! frames a bundle's windows read when the dataset runs at another rate.
//!
//! - [`dataset`]: `meta/info.json`, `meta/episodes/`, `meta/tasks.parquet`,
//!   `data/` parquet, resolved from a folder or a repo id in the local
//!   LeRobot cache (`HF_LEROBOT_HOME`); nothing is downloaded.
//! - [`columns`]: typed reads of Arrow columns as LeRobot writes them.
//! - [`plan`]: scored frames and their windows, in time.
//! - [`video`]: frames picked from an mp4 exactly as LeRobot 0.4.4's
//!   torchcodec decoder picks them (the FFmpeg part needs the `video`
//!   feature).
//! - [`label`]: one episode through the engine, bounded in memory.
//! - [`run`]: a whole run: workers, progress, resumable parts, shards.

pub mod columns;
pub mod dataset;
pub mod label;
pub mod plan;
pub mod run;
pub mod video;

pub use dataset::{Dataset, DatasetError, EpisodeData, EpisodeMeta};
