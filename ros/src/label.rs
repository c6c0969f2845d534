//! Offline scoring of a recorded episode (`sarm label`): the same engine
//! path the node uses (decode -> joint reorder -> scorer), fed from a bag.
//!
//! Camera frames are taken at the bundle's frame rate (nearest frame by
//! header stamp, so a 50 Hz camera is read at a 30 fps model's rate); each
//! is paired with the joint state nearest in stamp. Pairs further apart
//! than the slop are used but counted, so a late joint stream is visible.

use std::collections::BTreeMap;
use std::path::Path;

use image::RgbImage;
use sarm_runtime::rate::RateGate;
use sarm_runtime::{Bundle, FrameData, FrameScore, Scorer, ScorerConfig};

use crate::bag::{read_bag, BagError, ReadStats};
use crate::image::{decode_compressed, decode_raw};
use crate::joints::JointMap;
use crate::msg::{CompressedImage, Image, JointState, RosMessage};

#[derive(Debug, Clone)]
pub struct LabelOptions {
    pub camera_topic: String,
    pub joints_topic: String,
    pub scorer: ScorerConfig,
    /// The inference backend (`--backend`).
    pub backend: sarm_runtime::Backend,
    /// Largest accepted |camera stamp - joint stamp| before a pair is counted as late.
    pub joint_slop_ns: i64,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            camera_topic: "/camera/top/image_raw/compressed".into(),
            joints_topic: "/joint_states".into(),
            scorer: ScorerConfig::default(),
            backend: sarm_runtime::Backend::tract(),
            joint_slop_ns: 20_000_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error(transparent)]
    Bundle(#[from] sarm_runtime::BundleError),
    #[error("scoring frame {frame}: {source}")]
    Score {
        frame: usize,
        #[source]
        source: sarm_runtime::ScoreError,
    },
    #[error("the bag has no usable {what} on {topic:?} (topics seen: {seen:?})")]
    NoData {
        what: &'static str,
        topic: String,
        seen: Vec<String>,
    },
}

/// What happened while labelling.
#[derive(Debug, Clone, Default)]
pub struct LabelReport {
    pub bag: ReadStats,
    pub camera_messages: usize,
    pub joint_messages: usize,
    pub frames_scored: usize,
    /// Frames fed to the scorer (the episode's length at the model's rate).
    pub frames_in_episode: i64,
    /// Dropped or flagged inputs by reason (decode errors, late pairs, ...).
    pub counts: BTreeMap<&'static str, u64>,
}

impl LabelReport {
    fn count(&mut self, reason: &'static str) {
        *self.counts.entry(reason).or_default() += 1;
    }
}

struct CameraMsg {
    stamp: i64,
    raw: bool,
    data: Vec<u8>,
}

/// Scores the episode in `bag`; `emit` receives each score with the stamp
/// of the camera frame it belongs to.
pub fn label_bag(
    bag: &Path,
    bundle: &Bundle,
    opts: &LabelOptions,
    emit: impl FnMut(&FrameScore, i64),
) -> Result<LabelReport, LabelError> {
    let mut scorer = Scorer::with_backend(bundle, &opts.scorer, &opts.backend)?;
    label_bag_with(&mut scorer, bag, bundle, opts, emit)
}

