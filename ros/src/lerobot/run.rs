//! A labelling run over a dataset: which episodes, on how many workers,
//! with a progress bar, resumable, and shardable across machines.
//!
//! Finished episodes are written one parquet each into `<out>.parts/`
//! (written to a temporary name, synced, renamed), next to `run.json`,
//! which records what the run computes. A run started again with the same
//! settings skips the episodes already there; at the end the parts are
//! merged into `<out>` in `index` order and removed (kept when episodes
//! failed, so a rerun only redoes those). `--shard K/N` takes the K-th of
//! N contiguous slices of the selected episodes; `sarm label merge` joins
//! the shards' files.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sarm_runtime::{Backend, Bundle, BundleError, Precision};
use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, DatasetError, EpisodeMeta};
use super::label::{label_episode, EpisodeError, EpisodeInput, Models};
use super::plan::Plan;
use super::video::{VideoError, VideoFile, VIDEO_BUILT};
use crate::progress_parquet::{self, ParquetError, ProgressWriter, REWARD_MODEL_PATH};

/// Schema metadata key of a shard's file: which shard, which episodes.
pub const SHARD_METADATA: &str = "sarm_label_shard";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("loading the bundle: {0}")]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    #[error("{0}")]
    Config(String),
    #[error("{path}: {message}")]
    Parts { path: PathBuf, message: String },
    #[error("episode {episode}: {source} (--strict stops at the first bad episode)")]
    Strict {
        episode: i64,
        #[source]
        source: EpisodeError,
    },
    #[error("no episode could be labelled ({failed} failed; see above)")]
    NothingLabelled { failed: usize },
}

/// Episodes to label: `A..B` (B excluded), `A..=B`, `A..`, `..B`, `N`, or
/// a comma-separated list of those.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeSelection(Vec<(i64, Option<i64>)>);

impl EpisodeSelection {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let num = |v: &str| -> Result<i64, String> {
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("{v:?} in {s:?} is not an episode index"))
            };
            let range = if let Some((a, b)) = part.split_once("..=") {
                let lo = if a.is_empty() { 0 } else { num(a)? };
                (lo, Some(num(b)? + 1))
            } else if let Some((a, b)) = part.split_once("..") {
                let lo = if a.is_empty() { 0 } else { num(a)? };
                (lo, if b.is_empty() { None } else { Some(num(b)?) })
            } else {
                let n = num(part)?;
                (n, Some(n + 1))
            };
            if range.1.is_some_and(|hi| hi <= range.0) {
                return Err(format!("{part:?} in {s:?} selects no episode"));
            }
            out.push(range);
        }
        if out.is_empty() {
            return Err(format!("{s:?} selects no episode"));
        }
        Ok(EpisodeSelection(out))
    }

    pub fn contains(&self, e: i64) -> bool {
        self.0
            .iter()
            .any(|(lo, hi)| e >= *lo && hi.is_none_or(|h| e < h))
    }
}

/// `K/N`: the K-th (1-based) of N shards.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("--shard {s:?}: expected K/N, e.g. 3/8"))?;
    let (k, n): (usize, usize) = (
        k.trim()
            .parse()
            .map_err(|_| format!("--shard {s:?}: K is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("--shard {s:?}: N is not a number"))?,
    );
    if n == 0 || k == 0 || k > n {
        return Err(format!("--shard {s:?}: need 1 <= K <= N"));
    }
    Ok((k, n))
}

/// The K-th of N contiguous, equal-count slices of `items` (1-based K).
pub fn shard_slice<T>(items: &[T], k: usize, n: usize) -> &[T] {
    let len = items.len();
    &items[(k - 1) * len / n..k * len / n]
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A dataset folder or a repo id in the local LeRobot cache.
    pub dataset: String,
    pub bundle: PathBuf,
    pub out: PathBuf,
    pub precision: Precision,
    /// The inference backend the encoder and reward model run on.
    pub backend: Backend,
    pub episodes: Option<EpisodeSelection>,
    pub stride: usize,
    pub jobs: usize,
    /// Frames per image-encoder call.
    pub encode_batch: usize,
    pub shard: Option<(usize, usize)>,
    pub strict: bool,
    pub camera_key: Option<String>,
    pub state_key: Option<String>,
    pub task: Option<String>,
    pub tolerance_s: f64,
    /// Discard the parts of an earlier run with other settings.
    pub restart: bool,
    pub keep_parts: bool,
}

/// A bad episode: what went wrong, skipped (or the run stopped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedEpisode {
    pub episode_index: i64,
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub dataset_root: PathBuf,
    pub camera_key: String,
    pub state_key: String,
    pub decoder: String,
    pub episodes_selected: usize,
    /// Finished by an earlier, interrupted run (skipped now).
    pub episodes_resumed: usize,
    pub episodes_labelled: usize,
    pub failed: Vec<FailedEpisode>,
    /// Dataset frames labelled in this run, and rows written to `out`.
    pub frames: u64,
    pub rows_written: u64,
    pub frames_scored: u64,
    pub frames_encoded: u64,
    pub elapsed: Duration,
    pub parts_kept: bool,
}

