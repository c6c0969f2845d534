//! A LeRobot dataset on disk (layout v3.0): where it is, its metadata, and
//! one episode's rows.
//!
//! Only what labelling needs is read: `meta/info.json` (fps, features,
//! path templates), `meta/episodes/*.parquet` (each episode's rows, data
//! file, and per camera its mp4 and `from_timestamp`: many episodes share
//! one mp4), `meta/tasks.parquet`, and for one episode at a time the
//! `index`, `frame_index`, `timestamp`, `task_index` and state columns of
//! its data file, selected by row range (so memory follows the episode,
//! not the file or the dataset).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ProjectionMask;
use serde::Deserialize;

use super::columns::{self, ColumnError};

/// One video key's columns in `meta/episodes/`: the key, `chunk_index`,
/// `file_index`, `from_timestamp`, `to_timestamp`.
type VideoColumns = (String, Vec<i64>, Vec<i64>, Vec<f64>, Vec<f64>);

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "no LeRobot dataset at {given:?}: looked for meta/info.json in {}. \
         sarm reads local datasets only and downloads nothing; fetch it first (e.g. \
         `huggingface-cli download --repo-type dataset {given} --local-dir DIR`, or load it \
         once with LeRobotDataset), or pass the folder",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
    )]
    NotFound { given: String, tried: Vec<PathBuf> },
    #[error("LEROBOT_HOME is set ({0}); LeRobot no longer reads it: set HF_LEROBOT_HOME instead")]
    LegacyHome(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: LeRobot dataset layout {found} is not supported (sarm reads v3.0). Convert it \
         with LeRobot: `python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=...`"
    )]
    Version { path: PathBuf, found: String },
    #[error("{path}: {source}")]
    Column {
        path: PathBuf,
        #[source]
        source: ColumnError,
    },
    #[error("episode {episode} is not in the dataset's meta/episodes (it has {count} episodes)")]
    NoEpisode { episode: i64, count: usize },
}

/// `meta/info.json`, the fields labelling uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    pub codebase_version: String,
    pub fps: f64,
    #[serde(default)]
    pub total_episodes: i64,
    #[serde(default)]
    pub total_frames: i64,
    pub data_path: String,
    #[serde(default)]
    pub video_path: Option<String>,
    pub features: BTreeMap<String, Feature>,
}

/// One entry of `info.json`'s `features`.
#[derive(Debug, Clone, Deserialize)]
pub struct Feature {
    pub dtype: String,
    #[serde(default)]
    pub shape: Vec<usize>,
    /// A list of names, or a dict of lists (`{"motors": [...]}`), or null.
    #[serde(default)]
    pub names: Option<serde_json::Value>,
}

impl Feature {
    /// The flat list of per-element names, when the dataset gives one.
    pub fn element_names(&self) -> Option<Vec<String>> {
        let strings = |v: &serde_json::Value| -> Option<Vec<String>> {
            v.as_array()?
                .iter()
                .map(|s| s.as_str().map(String::from))
                .collect()
        };
        match self.names.as_ref()? {
            v @ serde_json::Value::Array(_) => strings(v),
            serde_json::Value::Object(m) if m.len() == 1 => strings(m.values().next()?),
            _ => None,
        }
    }

    /// Number of values per frame.
    pub fn width(&self) -> usize {
        self.shape.iter().product::<usize>().max(1)
    }
}

/// Where one camera's frames of an episode are: an mp4 shared with other
/// episodes, from `from_timestamp` to `to_timestamp` in it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSpan {
    pub chunk: i64,
    pub file: i64,
    pub from_timestamp: f64,
    pub to_timestamp: f64,
}

/// One row of `meta/episodes`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeMeta {
    pub episode_index: i64,
    pub length: i64,
    /// Global `index` of the episode's first frame (`dataset_from_index`).
    pub from_index: i64,
    /// One past its last frame (`dataset_to_index`).
    pub to_index: i64,
    pub data_chunk: i64,
    pub data_file: i64,
    pub tasks: Vec<String>,
    pub videos: BTreeMap<String, VideoSpan>,
}

