//! The policy's model calls on a thread of their own, so that a control
//! tick waits for a chunk only until its deadline.
//!
//! The tick hands the observation (its decoded frame and joint state,
//! copied into buffers that travel with the job and come back with the
//! chunk, so nothing is allocated per call) to the thread and waits up to
//! the deadline. A call that finishes in time serves at the same tick, as
//! LeRobot's `select_action` does; a late one leaves the tick without an
//! action (the safety layer holds, and latches a fault if it lasts) and its
//! chunk serves from the tick it arrives at, its earlier rows skipped.
//! Meanwhile the ticks keep publishing at the control rate.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use image::RgbImage;
use sarm_runtime::policy::{CallTimings, Frame, Observation, PolicyModel};

/// One model call's inputs and, once done, its chunk.
pub struct Job {
    /// The tick the observation is from.
    pub tick: u64,
    /// The policy's episode when it was asked (a chunk from before a reset
    /// is dropped).
    pub generation: u64,
    pub rgb: RgbImage,
    pub state: Vec<f32>,
    /// The normalised chunk (`chunk_size * A`), valid when `result` is Ok.
    pub chunk: Vec<f32>,
    pub result: Result<CallTimings, String>,
}

/// The model's thread and the one job that is either here (idle) or there.
pub struct InferenceThread {
    jobs: Option<Sender<Job>>,
    done: Receiver<Job>,
    /// The job's buffers while no call is in flight.
    idle: Option<Job>,
    thread: Option<JoinHandle<()>>,
}

impl InferenceThread {
    /// Moves `model` to its own thread. `state_len` and `chunk_len` size
    /// the job's buffers.
    pub fn start(
        mut model: PolicyModel,
        state_len: usize,
        chunk_len: usize,
    ) -> std::io::Result<Self> {
        let (jobs, job_rx) = bounded::<Job>(1);
        let (done_tx, done) = bounded::<Job>(1);
        let thread = std::thread::Builder::new()
            .name("sarm-policy-infer".into())
            .spawn(move || {
                for mut job in job_rx {
                    let frames = [Frame::from(&job.rgb)];
                    let obs = Observation {
                        frames: &frames,
                        state: &job.state,
                        environment_state: &[],
                    };
                    job.result = model.infer(&obs).map_err(|e| e.to_string());
                    if job.result.is_ok() {
                        // The graph's output was checked against the chunk
                        // size at load; a mismatch is an error, not a panic.
                        match model.chunk() {
                            c if c.len() == job.chunk.len() => job.chunk.copy_from_slice(c),
                            c => {
                                job.result = Err(format!(
                                    "the model returned {} chunk values, {} expected",
                                    c.len(),
                                    job.chunk.len()
                                ))
                            }
                        }
                    }
                    if done_tx.send(job).is_err() {
                        break;
                    }
                }
            })?;
        Ok(InferenceThread {
            jobs: Some(jobs),
            done,
            idle: Some(Job {
                tick: 0,
                generation: 0,
                rgb: RgbImage::new(1, 1),
                state: vec![0.0; state_len],
                chunk: vec![0.0; chunk_len],
                result: Ok(CallTimings::default()),
            }),
            thread: Some(thread),
        })
    }

    /// Whether a call is in flight.
    pub fn busy(&self) -> bool {
        self.idle.is_none()
    }

    /// Starts a call on this observation; false when one is in flight (or
    /// the thread is gone).
    pub fn submit(&mut self, tick: u64, generation: u64, rgb: &RgbImage, state: &[f32]) -> bool {
        let (Some(mut job), Some(jobs)) = (self.idle.take(), self.jobs.as_ref()) else {
            return false;
        };
        job.tick = tick;
        job.generation = generation;
        if job.rgb.dimensions() == rgb.dimensions() {
            job.rgb.copy_from_slice(rgb);
        } else {
            // A new camera size: the one allocation until it changes again.
            job.rgb = rgb.clone();
        }
        job.state.copy_from_slice(state);
        match jobs.try_send(job) {
            Ok(()) => true,
            Err(e) => {
                self.idle = Some(e.into_inner());
                false
            }
        }
    }

    /// The finished call, waiting up to `timeout` for it; `None` when none
    /// is in flight or it is not done yet. Hand the job back with
    /// [`Self::recycle`].
    pub fn finished(&mut self, timeout: Duration) -> Option<Job> {
        if !self.busy() {
            return None;
        }
        if timeout.is_zero() {
            self.done.try_recv().ok()
        } else {
            // Timed out, or the thread is gone (then the job stays lost and
            // `busy` stays true: the ticks hold and the layer latches).
            self.done.recv_timeout(timeout).ok()
        }
    }

    /// The job's buffers for the next call.
    pub fn recycle(&mut self, job: Job) {
        self.idle = Some(job);
    }
}

impl Drop for InferenceThread {
    fn drop(&mut self) {
        // Closing the job channel ends the thread after its current call.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
