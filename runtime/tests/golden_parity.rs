//! Parity with LeRobot's SARM: golden windows produced by
//! `SARMRewardModel.calculate_rewards` (models/tools/make_test_bundle.py)
//! against this runtime, per window, streamed and strided, for every
//! backend x precision with the tolerances of [`TOLERANCES`].

mod common;

use common::backends::{self, tolerance, Tolerance};
use common::{bundle_dir, reward_golden, stream, Episode, Window};
use sarm_runtime::backend::{Backend, BackendKind};
use sarm_runtime::bundle::manifest::WindowLayout;
use sarm_runtime::reward::RewardModel;
use sarm_runtime::state::StateNormalizer;
use sarm_runtime::window::WindowSpec;
use sarm_runtime::{Bundle, FrameData, FrameScore, HeadKind, Precision, Scorer, ScorerConfig};

/// Against LeRobot fp32, per backend x precision: |progress| (and, in
/// fp32, |probability| and |confidence|) within `value`, and the stage
/// argmax agreeing on at least `agreement` of the read-out positions (fp32:
/// every position of every window). The int8 rows are measured bounds:
/// tract follows the QDQ semantics exactly; onnxruntime fuses QDQ into
/// integer kernels that saturate u8 x s8 products on x86 without VNNI.
const TOLERANCES: &[Tolerance] = &[
    Tolerance {
        backend: BackendKind::Tract,
        precision: Precision::Fp32,
        value: 1e-4,
        agreement: 1.0,
    },
    Tolerance {
        backend: BackendKind::Ort,
        precision: Precision::Fp32,
        value: 1e-4,
        agreement: 1.0,
    },
    Tolerance {
        backend: BackendKind::Tract,
        precision: Precision::Int8,
        value: 0.01,
        agreement: 0.99,
    },
    Tolerance {
        backend: BackendKind::Ort,
        precision: Precision::Int8,
        value: 0.05,
        agreement: 0.99,
    },
];

fn heads(bundle: &Bundle) -> Vec<HeadKind> {
    bundle.heads.iter().map(|h| h.kind).collect()
}

/// Fills the model inputs for one golden window, straight from its frame list.
fn run_window(
    rm: &mut RewardModel,
    bundle: &Bundle,
    ep: &Episode,
    w: &Window,
) -> sarm_runtime::reward::WindowScores {
    let norm = StateNormalizer::new(&bundle.manifest.state);
    let d = bundle.manifest.model.image_dim;
    let s = bundle.manifest.model.state_dim;
    for (pos, &f) in w.frame_indices.iter().enumerate() {
        rm.image_input()[pos * d..(pos + 1) * d].copy_from_slice(&ep.frame_features[f]);
        norm.write(
            &ep.joint_positions[f],
            &mut rm.state_input()[pos * s..(pos + 1) * s],
        )
        .unwrap();
    }
    let mut scores = rm.new_scores();
    rm.run(&mut scores).unwrap();
    scores
}

/// Scores every golden window, `batch` windows per call of a model loaded
/// for that many (the last call partial when the count does not divide).
fn run_batched(
    rm: &mut RewardModel,
    bundle: &Bundle,
    g: &common::RewardGolden,
) -> Vec<sarm_runtime::reward::WindowScores> {
    let norm = StateNormalizer::new(&bundle.manifest.state);
    let d = bundle.manifest.model.image_dim;
    let s = bundle.manifest.model.state_dim;
    let windows: Vec<(&Episode, &Window)> = g
        .episodes
        .iter()
        .flat_map(|ep| ep.windows.iter().map(move |w| (ep, w)))
        .collect();
    let mut all = Vec::new();
    for chunk in windows.chunks(rm.batch()) {
        for (slot, (ep, w)) in chunk.iter().enumerate() {
            let (image, state) = rm.window_inputs_at(slot);
            for (pos, &f) in w.frame_indices.iter().enumerate() {
                image[pos * d..(pos + 1) * d].copy_from_slice(&ep.frame_features[f]);
                norm.write(&ep.joint_positions[f], &mut state[pos * s..(pos + 1) * s])
                    .unwrap();
            }
        }
        let mut outs: Vec<_> = chunk.iter().map(|_| rm.new_scores()).collect();
        rm.run_batch(&mut outs).unwrap();
        all.extend(outs);
    }
    all
}