/// What a run computes; a rerun continues an interrupted one only if these match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunIdentity {
    tool: String,
    dataset_root: String,
    dataset_fps: f64,
    dataset_frames: i64,
    dataset_episodes: usize,
    bundle: String,
    bundle_name: String,
    bundle_manifest_sha256: String,
    precision: String,
    stride: usize,
    camera_key: String,
    state_key: String,
    task: Option<String>,
    tolerance_s: f64,
}

/// The camera: the flag, else the bundle's camera as
/// `observation.images.<camera>`, else the dataset's only video.
fn camera_key(ds: &Dataset, bundle: &Bundle, flag: Option<&str>) -> Result<String, RunError> {
    let videos = ds.video_keys();
    let pick = match flag {
        Some(k) => Some(k.to_string()),
        None => bundle
            .manifest
            .image_encoder
            .cameras
            .iter()
            .map(|c| format!("observation.images.{c}"))
            .find(|k| videos.contains(&k.as_str()))
            .or_else(|| (videos.len() == 1).then(|| videos[0].to_string())),
    };
    match pick {
        Some(k) if videos.contains(&k.as_str()) => Ok(k),
        _ => Err(RunError::Config(format!(
            "camera {}: the dataset's video features are {videos:?}; pass --camera-key \
             (the bundle's cameras are {:?})",
            flag.map_or("not found".to_string(), |f| format!(
                "{f:?} is not a video feature"
            )),
            bundle.manifest.image_encoder.cameras
        ))),
    }
}

/// For each bundle joint, its position in the dataset's state vector:
/// by name when the dataset names its elements, else by position when the
/// widths agree.
fn joint_order(
    ds: &Dataset,
    bundle: &Bundle,
    state_key: &str,
) -> Result<(Vec<usize>, usize), RunError> {
    let feature = ds.info.features.get(state_key).ok_or_else(|| {
        RunError::Config(format!(
            "state {state_key:?} is not a feature of the dataset (features: {:?}); pass --state-key",
            ds.info.features.keys().collect::<Vec<_>>()
        ))
    })?;
    let width = feature.width();
    let wanted = &bundle.manifest.state.joint_names;
    if let Some(names) = feature.element_names() {
        let found: Option<Vec<usize>> = wanted
            .iter()
            .map(|w| names.iter().position(|n| n == w))
            .collect();
        if let Some(order) = found {
            return Ok((order, width));
        }
        if names.len() == wanted.len() && width == wanted.len() {
            tracing::warn!(
                "{state_key} names {names:?} do not all match the bundle's joints {wanted:?}; \
                 using the dataset's order as LeRobot does"
            );
            return Ok(((0..width).collect(), width));
        }
        let missing: Vec<&String> = wanted.iter().filter(|w| !names.contains(w)).collect();
        return Err(RunError::Config(format!(
            "{state_key} has no elements named {missing:?} (it has {names:?}); the bundle needs \
             {wanted:?}"
        )));
    }
    if width == wanted.len() {
        return Ok(((0..width).collect(), width));
    }
    Err(RunError::Config(format!(
        "{state_key} has {width} values per frame and no names; the bundle needs {} joints",
        wanted.len()
    )))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parts_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".parts");
    out.with_file_name(name)
}

