//! LeRobot's policy goldens (`models/<bundle>/golden/`, format in
//! models/tools/README.md "Policy goldens"): `golden.json` plus raw
//! little-endian arrays, each checked against its recorded SHA-256 and size
//! when read.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn act_test_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/act-test")
}

/// One array: values and shape.
#[derive(Debug, Clone)]
pub struct Array<T> {
    pub data: Vec<T>,
    pub shape: Vec<usize>,
}

impl<T: Copy> Array<T> {
    /// Values per leading index.
    pub fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    pub fn row(&self, i: usize) -> &[T] {
        let n = self.row_len();
        &self.data[i * n..(i + 1) * n]
    }
}

pub struct Golden {
    pub dir: PathBuf,
    pub json: Value,
}

impl Golden {
    pub fn load(bundle_dir: &Path) -> Golden {
        let dir = bundle_dir.join("golden");
        let text = std::fs::read_to_string(dir.join("golden.json"))
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        Golden {
            json: serde_json::from_str(&text).expect("golden.json parses"),
            dir,
        }
    }

    fn raw(&self, name: &str, dtype: &str) -> (Vec<u8>, Vec<usize>) {
        let meta = &self.json["arrays"][name];
        assert!(meta.is_object(), "golden has no array {name}");
        assert_eq!(meta["dtype"], dtype, "{name}");
        let path = self.dir.join(meta["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            bytes.len() as u64,
            meta["bytes"].as_u64().unwrap(),
            "{name}"
        );
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, meta["sha256"].as_str().unwrap(), "{name}: SHA-256");
        let shape = meta["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        (bytes, shape)
    }

    pub fn f32(&self, name: &str) -> Array<f32> {
        let (b, shape) = self.raw(name, "f32");
        let data = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Array { data, shape }
    }

    pub fn i32(&self, name: &str) -> Array<i32> {
        let (b, shape) = self.raw(name, "i32");
        let data = b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Array { data, shape }
    }

    pub fn u8(&self, name: &str) -> Array<u8> {
        let (data, shape) = self.raw(name, "u8");
        Array { data, shape }
    }

    pub fn modes(&self) -> &Vec<Value> {
        self.json["modes"].as_array().unwrap()
    }

    pub fn episodes(&self) -> &Vec<Value> {
        self.json["episodes"].as_array().unwrap()
    }

    /// The raw inputs of episode `name`: frames per camera and state.
    pub fn inputs(&self, episode: &str) -> EpisodeInputs {
        let ep = self
            .episodes()
            .iter()
            .find(|e| e["name"] == episode)
            .unwrap_or_else(|| panic!("no episode {episode}"));
        let frames = ep["frames"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(cam, name)| (cam.clone(), self.u8(name.as_str().unwrap())))
            .collect();
        EpisodeInputs {
            steps: ep["steps"].as_u64().unwrap() as usize,
            frames,
            state: self.f32(ep["state"].as_str().unwrap()),
        }
    }
}

pub struct EpisodeInputs {
    pub steps: usize,
    /// (camera, (steps, H, W, 3) u8 RGB).
    pub frames: Vec<(String, Array<u8>)>,
    pub state: Array<f32>,
}

impl EpisodeInputs {
    /// Frame `t` of `camera` as (width, height, rgb).
    pub fn frame(&self, camera: &str, t: usize) -> (u32, u32, &[u8]) {
        let (_, a) = self
            .frames
            .iter()
            .find(|(c, _)| c == camera)
            .unwrap_or_else(|| panic!("no frames for camera {camera}"));
        (a.shape[2] as u32, a.shape[1] as u32, a.row(t))
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