/// One episode's rows from its data file, in frame order.
#[derive(Debug, Clone, Default)]
pub struct EpisodeData {
    pub index: Vec<i64>,
    pub frame_index: Vec<i64>,
    /// Seconds from the episode's start (float32 in the file, exactly).
    pub timestamp: Vec<f64>,
    pub task_index: Vec<i64>,
    /// `len() * state_width` values, row-major, in the dataset's order.
    pub state: Vec<f32>,
    pub state_width: usize,
}

impl EpisodeData {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn state_row(&self, i: usize) -> &[f32] {
        &self.state[i * self.state_width..(i + 1) * self.state_width]
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub info: Info,
    /// Sorted by episode index.
    pub episodes: Vec<EpisodeMeta>,
    /// `task_index` -> task text.
    pub tasks: BTreeMap<i64, String>,
}

/// The local LeRobot cache, as LeRobot 0.4 resolves it: `HF_LEROBOT_HOME`,
/// else `$HF_HOME/lerobot`, else `$XDG_CACHE_HOME/huggingface/lerobot`,
/// else `~/.cache/huggingface/lerobot`.
pub fn lerobot_home() -> Result<PathBuf, DatasetError> {
    if let Ok(v) = std::env::var("LEROBOT_HOME") {
        return Err(DatasetError::LegacyHome(v));
    }
    if let Ok(v) = std::env::var("HF_LEROBOT_HOME") {
        return Ok(expand_user(&v));
    }
    let hf_home = match std::env::var("HF_HOME") {
        Ok(v) => expand_user(&expand_vars(&v)),
        Err(_) => {
            let cache = std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| "~/.cache".into());
            expand_user(&expand_vars(&cache)).join("huggingface")
        }
    };
    Ok(hf_home.join("lerobot"))
}

/// `os.path.expanduser` for the current user.
fn expand_user(p: &str) -> PathBuf {
    if p == "~" || p.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(p.trim_start_matches('~').trim_start_matches('/'));
        }
    }
    PathBuf::from(p)
}

/// `os.path.expandvars`: `$NAME` and `${NAME}` of set variables.
fn expand_vars(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match std::env::var(name) {
            Ok(v) if !name.is_empty() => out.push_str(&v),
            _ => out.push_str(&rest[i..i + 1 + consumed]),
        }
        rest = &rest[i + 1 + consumed..];
    }
    out.push_str(rest);
    out
}