fn part_file(dir: &Path, episode: i64) -> PathBuf {
    dir.join(format!("episode-{episode:06}.parquet"))
}

fn parts_error(path: &Path, m: impl std::fmt::Display) -> RunError {
    RunError::Parts {
        path: path.to_path_buf(),
        message: m.to_string(),
    }
}

/// Prepares `<out>.parts/`: a new run, or the continuation of an
/// interrupted one with the same identity. Returns the episodes done.
fn open_parts(
    dir: &Path,
    identity: &RunIdentity,
    restart: bool,
    episodes: &[i64],
) -> Result<Vec<i64>, RunError> {
    let id_path = dir.join("run.json");
    if dir.exists() {
        let same = std::fs::read_to_string(&id_path)
            .ok()
            .and_then(|t| serde_json::from_str::<RunIdentity>(&t).ok())
            .is_some_and(|old| &old == identity);
        if !same {
            if !restart {
                return Err(parts_error(
                    dir,
                    "holds an interrupted run with other settings (dataset, bundle, precision, \
                     stride, keys, task or tolerance); pass --restart to discard it, or delete it",
                ));
            }
            std::fs::remove_dir_all(dir).map_err(|e| parts_error(dir, e))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| parts_error(dir, e))?;
    if !id_path.exists() {
        let text = serde_json::to_string_pretty(identity).map_err(|e| parts_error(&id_path, e))?;
        std::fs::write(&id_path, text).map_err(|e| parts_error(&id_path, e))?;
    }
    let mut done = Vec::new();
    for &e in episodes {
        let p = part_file(dir, e);
        if p.exists() {
            // A part is only ever renamed into place complete; check anyway.
            match progress_parquet::inspect(&p) {
                Ok(info) if info.groups.iter().all(|g| g.2 == e) && info.rows > 0 => done.push(e),
                _ => std::fs::remove_file(&p).map_err(|err| parts_error(&p, err))?,
            }
        }
    }
    Ok(done)
}

/// A line on stderr that does not break the progress bar.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

struct Shared<'a> {
    ds: &'a Dataset,
    bundle: &'a Bundle,
    opts: &'a RunOptions,
    camera: &'a str,
    state_key: &'a str,
    state_width: usize,
    order: &'a [usize],
    parts: &'a Path,
    reward_model_path: &'a str,
    bar: &'a ProgressBar,
    stop: AtomicBool,
}

struct EpisodeStats {
    frames: u64,
    scored: u64,
    encoded: u64,
    decoder: String,
}

/// Labels one episode into its part file. `counted`: frames of it already
/// shown on the progress bar (the rest is added if it fails).
fn label_one(
    sh: &Shared<'_>,
    models: &mut Models,
    ep: &EpisodeMeta,
    counted: &mut u64,
) -> Result<EpisodeStats, EpisodeError> {
    let data_err = |e: DatasetError| EpisodeError::Data(e.to_string());
    let data = sh
        .ds
        .read_episode(ep, sh.state_key, sh.state_width)
        .map_err(data_err)?;
    let task = match &sh.opts.task {
        Some(t) => t.clone(),
        None => {
            let ti = data.task_index.first().copied().unwrap_or(0);
            sh.ds.tasks.get(&ti).cloned().ok_or_else(|| {
                EpisodeError::Data(format!("task_index {ti} is not in meta/tasks.parquet"))
            })?
        }
    };
    let text = sh
        .bundle
        .task_embedding(Some(&task))
        .map_err(|e| EpisodeError::Data(format!("task {task:?}: {e}")))?;
    let plan = Plan::new(&data.timestamp, &sh.bundle.window, sh.opts.stride)?;
    let (video_path, span) = sh.ds.video_file(ep, sh.camera).map_err(data_err)?;
    let mut video = VideoFile::open(&video_path)?;
    let input = EpisodeInput {
        episode_index: ep.episode_index,
        data: &data,
        joint_order: sh.order,
        text,
        from_timestamp: span.from_timestamp,
        tolerance_s: sh.opts.tolerance_s,
    };
    let bar = sh.bar;
    let out = label_episode(models, &input, &plan, &mut video, &mut |n| {
        bar.inc(n);
        *counted += n;
    })?;
    let part = part_file(sh.parts, ep.episode_index);
    let metadata = HashMap::from([(
        REWARD_MODEL_PATH.to_string(),
        sh.reward_model_path.to_string(),
    )]);
    let dense = out.rows.first().is_some_and(|r| r.progress_dense.is_some());
    let write = || -> Result<(), ParquetError> {
        let mut w = ProgressWriter::create(&part, dense, metadata)?;
        w.write_episode(&out.rows)?;
        w.finish()?;
        Ok(())
    };
    write().map_err(|e| EpisodeError::Data(format!("writing the episode's part: {e}")))?;
    Ok(EpisodeStats {
        frames: out.rows.len() as u64,
        scored: out.scored as u64,
        encoded: out.encoded as u64,
        decoder: video.decoder_name(),
    })
}

