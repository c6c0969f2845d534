//! One control tick's observation -> the graph's normalised input tensors,
//! as LeRobot's `prepare_observation_for_inference` and pre-processor do,
//! after the bundle's resize rule:
//!
//! - camera frame (RGB8, any size) -> stretched to the model's size with
//!   the antialiased bilinear filter on f32 pixels (no rounding; a frame of
//!   the model's size is not resampled) -> `x / pixel_divisor` -> the
//!   per-channel normalisation -> CHW;
//! - joint positions (f32, in the bundle's state order) -> normalisation.
//!
//! Buffers are allocated once; a tick writes straight into the graph's
//! input tensors.

use image::RgbImage;

use super::bundle::{CameraInput, PolicyBundle, StateInput, VectorInput};
use crate::bundle::manifest::{ResizeFilter, ResizeRule};
use crate::preprocess::{ImageError, Resampler};

/// A camera frame: interleaved RGB8, row-major, `3 * width * height` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub width: u32,
    pub height: u32,
    pub rgb: &'a [u8],
}

impl<'a> From<&'a RgbImage> for Frame<'a> {
    fn from(img: &'a RgbImage) -> Self {
        Frame {
            width: img.width(),
            height: img.height(),
            rgb: img.as_raw(),
        }
    }
}

/// What the policy sees at one control tick.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// One frame per camera, in the bundle's camera order
    /// ([`super::PolicyStepper::cameras`]).
    pub frames: &'a [Frame<'a>],
    /// Joint positions in the bundle's state order
    /// ([`super::PolicyStepper::state_names`]), a JointState's f64 values
    /// cast to f32; empty for a policy without a state input.
    pub state: &'a [f32],
    /// The environment state, for policies with one; empty otherwise.
    pub environment_state: &'a [f32],
}

/// Why an observation cannot be fed to the policy.
#[derive(Debug, thiserror::Error)]
pub enum ObservationError {
    #[error("{found} camera frames given, the policy takes {expected} ({cameras:?})")]
    Frames {
        expected: usize,
        found: usize,
        cameras: Vec<String>,
    },
    #[error("camera {camera}: {source}")]
    Image {
        camera: String,
        #[source]
        source: ImageError,
    },
    #[error("{input}: {found} values given, the policy takes {expected}")]
    Length {
        input: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{input}: value {index} ({name}) is not finite: {value}")]
    NotFinite {
        input: &'static str,
        index: usize,
        name: String,
        value: f32,
    },
}

const STATE: &str = "joint state";
const ENVIRONMENT: &str = "environment state";

struct CameraPrep {
    spec: CameraInput,
    resampler: Resampler,
}

/// Preallocated observation preparation for one policy bundle.
pub struct ObservationPrep {
    state: Option<StateInput>,
    environment: Option<VectorInput>,
    cameras: Vec<CameraPrep>,
}

impl std::fmt::Debug for ObservationPrep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservationPrep")
            .field("state", &self.state.as_ref().map(|s| s.names.len()))
            .field("environment", &self.environment.as_ref().map(|e| e.len))
            .field(
                "cameras",
                &self
                    .cameras
                    .iter()
                    .map(|c| c.spec.camera.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ObservationPrep {
    pub fn new(bundle: &PolicyBundle) -> Self {
        ObservationPrep {
            state: bundle.state.clone(),
            environment: bundle.environment_state.clone(),
            cameras: bundle
                .cameras
                .iter()
                .map(|c| CameraPrep {
                    resampler: Resampler::new(
                        ResizeRule::Stretch,
                        ResizeFilter::Bilinear,
                        c.width,
                        c.height,
                    ),
                    spec: c.clone(),
                })
                .collect(),
        }
    }

    /// Number of graph inputs written, in graph order: state, environment
    /// state, then one per camera.
    pub fn input_count(&self) -> usize {
        self.state.is_some() as usize + self.environment.is_some() as usize + self.cameras.len()
    }

    /// Checks `obs` without writing anything (lengths, finite values).
    pub fn check(&self, obs: &Observation<'_>) -> Result<(), ObservationError> {
        if obs.frames.len() != self.cameras.len() {
            return Err(ObservationError::Frames {
                expected: self.cameras.len(),
                found: obs.frames.len(),
                cameras: self.cameras.iter().map(|c| c.spec.camera.clone()).collect(),
            });
        }
        let names = self.state.as_ref().map(|s| s.names.as_slice());
        check_vector(STATE, names, names.map_or(0, <[String]>::len), obs.state)?;
        let env_len = self.environment.as_ref().map_or(0, |e| e.len);
        check_vector(ENVIRONMENT, None, env_len, obs.environment_state)?;
        Ok(())
    }

    /// Writes the normalised tensors of `obs` into `inputs` (the graph's
    /// input buffers, in graph order).
    pub fn write(
        &mut self,
        obs: &Observation<'_>,
        inputs: &mut [&mut [f32]],
    ) -> Result<(), ObservationError> {
        self.check(obs)?;
        let mut ix = 0;
        if let Some(s) = &self.state {
            s.normalization.normalize_into(obs.state, inputs[ix]);
            ix += 1;
        }
        if let Some(e) = &self.environment {
            e.normalization
                .normalize_into(obs.environment_state, inputs[ix]);
            ix += 1;
        }
        for (cam, frame) in self.cameras.iter_mut().zip(obs.frames) {
            cam.write(frame, inputs[ix])?;
            ix += 1;
        }
        Ok(())
    }
}

fn check_vector(
    input: &'static str,
    names: Option<&[String]>,
    expected: usize,
    values: &[f32],
) -> Result<(), ObservationError> {
    if values.len() != expected {
        return Err(ObservationError::Length {
            input,
            expected,
            found: values.len(),
        });
    }
    if let Some((index, value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ObservationError::NotFinite {
            input,
            index,
            name: names
                .and_then(|n| n.get(index))
                .cloned()
                .unwrap_or_else(|| format!("#{index}")),
            value: *value,
        });
    }
    Ok(())
}

impl CameraPrep {
    /// LeRobot: `(x / divisor - mean) / (std + eps)` per channel (each
    /// operation rounded to f32, as torch's elementwise ops), HWC -> CHW.
    fn write(&mut self, frame: &Frame<'_>, out: &mut [f32]) -> Result<(), ObservationError> {
        let spec = &self.spec;
        let image_err = |source| ObservationError::Image {
            camera: spec.camera.clone(),
            source,
        };
        let (w, h) = (spec.width as usize, spec.height as usize);
        let plane = w * h;
        let divisor = spec.pixel_divisor;
        let norm = &spec.normalization;
        let mut put = |i: usize, px: [f32; 3]| {
            for (c, v) in px.into_iter().enumerate() {
                out[c * plane + i] = norm.normalize(c, v / divisor);
            }
        };
        if (frame.width, frame.height) == (spec.width, spec.height) {
            // The model's size: no resampling (LeRobot sees the frame as is).
            let expected = 3 * plane;
            if frame.rgb.len() != expected {
                return Err(image_err(ImageError::Length {
                    width: frame.width,
                    height: frame.height,
                    expected,
                    found: frame.rgb.len(),
                }));
            }
            for (i, px) in frame.rgb.chunks_exact(3).enumerate() {
                put(i, [px[0] as f32, px[1] as f32, px[2] as f32]);
            }
        } else {
            let resampled = self
                .resampler
                .run(frame.width, frame.height, frame.rgb)
                .map_err(image_err)?;
            for (i, px) in resampled.pixels().enumerate() {
                put(i, px);
            }
        }
        Ok(())
    }
}