#[test]
fn golden_covers_what_the_issue_asks() {
    let g = reward_golden();
    let bundle = Bundle::load(bundle_dir()).unwrap();
    assert_eq!(g.task, bundle.manifest.text.default_task);
    let windows: Vec<&Window> = g.episodes.iter().flat_map(|e| &e.windows).collect();
    assert!(windows.len() >= 30, "{} windows", windows.len());
    assert_eq!(heads(&bundle), vec![HeadKind::Sparse, HeadKind::Dense]);
    // Windows clamped at the start and at the end of an episode.
    let clamped_start = g.episodes.iter().any(|e| {
        e.windows
            .iter()
            .any(|w| w.layout == "centered" && w.frame_indices[0] == 0 && w.scored_frame < 12)
    });
    let clamped_end = g.episodes.iter().any(|e| {
        e.windows.iter().any(|w| {
            w.layout == "centered"
                && w.frame_indices
                    .iter()
                    .filter(|&&f| f == e.length - 1)
                    .count()
                    > 1
        })
    });
    assert!(clamped_start && clamped_end);
    for w in &windows {
        assert!(w.heads.contains_key("sparse") && w.heads.contains_key("dense"));
    }
}

/// Our window assembly gives LeRobot's frame lists (compute_absolute_indices
/// for the centred layout; the exporter's own lists for causal/anchored).
#[test]
fn window_indices_match_golden() {
    let g = reward_golden();
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let centered = bundle.window.clone();
    let n = centered.len() as i64;
    let gap = bundle.manifest.window.frame_gap as i64;
    let causal_offsets: Vec<i64> = (0..n).map(|i| (i - (n - 1)) * gap).collect();
    let causal = WindowSpec::new(
        WindowLayout::Causal,
        &causal_offsets,
        (n - 1) as usize,
        false,
    )
    .unwrap();
    let anchored = WindowSpec::new(
        WindowLayout::Causal,
        &causal_offsets,
        (n - 1) as usize,
        true,
    )
    .unwrap();
    let mut checked = 0;
    for ep in &g.episodes {
        for w in &ep.windows {
            let spec = match w.layout.as_str() {
                "centered" => &centered,
                "causal" => &causal,
                "causal_anchored" => &anchored,
                other => panic!("unknown layout {other}"),
            };
            assert_eq!(w.readout, spec.readout());
            let mut out = vec![0; spec.len()];
            spec.indices(w.scored_frame, ep.length - 1, &mut out);
            assert_eq!(
                out, w.frame_indices,
                "{} frame {}",
                w.layout, w.scored_frame
            );
            checked += 1;
        }
    }
    assert!(checked >= 30);
}

fn load_reward(
    bundle: &Bundle,
    backend: &Backend,
    precision: Precision,
    task: &str,
    batch: usize,
) -> RewardModel {
    let mut rm = RewardModel::load_batched(bundle, backend, precision, batch)
        .unwrap_or_else(|e| panic!("{} {precision}: {e}", backend.kind()));
    rm.set_text(bundle.task_embedding(Some(task)).unwrap());
    rm
}

#[test]
fn every_window_matches_lerobot_per_backend_and_precision() {
    check_every_window(1);
}

/// The labelling path: 5 windows per call (the last call partial), same
/// tolerances against LeRobot.
#[test]
fn batched_windows_match_lerobot_per_backend_and_precision() {
    check_every_window(5);
}