/// Python's `str.format` for LeRobot's path templates: `{name}` and
/// `{name:03d}` with the given values.
pub fn format_template(
    template: &str,
    values: &[(&str, TemplateValue<'_>)],
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?
            + open;
        let field = &rest[open + 1..close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("unknown field {{{name}}} in {template:?}"))?;
        match (value, spec) {
            (TemplateValue::Str(s), "") => out.push_str(s),
            (TemplateValue::Int(v), "") | (TemplateValue::Int(v), "d") => {
                out.push_str(&v.to_string())
            }
            (TemplateValue::Int(v), spec) if spec.starts_with('0') && spec.ends_with('d') => {
                let width: usize = spec[1..spec.len() - 1]
                    .parse()
                    .map_err(|_| format!("format {spec:?} in {template:?}"))?;
                let sign = if *v < 0 { "-" } else { "" };
                out.push_str(&format!("{sign}{:0width$}", v.unsigned_abs()));
            }
            _ => return Err(format!("format {spec:?} of {{{name}}} in {template:?}")),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
pub enum TemplateValue<'a> {
    Int(i64),
    Str(&'a str),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_error(path: &Path, message: impl std::fmt::Display) -> DatasetError {
    DatasetError::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn column_error(path: &Path) -> impl FnOnce(ColumnError) -> DatasetError + '_ {
    move |source| DatasetError::Column {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the named root columns of a parquet file (those present), with an
/// optional row selection.
fn read_columns(
    path: &Path,
    names: &[&str],
    selection: Option<RowSelection>,
) -> Result<Vec<RecordBatch>, DatasetError> {
    let file = File::open(path).map_err(io_error(path))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format_error(path, e))?;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut builder = builder.with_projection(mask).with_batch_size(8192);
    if let Some(s) = selection {
        builder = builder.with_row_selection(s);
    }
    let reader = builder.build().map_err(|e| format_error(path, e))?;
    reader
        .map(|b| b.map_err(|e| format_error(path, e)))
        .collect()
}

impl Dataset {
    /// Opens a dataset folder, or a repo id (`owner/name`) in the local
    /// LeRobot cache.
    pub fn open(dir_or_repo_id: &str) -> Result<Self, DatasetError> {
        let given = Path::new(dir_or_repo_id);
        let mut tried = vec![given.to_path_buf()];
        let root = if given.join("meta/info.json").is_file() {
            given.to_path_buf()
        } else {
            let looks_like_repo = !dir_or_repo_id.starts_with(['/', '.', '~'])
                && dir_or_repo_id.split('/').count() == 2;
            let cached = if looks_like_repo {
                let p = lerobot_home()?.join(dir_or_repo_id);
                tried.push(p.clone());
                Some(p)
            } else {
                None
            };
            match cached {
                Some(p) if p.join("meta/info.json").is_file() => p,
                _ => {
                    return Err(DatasetError::NotFound {
                        given: dir_or_repo_id.to_string(),
                        tried,
                    })
                }
            }
        };
        Self::open_root(&root)
    }

    fn open_root(root: &Path) -> Result<Self, DatasetError> {
        let info_path = root.join("meta/info.json");
        let text = std::fs::read_to_string(&info_path).map_err(io_error(&info_path))?;
        let info: Info = serde_json::from_str(&text).map_err(|e| format_error(&info_path, e))?;
        if info.codebase_version != "v3.0" {
            return Err(DatasetError::Version {
                path: info_path,
                found: info.codebase_version,
            });
        }
        if !(info.fps.is_finite() && info.fps > 0.0) {
            return Err(format_error(
                &info_path,
                format!("fps must be > 0, found {}", info.fps),
            ));
        }
        let video_keys: Vec<String> = info
            .features
            .iter()
            .filter(|(_, f)| f.dtype == "video")
            .map(|(k, _)| k.clone())
            .collect();
        let episodes = read_episodes(root, &video_keys)?;
        let tasks = read_tasks(root)?;
        Ok(Dataset {
            root: root.to_path_buf(),
            info,
            episodes,
            tasks,
        })
    }

    pub fn fps(&self) -> f64 {
        self.info.fps
    }

    /// Features stored as mp4 (`dtype: video`).
    pub fn video_keys(&self) -> Vec<&str> {
        self.info
            .features
            .iter()
            .filter(|(_, f)| f.dtype == "video")
            .map(|(k, _)| k.as_str())
            .collect()
    }

    pub fn episode(&self, episode_index: i64) -> Result<&EpisodeMeta, DatasetError> {
        self.episodes
            .binary_search_by_key(&episode_index, |e| e.episode_index)
            .map(|i| &self.episodes[i])
            .map_err(|_| DatasetError::NoEpisode {
                episode: episode_index,
                count: self.episodes.len(),
            })
    }

    pub fn data_file(&self, ep: &EpisodeMeta) -> Result<PathBuf, DatasetError> {
        let rel = format_template(
            &self.info.data_path,
            &[
                ("chunk_index", TemplateValue::Int(ep.data_chunk)),
                ("file_index", TemplateValue::Int(ep.data_chunk_file())),
                ("episode_chunk", TemplateValue::Int(ep.data_chunk)),
                ("episode_index", TemplateValue::Int(ep.episode_index)),
            ],
        )
        .map_err(|m| format_error(&self.root.join("meta/info.json"), format!("data_path: {m}")))?;
        Ok(self.root.join(rel))
    }

    /// The mp4 holding `video_key`'s frames of `ep`, and where in it they are.
    pub fn video_file(
        &self,
        ep: &EpisodeMeta,
        video_key: &str,
    ) -> Result<(PathBuf, VideoSpan), DatasetError> {
        let info_path = self.root.join("meta/info.json");
        let template = self.info.video_path.as_deref().ok_or_else(|| {
            format_error(&info_path, "video_path is null: the dataset has no videos")
        })?;
        let span = ep.videos.get(video_key).cloned().ok_or_else(|| {
            format_error(
                &self.root.join("meta/episodes"),
                format!(
                    "episode {} has no videos/{video_key}/* columns",
                    ep.episode_index
                ),
            )
        })?;
        let rel = format_template(
            template,
            &[
                ("video_key", TemplateValue::Str(video_key)),
                ("chunk_index", TemplateValue::Int(span.chunk)),
                ("file_index", TemplateValue::Int(span.file)),
                ("episode_chunk", TemplateValue::Int(span.chunk)),
                ("episode_index", TemplateValue::Int(ep.episode_index)),
            ],
        )
        .map_err(|m| format_error(&info_path, format!("video_path: {m}")))?;
        Ok((self.root.join(rel), span))
    }

    /// Reads `ep`'s rows: global index, frame index, timestamp, task index
    /// and the `state_key` vectors (`state_width` floats each).
    pub fn read_episode(
        &self,
        ep: &EpisodeMeta,
        state_key: &str,
        state_width: usize,
    ) -> Result<EpisodeData, DatasetError> {
        let path = self.data_file(ep)?;
        if !path.is_file() {
            return Err(DatasetError::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "data file missing"),
            });
        }
        // Episodes are stored one after another in their data file: the
        // rows of `ep` start after those of the earlier episodes in it.
        let file_start = self
            .episodes
            .iter()
            .filter(|e| e.data_chunk == ep.data_chunk && e.data_file == ep.data_file)
            .map(|e| e.from_index)
            .min()
            .unwrap_or(ep.from_index);
        let offset = (ep.from_index - file_start).max(0) as usize;
        let len = (ep.to_index - ep.from_index).max(0) as usize;
        let names = [
            "index",
            "episode_index",
            "frame_index",
            "timestamp",
            "task_index",
            state_key,
        ];
        let selection =
            RowSelection::from(vec![RowSelector::skip(offset), RowSelector::select(len)]);
        let batches = read_columns(&path, &names, Some(selection))?;
        let mut data = collect_rows(&path, &batches, state_key, state_width, None)?;
        let in_place = data.len() == len
            && data
                .index
                .iter()
                .enumerate()
                .all(|(i, &v)| v == ep.from_index + i as i64);
        if !in_place {
            // Not stored in metadata order: scan the file for the episode.
            let batches = read_columns(&path, &names, None)?;
            data = collect_rows(
                &path,
                &batches,
                state_key,
                state_width,
                Some(ep.episode_index),
            )?;
            let mut order: Vec<usize> = (0..data.len()).collect();
            order.sort_by_key(|&i| data.index[i]);
            data = reorder(&data, &order);
        }
        if data.len() != len {
            return Err(format_error(
                &path,
                format!(
                    "episode {} has {} rows, meta/episodes says {len} (dataset_from_index {} .. {})",
                    ep.episode_index,
                    data.len(),
                    ep.from_index,
                    ep.to_index
                ),
            ));
        }
        Ok(data)
    }
}

impl EpisodeMeta {
    fn data_chunk_file(&self) -> i64 {
        self.data_file
    }
}

fn collect_rows(
    path: &Path,
    batches: &[RecordBatch],
    state_key: &str,
    state_width: usize,
    only_episode: Option<i64>,
) -> Result<EpisodeData, DatasetError> {
    let mut d = EpisodeData {
        state_width,
        ..EpisodeData::default()
    };
    for b in batches {
        let index = columns::i64s(b, "index").map_err(column_error(path))?;
        let episode = columns::i64s(b, "episode_index").map_err(column_error(path))?;
        let frame = columns::i64s(b, "frame_index").map_err(column_error(path))?;
        let ts = columns::f64s(b, "timestamp").map_err(column_error(path))?;
        let task = columns::i64s(b, "task_index").map_err(column_error(path))?;
        let state = columns::float_rows(b, state_key, state_width).map_err(column_error(path))?;
        for i in 0..index.len() {
            if only_episode.is_some_and(|e| e != episode[i]) {
                continue;
            }
            d.index.push(index[i]);
            d.frame_index.push(frame[i]);
            d.timestamp.push(ts[i]);
            d.task_index.push(task[i]);
            d.state
                .extend_from_slice(&state[i * state_width..(i + 1) * state_width]);
        }
    }
    Ok(d)
}

fn reorder(d: &EpisodeData, order: &[usize]) -> EpisodeData {
    let mut out = EpisodeData {
        state_width: d.state_width,
        ..EpisodeData::default()
    };
    for &i in order {
        out.index.push(d.index[i]);
        out.frame_index.push(d.frame_index[i]);
        out.timestamp.push(d.timestamp[i]);
        out.task_index.push(d.task_index[i]);
        out.state.extend_from_slice(d.state_row(i));
    }
    out
}

fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_error(&d))? {
            let p = entry.map_err(io_error(&d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read_episodes(root: &Path, video_keys: &[String]) -> Result<Vec<EpisodeMeta>, DatasetError> {
    let dir = root.join("meta/episodes");
    let files = parquet_files(&dir)?;
    if files.is_empty() {
        return Err(format_error(&dir, "no episode metadata (*.parquet)"));
    }
    let mut wanted: Vec<String> = [
        "episode_index",
        "length",
        "dataset_from_index",
        "dataset_to_index",
        "data/chunk_index",
        "data/file_index",
        "tasks",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for k in video_keys {
        for f in [
            "chunk_index",
            "file_index",
            "from_timestamp",
            "to_timestamp",
        ] {
            wanted.push(format!("videos/{k}/{f}"));
        }
    }
    let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for path in &files {
        for b in read_columns(path, &names, None)? {
            let col = column_error(path);
            let ep = columns::i64s(&b, "episode_index").map_err(column_error(path))?;
            let from = columns::i64s(&b, "dataset_from_index").map_err(column_error(path))?;
            let to = columns::i64s(&b, "dataset_to_index").map_err(column_error(path))?;
            let chunk = columns::i64s(&b, "data/chunk_index").map_err(column_error(path))?;
            let file = columns::i64s(&b, "data/file_index").map_err(column_error(path))?;
            let length = match columns::i64s(&b, "length") {
                Ok(v) => v,
                Err(ColumnError::Missing(_)) => from.iter().zip(&to).map(|(a, b)| b - a).collect(),
                Err(e) => return Err(col(e)),
            };
            let tasks = match columns::string_lists(&b, "tasks") {
                Ok(v) => v,
                Err(ColumnError::Missing(_)) => vec![Vec::new(); ep.len()],
                Err(e) => return Err(column_error(path)(e)),
            };
            let mut videos: Vec<VideoColumns> = Vec::new();
            for k in video_keys {
                let c = |f: &str| format!("videos/{k}/{f}");
                videos.push((
                    k.clone(),
                    columns::i64s(&b, &c("chunk_index")).map_err(column_error(path))?,
                    columns::i64s(&b, &c("file_index")).map_err(column_error(path))?,
                    columns::f64s(&b, &c("from_timestamp")).map_err(column_error(path))?,
                    columns::f64s(&b, &c("to_timestamp")).map_err(column_error(path))?,
                ));
            }
            for i in 0..ep.len() {
                out.push(EpisodeMeta {
                    episode_index: ep[i],
                    length: length[i],
                    from_index: from[i],
                    to_index: to[i],
                    data_chunk: chunk[i],
                    data_file: file[i],
                    tasks: tasks[i].clone(),
                    videos: videos
                        .iter()
                        .map(|(k, c, f, a, z)| {
                            (
                                k.clone(),
                                VideoSpan {
                                    chunk: c[i],
                                    file: f[i],
                                    from_timestamp: a[i],
                                    to_timestamp: z[i],
                                },
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    out.sort_by_key(|e| e.episode_index);
    if let Some(w) = out
        .windows(2)
        .find(|w| w[0].episode_index == w[1].episode_index)
    {
        return Err(format_error(
            &dir,
            format!("episode {} is listed twice", w[0].episode_index),
        ));
    }
    for e in &out {
        if e.to_index < e.from_index || e.length != e.to_index - e.from_index {
            return Err(format_error(
                &dir,
                format!(
                    "episode {}: length {} does not match dataset_from_index {} .. dataset_to_index {}",
                    e.episode_index, e.length, e.from_index, e.to_index
                ),
            ));
        }
    }
    Ok(out)
}

/// `meta/tasks.parquet`: pandas writes the task text as the frame's index
/// (column `task` or `__index_level_0__`) next to `task_index`.
fn read_tasks(root: &Path) -> Result<BTreeMap<i64, String>, DatasetError> {
    let path = root.join("meta/tasks.parquet");
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let mut out = BTreeMap::new();
    for b in read_columns(&path, &["task_index", "task", "__index_level_0__"], None)? {
        let idx = columns::i64s(&b, "task_index").map_err(column_error(&path))?;
        let text = match columns::strings(&b, "task") {
            Ok(t) => t,
            Err(ColumnError::Missing(_)) => {
                columns::strings(&b, "__index_level_0__").map_err(column_error(&path))?
            }
            Err(e) => return Err(column_error(&path)(e)),
        };
        out.extend(idx.into_iter().zip(text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_format_like_python() {
        let v = format_template(
            "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            &[
                ("video_key", TemplateValue::Str("observation.images.top")),
                ("chunk_index", TemplateValue::Int(0)),
                ("file_index", TemplateValue::Int(12)),
            ],
        )
        .unwrap();
        assert_eq!(v, "videos/observation.images.top/chunk-000/file-012.mp4");
        assert_eq!(
            format_template("{a:04d}-{a}", &[("a", TemplateValue::Int(1234567))]).unwrap(),
            "1234567-1234567"
        );
        assert!(format_template("{b}", &[("a", TemplateValue::Int(1))]).is_err());
        assert!(format_template("{a", &[("a", TemplateValue::Int(1))]).is_err());
    }

    #[test]
    fn vars_expand_like_os_path() {
        std::env::set_var("SARM_TEST_EXPAND", "x");
        assert_eq!(
            expand_vars("$SARM_TEST_EXPAND/${SARM_TEST_EXPAND}/$NOPE_NOT_SET/$"),
            "x/x/$NOPE_NOT_SET/$"
        );
    }

    #[test]
    fn names_come_as_a_list_or_a_single_keyed_dict() {
        let f: Feature =
            serde_json::from_str(r#"{"dtype":"float32","shape":[2],"names":{"motors":["a","b"]}}"#)
                .unwrap();
        assert_eq!(f.element_names().unwrap(), vec!["a", "b"]);
        let f: Feature =
            serde_json::from_str(r#"{"dtype":"float32","shape":[2],"names":["a","b"]}"#).unwrap();
        assert_eq!(f.element_names().unwrap(), vec!["a", "b"]);
        let f: Feature =
            serde_json::from_str(r#"{"dtype":"float32","shape":[2],"names":null}"#).unwrap();
        assert!(f.element_names().is_none());
    }
}
