//! Bad input is refused without consuming the frame, and the episode goes on
//! exactly as if the bad frame had never been sent.

mod common;

use common::{bundle_dir, reward_golden, stream};
use sarm_runtime::{Bundle, FrameData, ScoreError, Scorer, ScorerConfig};

#[test]
fn bad_frames_are_refused_and_do_not_shift_the_episode() {
    let g = reward_golden();
    let ep = &g.episodes[0];
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let mut scorer = Scorer::features_only(&bundle, &ScorerConfig::default()).unwrap();
    let mut out = Vec::new();
    let nan_features = vec![f32::NAN; ep.frame_features[0].len()];
    let mut nan_joints = ep.joint_positions[0].clone();
    nan_joints[3] = f32::INFINITY;
    for f in 0..ep.length {
        if f % 7 == 3 {
            let e = scorer
                .push(
                    FrameData::Features(&ep.frame_features[f]),
                    &ep.joint_positions[f][..5],
                    &mut |s| out.push(s.clone()),
                )
                .unwrap_err();
            assert!(matches!(e, ScoreError::State(_)), "{e}");
            let e = scorer
                .push(
                    FrameData::Features(&nan_features),
                    &ep.joint_positions[f],
                    &mut |s| out.push(s.clone()),
                )
                .unwrap_err();
            assert!(matches!(e, ScoreError::FeaturesNotFinite), "{e}");
            let e = scorer
                .push(
                    FrameData::Features(&ep.frame_features[f][..10]),
                    &ep.joint_positions[f],
                    &mut |s| out.push(s.clone()),
                )
                .unwrap_err();
            assert!(e.to_string().contains("expects 1280"), "{e}");
            let e = scorer
                .push(
                    FrameData::Features(&ep.frame_features[f]),
                    &nan_joints,
                    &mut |s| out.push(s.clone()),
                )
                .unwrap_err();
            assert!(e.to_string().contains("left_forearm_roll"), "{e}");
            assert_eq!(scorer.frames_received(), f);
        }
        scorer
            .push(
                FrameData::Features(&ep.frame_features[f]),
                &ep.joint_positions[f],
                &mut |s| out.push(s.clone()),
            )
            .unwrap();
    }
    scorer.finish(&mut |s| out.push(s.clone())).unwrap();
    assert_eq!(out.len(), ep.length);
    for s in &out {
        let w = ep
            .windows
            .iter()
            .find(|w| w.layout == "centered" && w.scored_frame == s.frame_index)
            .unwrap();
        for h in &s.heads {
            let gold = &w.heads[h.kind.as_str()];
            assert!((h.progress - gold.progress[w.readout]).abs() <= 1e-4);
        }
    }
}

#[test]
fn images_go_through_the_encoder_once_per_needed_frame() {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let mut scorer = Scorer::new(&bundle, &ScorerConfig::default()).unwrap();
    let joints = vec![0.1; bundle.manifest.state.joint_names.len()];
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 128]));
    let mut scores = Vec::new();
    let n = 20;
    for _ in 0..n {
        scorer
            .push(FrameData::Image(&img), &joints, &mut |s| {
                scores.push(s.clone())
            })
            .unwrap();
    }
    scorer.finish(&mut |s| scores.push(s.clone())).unwrap();
    assert_eq!(scores.len(), n);
    assert_eq!(
        scorer.frames_encoded(),
        n as u64,
        "each frame encoded exactly once"
    );
    for s in &scores {
        for h in &s.heads {
            assert!((0.0..=1.0).contains(&h.progress));
            assert!((h.probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
    }
    // An empty image is refused, and nothing is consumed.
    let e = scorer
        .push(
            FrameData::Image(&image::RgbImage::new(0, 0)),
            &joints,
            &mut |_| (),
        )
        .unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    assert_eq!(scorer.frames_received(), 0);
}

#[test]
fn smoothing_is_reported_next_to_raw_progress() {
    let g = reward_golden();
    let ep = &g.episodes[0];
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let config = ScorerConfig {
        smoothing: Some(Default::default()),
        ..ScorerConfig::default()
    };
    let mut scorer = Scorer::features_only(&bundle, &config).unwrap();
    let out = stream(&mut scorer, ep);
    // Frame 0: the first smoothed value is the raw value itself (to eps).
    for h in &out[0].heads {
        assert!((h.smoothed.unwrap() - h.progress).abs() < 1e-5);
    }
    assert!(out
        .iter()
        .all(|s| s.heads.iter().all(|h| h.smoothed.is_some())));
}