fn check_every_window(batch: usize) {
    let g = reward_golden();
    let bundle = Bundle::load(bundle_dir()).unwrap();
    for (backend, precision) in backends::pairs() {
        let tol = tolerance(TOLERANCES, &backend, precision);
        let strict = tol.agreement >= 1.0;
        let mut rm = load_reward(&bundle, &backend, precision, &g.task, batch);
        // Batch 1 goes through the node's per-window calls, larger batches through run_batch.
        let all_scores = if batch > 1 {
            run_batched(&mut rm, &bundle, &g)
        } else {
            g.episodes
                .iter()
                .flat_map(|ep| ep.windows.iter().map(move |w| (ep, w)))
                .map(|(ep, w)| run_window(&mut rm, &bundle, ep, w))
                .collect()
        };
        let mut all_scores = all_scores.into_iter();
        let (mut agree, mut total, mut max_diff, mut sum_diff) = (0usize, 0usize, 0.0f32, 0.0f64);
        let mut positions = 0;
        for ep in &g.episodes {
            for w in &ep.windows {
                let scores = all_scores.next().expect("one score per golden window");
                for kind in heads(&bundle) {
                    let ours = scores.head(kind).unwrap();
                    let gold = &w.heads[kind.as_str()];
                    // Strict pairs: every position of the window, not only the read-out one.
                    let checked: Vec<usize> = if strict {
                        (0..w.frame_indices.len()).collect()
                    } else {
                        vec![w.readout]
                    };
                    for t in checked {
                        let same = ours.stage[t] == gold.argmax(t);
                        let d = (ours.progress[t] - gold.progress[t]).abs();
                        let at = format!(
                            "{} {precision}: {kind} {} frame {} pos {t}",
                            backend.kind(),
                            w.layout,
                            w.scored_frame
                        );
                        if strict {
                            assert!(
                                same,
                                "{at}: stage {} vs LeRobot {}",
                                ours.stage[t],
                                gold.argmax(t)
                            );
                            assert!(
                                (ours.confidence[t] - gold.confidence[t]).abs() <= tol.value,
                                "{at}"
                            );
                            for (a, b) in ours.probs_at(t).iter().zip(&gold.stage_probs[t]) {
                                assert!((a - b).abs() <= tol.value, "{at}: probs {a} vs {b}");
                            }
                        }
                        if same {
                            assert!(
                                d <= tol.value,
                                "{at}: progress {} vs LeRobot {}",
                                ours.progress[t],
                                gold.progress[t]
                            );
                        }
                        agree += usize::from(same);
                        total += 1;
                        max_diff = max_diff.max(if same { d } else { 0.0 });
                        sum_diff += d as f64;
                        positions += 1;
                    }
                }
            }
        }
        let rate = agree as f64 / total as f64;
        println!(
            "{} {precision} batch {batch} vs LeRobot fp32: {positions} positions, stage agrees on {agree}/{total} \
             ({:.2}%), max |progress diff| where it agrees {max_diff:.2e}, mean {:.2e}",
            backend.kind(),
            rate * 100.0,
            sum_diff / total as f64
        );
        assert!(positions >= 60, "{positions} positions");
        assert!(
            rate >= tol.agreement,
            "{} {precision}: stage agreement {rate}",
            backend.kind()
        );
    }
}

/// Checks streamed scores against the golden windows of `layout`: the
/// emitted frames and window indices exactly, the stage and progress within
/// `tol` (stage agreement over all the frames checked).
fn check_stream(
    out: &[FrameScore],
    ep: &Episode,
    layout: &str,
    expect_frames: &[usize],
    tol: Tolerance,
) {
    let frames: Vec<usize> = out.iter().map(|s| s.frame_index).collect();
    assert_eq!(frames, expect_frames, "{layout}: emitted frames");
    let (mut agree, mut total) = (0usize, 0usize);
    for s in out {
        let w = ep
            .windows
            .iter()
            .find(|w| w.layout == layout && w.scored_frame == s.frame_index)
            .unwrap_or_else(|| panic!("no golden {layout} window for frame {}", s.frame_index));
        assert_eq!(s.window.as_slice(), w.frame_indices.as_slice());
        for h in &s.heads {
            let gold = &w.heads[h.kind.as_str()];
            total += 1;
            if h.stage != gold.argmax(w.readout) {
                continue;
            }
            agree += 1;
            assert!(
                (h.progress - gold.progress[w.readout]).abs() <= tol.value,
                "{:?} {}: {layout} frame {}: {} vs {}",
                tol.backend,
                tol.precision,
                s.frame_index,
                h.progress,
                gold.progress[w.readout]
            );
        }
    }
    // Few frames per episode: at most one disagreement below 100 frames.
    let allowed = ((1.0 - tol.agreement) * total as f64).ceil() as usize;
    assert!(
        total - agree <= allowed,
        "{:?} {}: {layout}: stage agrees on {agree}/{total}",
        tol.backend,
        tol.precision
    );
}

fn config(precision: Precision) -> ScorerConfig {
    ScorerConfig {
        precision,
        ..ScorerConfig::default()
    }
}