/// [`label_bag`] with a scorer loaded once for several bags (built from
/// `bundle` with `opts.scorer` and `opts.backend`); it is left ready for the next episode.
pub fn label_bag_with(
    scorer: &mut Scorer,
    bag: &Path,
    bundle: &Bundle,
    opts: &LabelOptions,
    mut emit: impl FnMut(&FrameScore, i64),
) -> Result<LabelReport, LabelError> {
    scorer.reset_episode();
    let mut report = LabelReport::default();
    let mut cameras: Vec<CameraMsg> = Vec::new();
    let mut joints: Vec<(i64, Vec<f32>)> = Vec::new();
    let mut map = JointMap::new(&bundle.manifest.state.joint_names);
    let mut seen_topics: Vec<String> = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bump = |k: &'static str| *counts.entry(k).or_default() += 1;
    report.bag = read_bag(bag, |m| {
        if !seen_topics.iter().any(|t| t == m.topic) {
            seen_topics.push(m.topic.to_string());
        }
        if m.topic == opts.camera_topic {
            let stamp = match m.type_name {
                "sensor_msgs/msg/CompressedImage" => {
                    CompressedImage::from_cdr(m.data).map(|c| c.header.stamp)
                }
                "sensor_msgs/msg/Image" => Image::from_cdr(m.data).map(|c| c.header.stamp),
                _ => {
                    bump("camera_type");
                    return;
                }
            };
            match stamp {
                Ok(s) => cameras.push(CameraMsg {
                    stamp: s.as_nanos(),
                    raw: m.type_name == "sensor_msgs/msg/Image",
                    data: m.data.to_vec(),
                }),
                Err(_) => bump("camera_cdr"),
            }
        } else if m.topic == opts.joints_topic {
            match JointState::from_cdr(m.data) {
                Ok(js) => {
                    let mut q = vec![0.0; bundle.manifest.state.joint_names.len()];
                    match map.reorder(&js, &mut q) {
                        Ok(()) => joints.push((js.header.stamp.as_nanos(), q)),
                        Err(e) => bump(e.kind()),
                    }
                }
                Err(_) => bump("joints_cdr"),
            }
        }
    })?;
    report.counts = counts;
    report.camera_messages = cameras.len();
    report.joint_messages = joints.len();
    if cameras.is_empty() {
        return Err(LabelError::NoData {
            what: "camera images",
            topic: opts.camera_topic.clone(),
            seen: seen_topics,
        });
    }
    if joints.is_empty() {
        return Err(LabelError::NoData {
            what: "joint states",
            topic: opts.joints_topic.clone(),
            seen: seen_topics,
        });
    }
    // Bags are in log-time order; stamps drive synchronisation.
    if cameras.windows(2).any(|w| w[1].stamp < w[0].stamp) {
        report.count("camera_stamp_backwards");
        cameras.sort_by_key(|c| c.stamp);
    }
    if joints.windows(2).any(|w| w[1].0 < w[0].0) {
        report.count("joints_stamp_backwards");
        joints.sort_by_key(|j| j.0);
    }

    // The model's frame clock picks which camera frames are scored, the
    // same way the live node does.
    let mut gate = RateGate::new(bundle.window.fps);
    let mut plan: Vec<usize> = Vec::new();
    for (i, c) in cameras.iter().enumerate() {
        let ticks = gate.push(c.stamp);
        plan.extend(std::iter::repeat_n(
            i.saturating_sub(1),
            ticks.previous as usize,
        ));
        plan.extend(std::iter::repeat_n(i, ticks.current as usize));
        for _ in 0..ticks.gaps {
            report.count("camera_gap");
        }
    }
    plan.extend(std::iter::repeat_n(
        cameras.len() - 1,
        gate.finish() as usize,
    ));

    let mut rgb = RgbImage::new(1, 1);
    let mut stamps: Vec<i64> = Vec::new();
    for cam in plan {
        let c = &cameras[cam];
        let decoded = if c.raw {
            Image::from_cdr(&c.data)
                .map_err(|_| "camera_cdr")
                .and_then(|m| decode_raw(&m, &mut rgb).map_err(|e| e.kind()))
        } else {
            CompressedImage::from_cdr(&c.data)
                .map_err(|_| "camera_cdr")
                .and_then(|m| decode_compressed(&m, &mut rgb).map_err(|e| e.kind()))
        };
        if let Err(kind) = decoded {
            report.count(kind);
            continue;
        }
        let j = nearest(&joints, c.stamp, |j| j.0);
        if (joints[j].0 - c.stamp).abs() > opts.joint_slop_ns {
            report.count("joints_outside_slop");
        }
        let frame = scorer.frames_received();
        stamps.push(c.stamp);
        scorer
            .push(FrameData::Image(&rgb), &joints[j].1, &mut |s| {
                emit(s, stamps[s.frame_index]);
                report.frames_scored += 1;
            })
            .map_err(|source| LabelError::Score { frame, source })?;
    }
    let frame = scorer.frames_received();
    report.frames_in_episode = frame as i64;
    scorer
        .finish(&mut |s| {
            emit(s, stamps[s.frame_index]);
            report.frames_scored += 1;
        })
        .map_err(|source| LabelError::Score { frame, source })?;
    Ok(report)
}

/// Index of the element whose key is nearest to `t` (`items` sorted by key).
fn nearest<T>(items: &[T], t: i64, key: impl Fn(&T) -> i64) -> usize {
    let i = items.partition_point(|x| key(x) < t);
    if i == 0 {
        0
    } else if i == items.len() {
        items.len() - 1
    } else if (key(&items[i]) - t).abs() < (t - key(&items[i - 1])).abs() {
        i
    } else {
        i - 1
    }
}
