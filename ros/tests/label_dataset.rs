//! `sarm label --dataset` on LeRobot datasets written by LeRobot 0.4.4's own
//! `LeRobotDataset` API (models/tools/make_dataset_fixture.py), from the
//! project's sim episodes:
//!
//! - `fixtures/lerobot/aloha_av1`: 3 episodes, 50 fps, AV1 (libsvtav1),
//!   episodes 0 and 1 sharing one mp4, episode 2 in a second file;
//! - `fixtures/lerobot/codecs/{libsvtav1,h264,hevc}`: 2 short episodes in
//!   one mp4 each, with `frames.png`, every row's frame as LeRobot's own
//!   decoder returns it;
//! - `fixtures/lerobot/reference/*.parquet`: LeRobot's
//!   `compute_sarm_progress` on aloha_av1 with the test bundle's model
//!   (models/tools/lerobot_label_reference.py), at the dataset's rate
//!   (episode 0) and with a 10 Hz clock (all episodes).
//!
//! Without the `video` feature only the error for a video dataset is tested.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

#[path = "../../runtime/tests/common/backends.rs"]
mod backends;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lerobot")
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sarm-label-ds-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sarm"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[cfg(not(feature = "video"))]
#[test]
fn without_the_video_feature_a_dataset_says_how_to_build() {
    let dir = temp("novideo");
    let out = dir.join("p.parquet");
    let o = sarm(&[
        "label",
        "--dataset",
        fixtures().join("aloha_av1").to_str().unwrap(),
        "--bundle",
        root().join("models/sarm-test").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--episodes",
        "0",
    ]);
    // The episode is reported (not written as zeros), and nothing else could be labelled.
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("--features sarm-ros/video"), "{t}");
    assert!(!out.exists());
}

#[cfg(feature = "video")]
mod video {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use image::RgbImage;
    use sarm_ros::lerobot::video::{FrameSource, VideoFile, DEFAULT_TOLERANCE_S};
    use sarm_ros::lerobot::Dataset;
    use sarm_ros::progress_parquet::{self, ProgressRow};
    use serde_json::Value;

    use super::*;

    /// Largest |progress| difference from LeRobot's reference: the 1e-4 the
    /// bag tests allow in fp32 (measured 1.4e-6 and 1.6e-6 on tract, 6.9e-7
    /// on ort, x86-64; see `parity_*`'s printout).
    const PARITY: f64 = 1e-4;

