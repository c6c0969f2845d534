//! RA-BC weights against LeRobot's own `RABCWeights` (lerobot 0.4.4).
//!
//! `tests/fixtures/rabc_golden.json` is written by
//! `models/tools/make_rabc_golden.py`, which runs LeRobot's code on progress
//! series that LeRobot's SARM model produced for the three committed ALOHA
//! episodes (their `golden.json`), with H = 50 and H = 5, both heads, and a
//! case with NaN progress. The runtime's dataset-wide rule (what `sarm sink`
//! writes) must give the same deltas and weights, bit for bit, and the
//! online rule the same deltas.

use std::path::PathBuf;

use sarm_runtime::rabc::{dataset_weights, OnlineRabc, RabcParams};
use serde_json::Value;

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/rabc_golden.json");
    let text = std::fs::read_to_string(&path).expect("the RA-BC golden fixture exists");
    serde_json::from_str(&text).expect("the fixture is JSON")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_u64().expect("an index") as usize)
        .collect()
}

#[test]
fn sink_weights_equal_lerobot_rabc() {
    let fx = fixture();
    let cases = fx["cases"].as_array().expect("cases");
    assert!(cases.len() >= 5, "the fixture has all its cases");
    for case in cases {
        let name = case["name"].as_str().expect("a name");
        let params = RabcParams {
            chunk_size: case["chunk_size"].as_u64().expect("chunk_size") as usize,
            kappa: case["kappa"].as_f64().expect("kappa"),
            epsilon: case["epsilon"].as_f64().expect("epsilon"),
        };
        let episodes = case["episodes"].as_array().expect("episodes");
        let progress: Vec<Vec<f32>> = episodes.iter().map(|e| f32s(&e["progress"])).collect();
        let views: Vec<&[f32]> = progress.iter().map(|p| p.as_slice()).collect();
        let (stats, weights) = dataset_weights(&views, &params);

        // LeRobot stores its statistics after the clamps.
        let mu = stats.mean.max(0.0);
        let sigma = stats.std.max(params.epsilon);
        let want_mu = case["delta_mean"].as_f64().expect("delta_mean");
        let want_sigma = case["delta_std"].as_f64().expect("delta_std");
        assert!(
            (mu - want_mu).abs() < 1e-12,
            "{name}: mean {mu} vs {want_mu}"
        );
        assert!(
            (sigma - want_sigma).abs() < 1e-12,
            "{name}: std {sigma} vs {want_sigma}"
        );

        let mut frames = 0;
        for (e, got) in episodes.iter().zip(&weights) {
            let want_future = usizes(&e["future_frame_index"]);
            let want_delta = f32s(&e["delta"]);
            let want_weight = f32s(&e["weight"]);
            assert_eq!(got.len(), want_weight.len(), "{name}: frames per episode");
            for (i, g) in got.iter().enumerate() {
                assert_eq!(
                    g.future_index, want_future[i],
                    "{name}: future of frame {i}"
                );
                assert!(
                    g.delta.to_bits() == want_delta[i].to_bits()
                        || (g.delta.is_nan() && want_delta[i].is_nan()),
                    "{name}: delta of frame {i}: {} vs {}",
                    g.delta,
                    want_delta[i]
                );
                assert_eq!(
                    g.weight.to_bits(),
                    want_weight[i].to_bits(),
                    "{name}: weight of frame {i}: {} vs {}",
                    g.weight,
                    want_weight[i]
                );
                frames += 1;
            }
        }
        let counts = &case["counts"];
        assert_eq!(frames, counts["frames"].as_u64().expect("frames"), "{name}");
        // The cases cover every band of the rule.
        if name == "sparse_h5_nan" {
            assert!(counts["delta_nan"].as_u64() > Some(0));
        }
        assert!(
            counts["weight_soft"].as_u64() > Some(0),
            "{name}: no soft weight"
        );
        assert!(
            counts["weight_0"].as_u64() > Some(0),
            "{name}: no zero weight"
        );

        // On the robot: the same deltas, emitted H frames late or at the end.
        let mut online = OnlineRabc::new(params).expect("valid parameters");
        for (p, want) in progress.iter().zip(&weights) {
            let mut got = Vec::new();
            for &v in p {
                online.push(v, &mut |w| got.push(w));
            }
            online.finish(&mut |w| got.push(w));
            let deltas: Vec<u32> = got.iter().map(|w| w.delta.to_bits()).collect();
            let wanted: Vec<u32> = want.iter().map(|w| w.delta.to_bits()).collect();
            assert_eq!(deltas, wanted, "{name}: online deltas");
        }
    }
}