/// The streaming path: delayed output for the centred window, clamped
/// flush at the episode's end, episodes back to back on one scorer.
#[test]
fn streamed_centered_episodes_match_lerobot() {
    let g = reward_golden();
    let bundle = Bundle::load(bundle_dir()).unwrap();
    for (backend, precision) in backends::pairs() {
        let tol = tolerance(TOLERANCES, &backend, precision);
        let mut scorer =
            Scorer::features_only_with_backend(&bundle, &config(precision), &backend).unwrap();
        let delay = scorer.window().delay();
        for ep in &g.episodes {
            let mut emitted_at = Vec::new();
            for f in 0..ep.length {
                let mut n = 0;
                scorer
                    .push(
                        FrameData::Features(&ep.frame_features[f]),
                        &ep.joint_positions[f],
                        &mut |_| n += 1,
                    )
                    .unwrap();
                emitted_at.push(n);
            }
            // Nothing before the window's newest frame, then one score per frame.
            for (f, n) in emitted_at.iter().enumerate() {
                assert_eq!(*n, usize::from(f >= delay), "frame {f}");
            }
            scorer.finish(&mut |_| ()).unwrap();
            let out = stream(&mut scorer, ep);
            let all: Vec<usize> = (0..ep.length).collect();
            check_stream(&out, ep, "centered", &all, tol);
        }
    }
}

#[test]
fn streamed_causal_and_anchored_match_lerobot() {
    let g = reward_golden();
    let mut bundle = Bundle::load(bundle_dir()).unwrap();
    let n = bundle.window.len() as i64;
    let gap = bundle.manifest.window.frame_gap as i64;
    let offsets: Vec<i64> = (0..n).map(|i| (i - (n - 1)) * gap).collect();
    for (backend, precision) in backends::pairs() {
        let tol = tolerance(TOLERANCES, &backend, precision);
        for (layout, anchor) in [("causal", false), ("causal_anchored", true)] {
            bundle.window =
                WindowSpec::new(WindowLayout::Causal, &offsets, (n - 1) as usize, anchor).unwrap();
            let mut scorer =
                Scorer::features_only_with_backend(&bundle, &config(precision), &backend).unwrap();
            assert_eq!(scorer.window().delay(), 0);
            for ep in &g.episodes {
                let golden_frames: Vec<usize> = ep
                    .windows
                    .iter()
                    .filter(|w| w.layout == layout)
                    .map(|w| w.scored_frame)
                    .collect();
                if golden_frames.is_empty() {
                    continue;
                }
                let out = stream(&mut scorer, ep);
                let scored: Vec<FrameScore> = out
                    .into_iter()
                    .filter(|s| golden_frames.contains(&s.frame_index))
                    .collect();
                check_stream(&scored, ep, layout, &golden_frames, tol);
            }
        }
    }
}

/// With a stride, only frames 0, s, 2s, ... are scored, the scores are
/// LeRobot's, and only frames those windows read are encoded.
#[test]
fn stride_scores_and_encodes_only_what_windows_need() {
    let g = reward_golden();
    let bundle = Bundle::load(bundle_dir()).unwrap();
    // A multiple of the frame gap (3): windows then read every third frame.
    // (With a stride coprime to the gap every frame is read, correctly.)
    let stride = 6;
    for (backend, precision) in backends::pairs() {
        let tol = tolerance(TOLERANCES, &backend, precision);
        let config = ScorerConfig {
            stride,
            precision,
            ..ScorerConfig::default()
        };
        let mut scorer = Scorer::features_only_with_backend(&bundle, &config, &backend).unwrap();
        let ep = g.episodes.iter().max_by_key(|e| e.length).unwrap();
        let before = scorer.frames_encoded();
        let out = stream(&mut scorer, ep);
        let expect: Vec<usize> = (0..ep.length).step_by(stride).collect();
        check_stream(&out, ep, "centered", &expect, tol);
        // Frames read by the golden windows of the scored frames, counted from
        // LeRobot's index lists.
        let mut needed: Vec<usize> = ep
            .windows
            .iter()
            .filter(|w| w.layout == "centered" && w.scored_frame % stride == 0)
            .flat_map(|w| w.frame_indices.iter().copied())
            .collect();
        needed.sort_unstable();
        needed.dedup();
        let encoded = (scorer.frames_encoded() - before) as usize;
        assert!(encoded < ep.length, "encoded {encoded} of {}", ep.length);
        assert!(encoded >= needed.len());
        // At most the frames a window might read before the episode's end is known.
        assert!(
            encoded <= needed.len() + 2 * bundle.window.delay(),
            "encoded {encoded}, needed {}",
            needed.len()
        );
    }
}