    /// The test bundle with its clock declared at `fps` (the ONNX files
    /// linked, bundle.toml edited): the same model, windows of other seconds.
    fn bundle_at(fps: f64) -> PathBuf {
        let src = root().join("models/sarm-test");
        let dir = temp(&format!("bundle-{fps}"));
        for e in std::fs::read_dir(&src).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "onnx") {
                std::os::unix::fs::symlink(&p, dir.join(p.file_name().unwrap())).unwrap();
            }
        }
        let manifest = std::fs::read_to_string(src.join("bundle.toml")).unwrap();
        assert_eq!(manifest.matches("\nfps = 30.0\n").count(), 1);
        let manifest = manifest.replace("\nfps = 30.0\n", &format!("\nfps = {fps:.1}\n"));
        std::fs::write(dir.join("bundle.toml"), manifest).unwrap();
        dir
    }

    fn label(dataset: &Path, bundle: &Path, out: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "label",
            "--dataset",
            dataset.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        sarm(&args)
    }

    fn label_ok(dataset: &Path, bundle: &Path, out: &Path, extra: &[&str]) -> String {
        let o = label(dataset, bundle, out, extra);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        t
    }

    fn rows(p: &Path) -> Vec<ProgressRow> {
        progress_parquet::read(p).unwrap().0
    }

    /// Max |progress| difference, after checking both files have the same
    /// rows (index, episode, frame) in the same order.
    fn compare(ours: &[ProgressRow], reference: &[ProgressRow]) -> f64 {
        assert_eq!(ours.len(), reference.len());
        let mut worst = 0.0f64;
        for (a, b) in ours.iter().zip(reference) {
            assert_eq!(
                (a.index, a.episode_index, a.frame_index),
                (b.index, b.episode_index, b.frame_index)
            );
            for (x, y) in [
                (a.progress_sparse, b.progress_sparse),
                (a.progress_dense.unwrap(), b.progress_dense.unwrap()),
            ] {
                assert!(x.is_finite() && y.is_finite());
                worst = worst.max((x - y).abs() as f64);
            }
        }
        worst
    }

    fn png_strip(path: &Path) -> RgbImage {
        image::open(path).unwrap().to_rgb8()
    }

    #[test]
    fn frames_are_lerobots_for_av1_h264_and_hevc() {
        for codec in ["libsvtav1", "h264", "hevc"] {
            let root = fixtures().join("codecs").join(codec);
            let ds = Dataset::open(root.to_str().unwrap()).unwrap();
            let golden = png_strip(&root.join("frames.png"));
            let (w, h) = (128u32, 96u32);
            assert_eq!(golden.width(), w);
            let mut worst = 0u8;
            let mut count = 0;
            let mut decoder = String::new();
            for ep in &ds.episodes {
                let data = ds.read_episode(ep, "observation.state", 14).unwrap();
                let (path, span) = ds.video_file(ep, "observation.images.top").unwrap();
                let mut video = VideoFile::open(&path).unwrap();
                decoder = video.decoder_name();
                let queries: Vec<f64> = data
                    .timestamp
                    .iter()
                    .map(|t| span.from_timestamp + t)
                    .collect();
                video
                    .frames(&queries, DEFAULT_TOLERANCE_S, &mut |q, img| {
                        assert_eq!(img.dimensions(), (w, h));
                        let row = data.index[q] as u32;
                        for y in 0..h {
                            for x in 0..w {
                                let a = img.get_pixel(x, y);
                                let b = golden.get_pixel(x, row * h + y);
                                for c in 0..3 {
                                    worst = worst.max(a[c].abs_diff(b[c]));
                                }
                            }
                        }
                        count += 1;
                        true
                    })
                    .unwrap();
            }
            assert_eq!(count, golden.height() / h);
            println!("{codec} ({decoder}): {count} frames, max |pixel - LeRobot's| = {worst}");
            assert_eq!(worst, 0, "{codec}: decoded pixels differ from LeRobot's");
        }
    }

    fn read_table(p: &Path) -> Value {
        serde_json::from_str(&common::run_python("read_parquet.py", p)).unwrap()
    }

    #[test]
    fn parity_with_lerobot_at_the_datasets_rate() {
        // The test bundle's clock declared at 50 Hz: LeRobot's own rule, every frame scored.
        // (Episode 0 only: LeRobot's reference encodes 13 frames per frame, an hour here.)
        let dir = temp("parity50");
        let out = dir.join("sarm_progress.parquet");
        let bundle = bundle_at(50.0);
        let t = label_ok(
            &fixtures().join("aloha_av1"),
            &bundle,
            &out,
            &["--episodes", "0"],
        );
        assert!(
            t.contains("labelled 1 episodes (316 frames, 316 scored"),
            "{t}"
        );
        // LeRobot's schema, read by pyarrow.
        let table = read_table(&out);
        let cols: Vec<(String, String)> = table["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()))
            .collect();
        let want: Vec<(String, String)> = [
            ("index", "int64"),
            ("episode_index", "int64"),
            ("frame_index", "int64"),
            ("progress_sparse", "float"),
            ("progress_dense", "float"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(cols, want);
        let meta = table["metadata"].as_object().unwrap();
        assert!(meta["reward_model_path"]
            .as_str()
            .unwrap()
            .contains("bundle-50"));
        assert!(
            meta.keys()
                .all(|k| k == "reward_model_path" || k == "ARROW:schema"),
            "{meta:?}"
        );
        let reference = rows(&fixtures().join("reference/sarm-test-50hz-ep0.parquet"));
        let worst = compare(&rows(&out), &reference);
        println!("sarm label --dataset vs LeRobot (50 Hz clock, 316 frames): max |progress diff| {worst:.2e}");
        assert!(worst <= PARITY, "{worst}");
    }

    #[test]
    fn parity_with_lerobot_on_a_slower_clock() {
        // 10 Hz clock on the 50 fps dataset: windows in seconds, every 5th frame scored
        // (+ the last), the rest interpolated; LeRobot with frame_gap x5 and stride 5.
        // Frames encoded 5 per call (the default is 1), so partial batches occur too.
        let dir = temp("parity10");
        let out = dir.join("sarm_progress.parquet");
        let bundle = bundle_at(10.0);
        let t = label_ok(
            &fixtures().join("aloha_av1"),
            &bundle,
            &out,
            &["--encode-batch", "5"],
        );
        // every 5th frame of each episode, plus its last
        let scored: usize = [316usize, 332, 358]
            .iter()
            .map(|n| (n - 1) / 5 + 1 + usize::from((n - 1) % 5 != 0))
            .sum();
        assert!(t.contains(&format!("1006 frames, {scored} scored")), "{t}");
        let ours = rows(&out);
        let reference = rows(&fixtures().join("reference/sarm-test-10hz.parquet"));
        let worst = compare(&ours, &reference);
        println!("sarm label --dataset vs LeRobot (10 Hz clock, 1006 frames): max |progress diff| {worst:.2e}");
        assert!(worst <= PARITY, "{worst}");
        // frame_index is the dataset's; index the dataset's global index.
        let ep2: Vec<&ProgressRow> = ours.iter().filter(|r| r.episode_index == 2).collect();
        assert_eq!(ep2.len(), 358);
        assert_eq!((ep2[0].index, ep2[0].frame_index), (648, 0));
        assert_eq!((ep2[357].index, ep2[357].frame_index), (1005, 357));
    }

    #[test]
    fn parity_with_lerobot_on_onnxruntime() {
        // The dataset path on the `ort` backend (fp32): episode 0 on the 10 Hz clock.
        let Some(ort) = backends::ort() else {
            return;
        };
        let dir = temp("parity-ort");
        let out = dir.join("sarm_progress.parquet");
        let bundle = bundle_at(10.0);
        let lib = ort.describe().library.clone().unwrap();
        let t = label_ok(
            &fixtures().join("aloha_av1"),
            &bundle,
            &out,
            &[
                "--episodes",
                "0",
                "--backend",
                "ort",
                "--ort-library",
                lib.to_str().unwrap(),
            ],
        );
        assert!(t.contains("labelled 1 episodes (316 frames"), "{t}");
        let reference: Vec<ProgressRow> =
            rows(&fixtures().join("reference/sarm-test-10hz.parquet"))
                .into_iter()
                .filter(|r| r.episode_index == 0)
                .collect();
        let worst = compare(&rows(&out), &reference);
        println!("sarm label --dataset --backend ort vs LeRobot (10 Hz clock, 316 frames): max |progress diff| {worst:.2e}");
        assert!(worst <= PARITY, "{worst}");
    }

    /// A full 10 Hz run, computed once per test binary.
    fn full_run() -> &'static (PathBuf, Vec<ProgressRow>) {
        static RUN: std::sync::OnceLock<(PathBuf, Vec<ProgressRow>)> = std::sync::OnceLock::new();
        RUN.get_or_init(|| {
            let dir = temp("full");
            let out = dir.join("full.parquet");
            let bundle = bundle_at(10.0);
            label_ok(
                &fixtures().join("aloha_av1"),
                &bundle,
                &out,
                &["--jobs", "2"],
            );
            (bundle, rows(&out))
        })
    }

    #[test]
    fn a_killed_run_continues_without_redoing_finished_episodes() {
        let (bundle, full) = full_run();
        let dir = temp("resume");
        let out = dir.join("p.parquet");
        let parts = dir.join("p.parquet.parts");
        let ds = fixtures().join("aloha_av1");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sarm"))
            .args(["label", "--dataset", ds.to_str().unwrap(), "--bundle"])
            .arg(bundle)
            .args(["--out", out.to_str().unwrap(), "--jobs", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it (SIGKILL: no cleanup) as soon as its first episode is on disk.
        let first = parts.join("episode-000000.parquet");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !first.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(first.exists(), "the first episode never finished");
        assert!(
            !out.exists(),
            "the run finished before it was killed; the test needs a longer run"
        );
        let done = (0..3)
            .filter(|e| parts.join(format!("episode-{e:06}.parquet")).exists())
            .count();
        assert!(
            (1..3).contains(&done),
            "{done} episodes done before the kill"
        );
        // The same command again: the finished episodes are not redone.
        let t = label_ok(&ds, bundle, &out, &["--jobs", "1"]);
        assert!(
            t.contains(&format!("3 episodes selected, {done} done earlier")),
            "{t}"
        );
        assert!(
            t.contains(&format!("labelled {} episodes", 3 - done)),
            "{t}"
        );
        assert_eq!(&rows(&out), full);
        assert!(
            !parts.exists(),
            "parts are removed once the output is written"
        );
    }

    #[test]
    fn other_settings_do_not_mix_with_an_interrupted_run() {
        let (bundle, _) = full_run();
        let dir = temp("settings");
        let out = dir.join("p.parquet");
        let ds = fixtures().join("aloha_av1");
        label_ok(&ds, bundle, &out, &["--episodes", "0", "--keep-parts"]);
        let part = dir.join("p.parquet.parts/episode-000000.parquet");
        let stamp = std::fs::metadata(&part).unwrap().modified().unwrap();
        // Same settings, more episodes: episode 0 is taken from the parts.
        let t = label_ok(&ds, bundle, &out, &["--episodes", "0..2", "--keep-parts"]);
        assert!(t.contains("2 episodes selected, 1 done earlier"), "{t}");
        assert_eq!(std::fs::metadata(&part).unwrap().modified().unwrap(), stamp);
        // Another stride: refused, then --restart starts over.
        let o = label(&ds, bundle, &out, &["--episodes", "0", "--stride", "2"]);
        assert!(!o.status.success());
        assert!(text(&o).contains("--restart"), "{}", text(&o));
        label_ok(
            &ds,
            bundle,
            &out,
            &["--episodes", "0", "--stride", "2", "--restart"],
        );
    }

    #[test]
    fn shards_merge_into_the_full_run() {
        let (bundle, full) = full_run();
        let dir = temp("shards");
        let ds = fixtures().join("aloha_av1");
        let (a, b) = (dir.join("s1.parquet"), dir.join("s2.parquet"));
        label_ok(&ds, bundle, &a, &["--shard", "1/2"]);
        label_ok(&ds, bundle, &b, &["--shard", "2/2"]);
        // Episode 0 in shard 1, episodes 1 and 2 in shard 2.
        let eps = |p: &Path| {
            let mut e: Vec<i64> = rows(p).iter().map(|r| r.episode_index).collect();
            e.dedup();
            e
        };
        assert_eq!((eps(&a), eps(&b)), (vec![0], vec![1, 2]));
        let merged = dir.join("merged.parquet");
        let o = sarm(&[
            "label",
            "merge",
            "--out",
            merged.to_str().unwrap(),
            b.to_str().unwrap(),
            a.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(&rows(&merged), full);
        let table = read_table(&merged);
        let meta = table["metadata"].as_object().unwrap();
        assert!(!meta.contains_key("sarm_label_shard"), "{meta:?}");
        // A missing shard, or one given twice, is refused.
        let o = sarm(&[
            "label",
            "merge",
            "--out",
            dir.join("x.parquet").to_str().unwrap(),
            a.to_str().unwrap(),
        ]);
        assert!(
            !o.status.success() && text(&o).contains("shards [2] of 2 are missing"),
            "{}",
            text(&o)
        );
        let o = sarm(&[
            "label",
            "merge",
            "--out",
            dir.join("y.parquet").to_str().unwrap(),
            a.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ]);
        assert!(
            !o.status.success() && text(&o).contains("again"),
            "{}",
            text(&o)
        );
        let o = sarm(&[
            "label",
            "merge",
            "--partial",
            "--out",
            dir.join("z.parquet").to_str().unwrap(),
            a.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }

    /// A copy of the fixture to damage.
    fn copy_fixture(tag: &str) -> PathBuf {
        let dst = temp(tag).join("ds");
        copy_dir(&fixtures().join("aloha_av1"), &dst);
        dst
    }

    fn copy_dir(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let p = e.unwrap().path();
            let to = dst.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_dir(&p, &to);
            } else {
                std::fs::copy(&p, &to).unwrap();
            }
        }
    }

    #[test]
    fn bad_episodes_are_reported_and_skipped_or_stop_a_strict_run() {
        let (bundle, full) = full_run();
        let ds = copy_fixture("bad");
        // Episode 1: its frames put 100 s past the end of the shared mp4.
        let o = Command::new(common::interop_python())
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/edit_parquet.py"))
            .arg(ds.join("meta/episodes/chunk-000/file-000.parquet"))
            .args([
                "videos/observation.images.top/from_timestamp",
                "1",
                "106.32",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        // Episode 2: its mp4 cut short (most of its frames are gone; FFmpeg may refuse the
        // whole file, or decode its first part only).
        let mp4 = ds.join("videos/observation.images.top/chunk-000/file-001.mp4");
        let bytes = std::fs::read(&mp4).unwrap();
        std::fs::write(&mp4, &bytes[..bytes.len() * 2 / 5]).unwrap();

        let out = ds.join("../p.parquet");
        let t = label_ok(&ds, bundle, &out, &[]);
        assert!(t.contains("skipped 2 bad episodes"), "{t}");
        assert!(t.contains("episode 1 (timestamp_out_of_range)"), "{t}");
        assert!(
            t.contains("episode 2 (timestamp_out_of_range)")
                || t.contains("episode 2 (video_undecodable)")
                || t.contains("episode 2 (video_unreadable)"),
            "{t}"
        );
        // Only episode 0 is written, exactly as in the clean run; nothing as zero.
        let ours = rows(&out);
        let want: Vec<ProgressRow> = full
            .iter()
            .filter(|r| r.episode_index == 0)
            .cloned()
            .collect();
        assert_eq!(ours, want);
        // The good episode is kept for a rerun once the data is fixed.
        assert!(ds
            .join("../p.parquet.parts/episode-000000.parquet")
            .exists());

        // --strict stops at the first bad episode, with a non-zero status.
        let o = label(
            &ds,
            bundle,
            &ds.join("../q.parquet"),
            &["--strict", "--episodes", "1..3"],
        );
        assert!(!o.status.success());
        assert!(
            text(&o).contains("--strict stops at the first bad episode"),
            "{}",
            text(&o)
        );
        assert!(!ds.join("../q.parquet").exists());

        // A missing video file: the episode names it.
        std::fs::remove_file(&mp4).unwrap();
        let o = label(&ds, bundle, &ds.join("../r.parquet"), &["--episodes", "2"]);
        assert!(!o.status.success());
        let t = text(&o);
        assert!(
            t.contains("video_missing") && t.contains("file-001.mp4"),
            "{t}"
        );
    }

    #[test]
    fn a_repo_id_is_found_in_the_lerobot_cache_and_nothing_is_downloaded() {
        let (bundle, full) = full_run();
        let home = temp("cache");
        std::fs::create_dir_all(home.join("sarm")).unwrap();
        std::os::unix::fs::symlink(fixtures().join("aloha_av1"), home.join("sarm/fixture"))
            .unwrap();
        let out = home.join("p.parquet");
        let o = Command::new(env!("CARGO_BIN_EXE_sarm"))
            .env("HF_LEROBOT_HOME", &home)
            .env_remove("LEROBOT_HOME")
            .args([
                "label",
                "--dataset",
                "sarm/fixture",
                "--episodes",
                "2",
                "--bundle",
            ])
            .arg(bundle)
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let want: Vec<ProgressRow> = full
            .iter()
            .filter(|r| r.episode_index == 2)
            .cloned()
            .collect();
        assert_eq!(rows(&out), want);
        let o = Command::new(env!("CARGO_BIN_EXE_sarm"))
            .env("HF_LEROBOT_HOME", &home)
            .env_remove("LEROBOT_HOME")
            .args(["label", "--dataset", "sarm/not_here", "--bundle"])
            .arg(bundle)
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let t = text(&o);
        assert!(
            t.contains(&home.join("sarm/not_here").display().to_string())
                && t.contains("downloads nothing"),
            "{t}"
        );
    }

    #[test]
    fn keys_tasks_and_selections_are_checked_up_front() {
        let (bundle, _) = full_run();
        let ds = fixtures().join("aloha_av1");
        let out = temp("keys").join("p.parquet");
        let cases: BTreeMap<&str, (Vec<&str>, &str)> = BTreeMap::from([
            (
                "camera",
                (
                    vec!["--camera-key", "observation.images.wrist"],
                    "observation.images.top",
                ),
            ),
            (
                "state",
                (vec!["--state-key", "action"], "observation.state"),
            ),
            ("task", (vec!["--task", "fold the towel"], "fold the towel")),
            (
                "episodes",
                (vec!["--episodes", "7..9"], "no episode selected"),
            ),
        ]);
        for (name, (args, needle)) in cases {
            let o = label(&ds, bundle, &out, &args);
            assert!(!o.status.success(), "{name}");
            assert!(text(&o).contains(needle), "{name}: {}", text(&o));
        }
    }
}