/// Labels the selected episodes of a dataset and writes `opts.out`.
pub fn run(opts: &RunOptions) -> Result<RunReport, RunError> {
    let started = Instant::now();
    if opts.stride == 0 || opts.jobs == 0 {
        return Err(RunError::Config("--stride and --jobs must be >= 1".into()));
    }
    if !(opts.tolerance_s.is_finite() && opts.tolerance_s > 0.0) {
        return Err(RunError::Config(format!(
            "--tolerance-s must be > 0, found {}",
            opts.tolerance_s
        )));
    }
    let ds = Dataset::open(&opts.dataset)?;
    let bundle = Bundle::load(&opts.bundle)?;
    if !bundle.precisions().contains(&opts.precision) {
        return Err(RunError::Config(format!(
            "the bundle has no {} graphs (it has {:?})",
            opts.precision,
            bundle.precisions()
        )));
    }
    let camera = camera_key(&ds, &bundle, opts.camera_key.as_deref())?;
    let state_key = opts
        .state_key
        .clone()
        .unwrap_or_else(|| "observation.state".to_string());
    let (order, state_width) = joint_order(&ds, &bundle, &state_key)?;

    // Episodes: the selection, then this shard's slice of it.
    let mut selected: Vec<&EpisodeMeta> = ds
        .episodes
        .iter()
        .filter(|e| {
            opts.episodes
                .as_ref()
                .is_none_or(|s| s.contains(e.episode_index))
        })
        .collect();
    if let Some((k, n)) = opts.shard {
        selected = shard_slice(&selected, k, n).to_vec();
    }
    if selected.is_empty() {
        return Err(RunError::Config(format!(
            "no episode selected (the dataset has {} episodes, {}..{})",
            ds.episodes.len(),
            ds.episodes.first().map_or(0, |e| e.episode_index),
            ds.episodes.last().map_or(0, |e| e.episode_index + 1)
        )));
    }
    if !VIDEO_BUILT {
        // Every episode would fail the same way: say it once, before any work.
        let (path, _) = ds.video_file(selected[0], &camera)?;
        return Err(RunError::Config(VideoError::NotBuilt { path }.to_string()));
    }
    // Every task must have an embedding in the bundle (checked up front
    // from the metadata; each episode uses its first frame's task).
    if opts.task.is_none() {
        let mut missing: Vec<&str> = selected
            .iter()
            .flat_map(|e| e.tasks.iter())
            .map(String::as_str)
            .filter(|t| bundle.task_embedding(Some(t)).is_err())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            return Err(RunError::Config(format!(
                "the bundle has no text embedding for the dataset's tasks {missing:?} (it has {:?}); \
                 export the bundle with --task for each, or pass --task with one of the bundle's",
                bundle.manifest.text.tasks.iter().map(|t| &t.text).collect::<Vec<_>>()
            )));
        }
    } else if let Some(t) = &opts.task {
        bundle.task_embedding(Some(t))?;
    }

    let manifest = std::fs::read(bundle.dir.join("bundle.toml")).map_err(|e| {
        RunError::Config(format!(
            "reading {}: {e}",
            bundle.dir.join("bundle.toml").display()
        ))
    })?;
    let canonical = |p: &Path| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let identity = RunIdentity {
        tool: format!("sarm {}", env!("CARGO_PKG_VERSION")),
        dataset_root: canonical(&ds.root),
        dataset_fps: ds.fps(),
        dataset_frames: ds.episodes.iter().map(|e| e.length).sum(),
        dataset_episodes: ds.episodes.len(),
        bundle: canonical(&bundle.dir),
        bundle_name: bundle.name().to_string(),
        bundle_manifest_sha256: sha256_hex(&manifest),
        precision: opts.precision.to_string(),
        stride: opts.stride,
        camera_key: camera.clone(),
        state_key: state_key.clone(),
        task: opts.task.clone(),
        tolerance_s: opts.tolerance_s,
    };
    let parts = parts_dir(&opts.out);
    let indices: Vec<i64> = selected.iter().map(|e| e.episode_index).collect();
    let done = open_parts(&parts, &identity, opts.restart, &indices)?;
    let todo: Vec<&EpisodeMeta> = selected
        .iter()
        .copied()
        .filter(|e| !done.contains(&e.episode_index))
        .collect();
    let total: u64 = todo.iter().map(|e| e.length.max(0) as u64).sum();

    let bar = ProgressBar::with_draw_target(
        Some(total),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} frames  {per_sec}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let reward_model_path = bundle.dir.display().to_string();
    eprintln!(
        "sarm label: {} ({} episodes selected, {} done earlier, {} frames to label at {} fps) \
         with {} ({}, {} Hz clock, stride {}), camera {camera}, state {state_key}, {} job(s)",
        ds.root.display(),
        selected.len(),
        done.len(),
        total,
        ds.fps(),
        bundle.name(),
        opts.precision,
        bundle.window.fps,
        opts.stride,
        opts.jobs
    );

    let shared = Shared {
        ds: &ds,
        bundle: &bundle,
        opts,
        camera: &camera,
        state_key: &state_key,
        state_width,
        order: &order,
        parts: &parts,
        reward_model_path: &reward_model_path,
        bar: &bar,
        stop: AtomicBool::new(false),
    };
    let queue = Mutex::new(
        todo.iter()
            .copied()
            .collect::<std::collections::VecDeque<_>>(),
    );
    let report = Mutex::new(RunReport {
        episodes_selected: selected.len(),
        episodes_resumed: done.len(),
        camera_key: camera.clone(),
        state_key: state_key.clone(),
        dataset_root: ds.root.clone(),
        ..RunReport::default()
    });
    let fatal: Mutex<Option<RunError>> = Mutex::new(None);
    let last_line = Mutex::new(Instant::now());
    let jobs = opts.jobs.min(todo.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                let mut models =
                    match Models::load(&bundle, &opts.backend, opts.precision, opts.encode_batch) {
                        Ok(m) => m,
                        Err(e) => {
                            shared.stop.store(true, Ordering::SeqCst);
                            if let Ok(mut f) = fatal.lock() {
                                f.get_or_insert(e.into());
                            }
                            return;
                        }
                    };
                loop {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Some(ep) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                        return;
                    };
                    let t0 = Instant::now();
                    let mut counted = 0;
                    let result = label_one(&shared, &mut models, ep, &mut counted);
                    if result.is_err() {
                        bar.inc((ep.length.max(0) as u64).saturating_sub(counted));
                    }
                    let Ok(mut r) = report.lock() else { return };
                    match result {
                        Ok(st) => {
                            r.episodes_labelled += 1;
                            r.frames += st.frames;
                            r.frames_scored += st.scored;
                            r.frames_encoded += st.encoded;
                            if r.decoder.is_empty() {
                                r.decoder = st.decoder;
                            }
                            let line = format!(
                                "  episode {}: {} frames ({} scored, {} encoded) in {:.1} s",
                                ep.episode_index,
                                st.frames,
                                st.scored,
                                st.encoded,
                                t0.elapsed().as_secs_f64()
                            );
                            // Without a terminal: a line per episode at most every 2 s, with the rate.
                            if bar.is_hidden() {
                                if let Ok(mut last) = last_line.lock() {
                                    if last.elapsed() >= Duration::from_secs(2) {
                                        *last = Instant::now();
                                        let rate =
                                            r.frames as f64 / started.elapsed().as_secs_f64();
                                        let left =
                                            total.saturating_sub(r.frames) as f64 / rate.max(1e-9);
                                        eprintln!(
                                            "{line}; {}/{} episodes, {:.0} frames/s, ETA {:.0} s",
                                            r.episodes_labelled + r.failed.len(),
                                            todo.len(),
                                            rate,
                                            left
                                        );
                                    }
                                }
                            } else {
                                bar.println(line);
                            }
                        }
                        Err(e) => {
                            say(
                                &bar,
                                format!(
                                    "  episode {}: skipped ({}): {e}",
                                    ep.episode_index,
                                    e.kind()
                                ),
                            );
                            r.failed.push(FailedEpisode {
                                episode_index: ep.episode_index,
                                kind: e.kind().to_string(),
                                message: e.to_string(),
                            });
                            if opts.strict {
                                shared.stop.store(true, Ordering::SeqCst);
                                if let Ok(mut f) = fatal.lock() {
                                    f.get_or_insert(RunError::Strict {
                                        episode: ep.episode_index,
                                        source: e,
                                    });
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = fatal.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut report = report
        .into_inner()
        .map_err(|_| RunError::Config("a worker panicked".into()))?;
    report.failed.sort_by_key(|f| f.episode_index);

    // The output: every selected episode with a part, in index order.
    let inputs: Vec<PathBuf> = selected
        .iter()
        .map(|e| part_file(&parts, e.episode_index))
        .filter(|p| p.exists())
        .collect();
    if inputs.is_empty() {
        return Err(RunError::NothingLabelled {
            failed: report.failed.len(),
        });
    }
    let mut metadata = HashMap::from([(REWARD_MODEL_PATH.to_string(), reward_model_path.clone())]);
    if let Some((k, n)) = opts.shard {
        let shard = ShardInfo {
            shard: k,
            shards: n,
            episodes: indices.clone(),
            failed: report.failed.iter().map(|f| f.episode_index).collect(),
        };
        metadata.insert(
            SHARD_METADATA.to_string(),
            serde_json::to_string(&shard).map_err(|e| RunError::Config(e.to_string()))?,
        );
    }
    let stats = progress_parquet::merge(&inputs, &opts.out, metadata)?;
    report.rows_written = stats.rows;
    if report.failed.is_empty() && !opts.keep_parts {
        std::fs::remove_dir_all(&parts).map_err(|e| parts_error(&parts, e))?;
    } else {
        report.parts_kept = true;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What a shard's file says about itself (schema metadata [`SHARD_METADATA`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub shard: usize,
    pub shards: usize,
    /// The episodes this shard was given.
    pub episodes: Vec<i64>,
    /// Those that failed (not in the file).
    pub failed: Vec<i64>,
}

/// What `sarm label merge` did.
#[derive(Debug, Clone)]
pub struct MergeReport {
    pub rows: u64,
    pub episodes: usize,
    pub failed: Vec<i64>,
}

/// Joins the files of `sarm label --shard K/N` runs: the same reward model,
/// every shard once, no episode twice; `partial` accepts missing shards.
pub fn merge_shards(
    inputs: &[PathBuf],
    out: &Path,
    partial: bool,
) -> Result<MergeReport, RunError> {
    if inputs.is_empty() {
        return Err(RunError::Config("nothing to merge".into()));
    }
    let mut model: Option<(String, &Path)> = None;
    let mut shards: Vec<(ShardInfo, &Path)> = Vec::new();
    for path in inputs {
        let info = progress_parquet::inspect(path)?;
        let m = info
            .metadata
            .get(REWARD_MODEL_PATH)
            .cloned()
            .ok_or_else(|| {
                parts_error(
                    path,
                    "has no reward_model_path metadata (not a sarm_progress.parquet)",
                )
            })?;
        match &model {
            None => model = Some((m, path)),
            Some((first, first_path)) if *first != m => {
                return Err(parts_error(
                    path,
                    format!(
                        "was labelled with {m:?}, {} with {first:?}: shards of one run only",
                        first_path.display()
                    ),
                ))
            }
            Some(_) => {}
        }
        if let Some(text) = info.metadata.get(SHARD_METADATA) {
            let s: ShardInfo = serde_json::from_str(text)
                .map_err(|e| parts_error(path, format!("bad {SHARD_METADATA} metadata: {e}")))?;
            shards.push((s, path));
        }
    }
    let mut failed = Vec::new();
    let mut episodes = 0;
    if !shards.is_empty() {
        if shards.len() != inputs.len() {
            return Err(RunError::Config(
                "some inputs are shard files (--shard K/N) and some are not".into(),
            ));
        }
        let n = shards[0].0.shards;
        if let Some((s, p)) = shards.iter().find(|(s, _)| s.shards != n) {
            return Err(parts_error(
                p,
                format!("is shard {}/{}, others are of {n}", s.shard, s.shards),
            ));
        }
        let mut seen = vec![None; n];
        for (s, p) in &shards {
            if let Some(prev) = seen.get(s.shard - 1).copied().flatten() {
                let prev: &Path = prev;
                return Err(parts_error(
                    p,
                    format!("is shard {}/{n} again (also {})", s.shard, prev.display()),
                ));
            }
            seen[s.shard - 1] = Some(*p);
            failed.extend(&s.failed);
            episodes += s.episodes.len() - s.failed.len();
        }
        let missing: Vec<usize> = (1..=n).filter(|k| seen[k - 1].is_none()).collect();
        if !missing.is_empty() && !partial {
            return Err(RunError::Config(format!(
                "shards {missing:?} of {n} are missing (pass --partial to merge what is there)"
            )));
        }
    }
    let (model, _) = model.ok_or_else(|| RunError::Config("nothing to merge".into()))?;
    let metadata = HashMap::from([(REWARD_MODEL_PATH.to_string(), model)]);
    let stats = progress_parquet::merge(inputs, out, metadata)?;
    failed.sort_unstable();
    Ok(MergeReport {
        rows: stats.rows,
        episodes: if shards.is_empty() {
            stats.groups
        } else {
            episodes
        },
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_like_ranges() {
        let s = EpisodeSelection::parse("0..3, 7, 10..=11, 20..").unwrap();
        let picked: Vec<i64> = (0..25).filter(|&e| s.contains(e)).collect();
        assert_eq!(picked, vec![0, 1, 2, 7, 10, 11, 20, 21, 22, 23, 24]);
        assert!(EpisodeSelection::parse("..2").unwrap().contains(1));
        assert!(EpisodeSelection::parse("5..5").is_err());
        assert!(EpisodeSelection::parse("a..b").is_err());
        assert!(EpisodeSelection::parse("-1").is_err());
        assert!(EpisodeSelection::parse("").is_err());
    }

    #[test]
    fn shards_split_contiguously_and_cover_everything() {
        assert_eq!(parse_shard("2/3").unwrap(), (2, 3));
        assert!(
            parse_shard("0/3").is_err() && parse_shard("4/3").is_err() && parse_shard("3").is_err()
        );
        let items: Vec<i32> = (0..10).collect();
        let parts: Vec<&[i32]> = (1..=3).map(|k| shard_slice(&items, k, 3)).collect();
        assert_eq!(
            parts,
            vec![&[0, 1, 2][..], &[3, 4, 5][..], &[6, 7, 8, 9][..]]
        );
        assert!(shard_slice(&items[..2], 2, 4).len() <= 1);
        let all: Vec<i32> = (1..=7)
            .flat_map(|k| shard_slice(&items, k, 7).to_vec())
            .collect();
        assert_eq!(all, items);
    }
}
