//! Camera frames of a LeRobot dataset, picked from its mp4 exactly as
//! LeRobot 0.4.4 picks them with its default decoder (torchcodec,
//! `seek_mode="approximate"`):
//!
//! 1. the query time is `from_timestamp + timestamp` (the episode's offset
//!    in the shared mp4 plus the frame's float32 timestamp);
//! 2. it becomes a frame index `round(t * fps)` (Python's round, half to
//!    even) with `fps` the stream's frame rate from the header;
//! 3. the index becomes a presentation time `round(index / fps / time_base)`
//!    and the frame returned is the first decoded frame whose pts is at or
//!    after it;
//! 4. that frame's time must be within `tolerance_s` (1e-4 s by default) of
//!    the query, or LeRobot raises `FrameTimestampError` (here: the episode
//!    is reported bad).
//!
//! Pixels are converted to RGB24 as torchcodec does on the CPU: swscale,
//! bilinear, the frame's colour matrix. Decoding runs forward once per
//! episode (one seek to the key frame before its first needed frame), so
//! each frame is decoded once; only needed frames are converted.
//!
//! The FFmpeg part needs the `video` cargo feature (system FFmpeg
//! libraries); without it, opening a video says how to build with it.

use std::path::{Path, PathBuf};

use image::RgbImage;

/// LeRobot's `LeRobotDataset(tolerance_s=...)` default.
pub const DEFAULT_TOLERANCE_S: f64 = 1e-4;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error(
        "this sarm was built without video decoding, so it cannot read {path}. Rebuild with \
         `cargo build --release --features sarm-ros/video` (needs FFmpeg's libraries: on \
         Debian/Ubuntu `apt-get install libavcodec-dev libavformat-dev libavutil-dev \
         libswscale-dev libclang-dev pkg-config`)"
    )]
    NotBuilt { path: PathBuf },
    #[error("video file {path} is missing")]
    Missing { path: PathBuf },
    #[error("cannot open video {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: no decoder for its {codec} video (FFmpeg was built without one)")]
    NoDecoder { path: PathBuf, codec: String },
    #[error("{path}: undecodable data near {near_s:.3} s: {message}")]
    Undecodable {
        path: PathBuf,
        near_s: f64,
        message: String,
    },
    #[error(
        "{path}: no frame at {query_s:.6} s (the video ends at {last_s:.6} s): the timestamp is \
         out of the video's range"
    )]
    OutOfRange {
        path: PathBuf,
        query_s: f64,
        last_s: f64,
    },
    #[error(
        "{path}: the frame nearest to {query_s:.6} s is at {found_s:.6} s, {:.6} s away, over \
         LeRobot's tolerance of {tolerance_s} s (FrameTimestampError)",
        (found_s - query_s).abs()
    )]
    Tolerance {
        path: PathBuf,
        query_s: f64,
        found_s: f64,
        tolerance_s: f64,
    },
    /// The consumer of the frames stopped the decoding (its own error).
    #[error("stopped by the frame consumer")]
    Stopped,
}

impl VideoError {
    /// A short kind for counters and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            VideoError::NotBuilt { .. } => "video_not_built",
            VideoError::Missing { .. } => "video_missing",
            VideoError::Open { .. } => "video_unreadable",
            VideoError::NoDecoder { .. } => "video_no_decoder",
            VideoError::Undecodable { .. } => "video_undecodable",
            VideoError::OutOfRange { .. } => "timestamp_out_of_range",
            VideoError::Tolerance { .. } => "timestamp_over_tolerance",
            VideoError::Stopped => "stopped",
        }
    }
}

/// Python's `round` (half to even) of a float, as used by LeRobot.
pub fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// The pts torchcodec seeks to for query time `query_s` (seconds in the
/// file): frame index `round(query * fps)`, then
/// `std::round(index / fps * den / num)` in the stream's time base.
pub fn target_pts(query_s: f64, fps: f64, time_base: (i32, i32)) -> i64 {
    let index = round_half_even(query_s * fps);
    let seconds = index / fps;
    (seconds * time_base.1 as f64 / time_base.0 as f64).round() as i64
}

/// Seconds of a pts, as torchcodec computes them (multiply, then divide).
pub fn pts_seconds(pts: i64, time_base: (i32, i32)) -> f64 {
    pts as f64 * time_base.0 as f64 / time_base.1 as f64
}

/// Resolves queries against frames arriving in presentation order:
/// a query is answered by the first frame whose pts reaches its target.
#[derive(Debug, Clone)]
pub struct FramePicker {
    targets: Vec<i64>,
    queries: Vec<f64>,
    time_base: (i32, i32),
    tolerance_s: f64,
    next: usize,
    last_pts: Option<i64>,
}

impl FramePicker {
    /// `queries`: seconds in the file, ascending.
    pub fn new(queries: &[f64], fps: f64, time_base: (i32, i32), tolerance_s: f64) -> Self {
        FramePicker {
            targets: queries
                .iter()
                .map(|&q| target_pts(q, fps, time_base))
                .collect(),
            queries: queries.to_vec(),
            time_base,
            tolerance_s,
            next: 0,
            last_pts: None,
        }
    }

    /// The pts to seek to before decoding (the first target).
    pub fn first_target(&self) -> Option<i64> {
        self.targets.first().copied()
    }

    pub fn done(&self) -> bool {
        self.next >= self.targets.len()
    }

    /// A decoded frame with `pts`: the queries it answers (a range of
    /// query positions), after the tolerance check.
    pub fn frame(&mut self, pts: i64, path: &Path) -> Result<std::ops::Range<usize>, VideoError> {
        self.last_pts = Some(self.last_pts.map_or(pts, |p| p.max(pts)));
        let start = self.next;
        let found_s = pts_seconds(pts, self.time_base);
        while self.next < self.targets.len() && pts >= self.targets[self.next] {
            let query_s = self.queries[self.next];
            if (found_s - query_s).abs() >= self.tolerance_s {
                return Err(VideoError::Tolerance {
                    path: path.to_path_buf(),
                    query_s,
                    found_s,
                    tolerance_s: self.tolerance_s,
                });
            }
            self.next += 1;
        }
        Ok(start..self.next)
    }

    /// The decoder ran out of frames: every query left is out of range.
    pub fn finish(&self, path: &Path) -> Result<(), VideoError> {
        match self.queries.get(self.next) {
            None => Ok(()),
            Some(&query_s) => Err(VideoError::OutOfRange {
                path: path.to_path_buf(),
                query_s,
                last_s: self
                    .last_pts
                    .map_or(f64::NAN, |p| pts_seconds(p, self.time_base)),
            }),
        }
    }
}

/// Frames of one episode's camera, handed over in query order.
pub trait FrameSource {
    /// Delivers the frame of every query (seconds in the file, ascending)
    /// to `sink(query position, frame)`; `sink` returning false stops the
    /// decoding with [`VideoError::Stopped`].
    fn frames(
        &mut self,
        queries: &[f64],
        tolerance_s: f64,
        sink: &mut dyn FnMut(usize, &RgbImage) -> bool,
    ) -> Result<(), VideoError>;
}

/// An mp4 of a LeRobot dataset, decoded with FFmpeg.
pub struct VideoFile {
    #[cfg(feature = "video")]
    inner: ffmpeg::Decoder,
}

impl VideoFile {
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        if !path.is_file() {
            return Err(VideoError::Missing {
                path: path.to_path_buf(),
            });
        }
        #[cfg(feature = "video")]
        {
            Ok(VideoFile {
                inner: ffmpeg::Decoder::open(path)?,
            })
        }
        #[cfg(not(feature = "video"))]
        {
            Err(VideoError::NotBuilt {
                path: path.to_path_buf(),
            })
        }
    }

    /// Name of the FFmpeg decoder in use (e.g. `libdav1d`).
    pub fn decoder_name(&self) -> String {
        #[cfg(feature = "video")]
        {
            self.inner.decoder_name()
        }
        #[cfg(not(feature = "video"))]
        {
            String::new()
        }
    }
}

impl FrameSource for VideoFile {
    #[allow(unused_variables)]
    fn frames(
        &mut self,
        queries: &[f64],
        tolerance_s: f64,
        sink: &mut dyn FnMut(usize, &RgbImage) -> bool,
    ) -> Result<(), VideoError> {
        #[cfg(feature = "video")]
        {
            self.inner.frames(queries, tolerance_s, sink)
        }
        #[cfg(not(feature = "video"))]
        {
            unreachable!("VideoFile::open fails without the video feature")
        }
    }
}

/// Whether this build decodes videos.
pub const VIDEO_BUILT: bool = cfg!(feature = "video");

#[cfg(feature = "video")]
mod ffmpeg {
    //! The FFmpeg side: demux, decode forward, convert needed frames.

    use std::path::{Path, PathBuf};
    use std::sync::Once;

    use ff::software::scaling;
    use ffmpeg_next as ff;
    use image::RgbImage;

    use super::{FramePicker, VideoError};

    fn init() {
        static INIT: Once = Once::new();
        INIT.call_once(|| {
            // Errors are reported through our own types; keep FFmpeg quiet.
            ff::util::log::set_level(ff::util::log::Level::Fatal);
            let _ = ff::init();
        });
    }

    pub struct Decoder {
        path: PathBuf,
        input: ff::format::context::Input,
        stream: usize,
        time_base: (i32, i32),
        fps: f64,
        decoder: ff::decoder::Video,
        decoder_name: String,
        scaler: Option<(ScalerKey, scaling::Context)>,
        rgb: ff::frame::Video,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct ScalerKey {
        format: ff::format::Pixel,
        width: u32,
        height: u32,
        space: ff::color::Space,
    }

    fn open_error(path: &Path, e: impl std::fmt::Display) -> VideoError {
        VideoError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    impl Decoder {
        pub fn open(path: &Path) -> Result<Self, VideoError> {
            init();
            let input = ff::format::input(path).map_err(|e| open_error(path, e))?;
            let st = input
                .streams()
                .best(ff::media::Type::Video)
                .ok_or_else(|| open_error(path, "no video stream"))?;
            let stream = st.index();
            let tb = st.time_base();
            // torchcodec's averageFpsFromHeader: the stream's r_frame_rate.
            let rate = st.rate();
            let rate = if rate.numerator() > 0 && rate.denominator() > 0 {
                rate
            } else {
                st.avg_frame_rate()
            };
            if rate.numerator() <= 0 || rate.denominator() <= 0 || tb.numerator() <= 0 {
                return Err(open_error(
                    path,
                    "the video stream has no frame rate or time base",
                ));
            }
            let fps = rate.numerator() as f64 / rate.denominator() as f64;
            let params = st.parameters();
            let id = params.id();
            let mut ctx = ff::codec::context::Context::from_parameters(params)
                .map_err(|e| open_error(path, e))?;
            // One thread per decoder: `sarm label --jobs` runs episodes in parallel.
            ctx.set_threading(ff::threading::Config {
                count: 1,
                ..Default::default()
            });
            // FFmpeg's native AV1 decoder needs a hardware accelerator;
            // dav1d (libdav1d) is the software one, then libaom.
            let candidates: Vec<ff::Codec> = if id == ff::codec::Id::AV1 {
                ["libdav1d", "libaom-av1"]
                    .iter()
                    .filter_map(|n| ff::decoder::find_by_name(n))
                    .chain(ff::decoder::find(id))
                    .collect()
            } else {
                ff::decoder::find(id).into_iter().collect()
            };
            let codec = candidates
                .into_iter()
                .next()
                .ok_or_else(|| VideoError::NoDecoder {
                    path: path.to_path_buf(),
                    codec: format!("{id:?}"),
                })?;
            let decoder_name = codec.name().to_string();
            let decoder = ctx
                .decoder()
                .open_as(codec)
                .and_then(|o| o.video())
                .map_err(|e| {
                    open_error(path, format!("opening the {decoder_name} decoder: {e}"))
                })?;
            Ok(Decoder {
                path: path.to_path_buf(),
                input,
                stream,
                time_base: (tb.numerator(), tb.denominator()),
                fps,
                decoder,
                decoder_name,
                scaler: None,
                rgb: ff::frame::Video::empty(),
            })
        }

        pub fn decoder_name(&self) -> String {
            self.decoder_name.clone()
        }

        fn undecodable(&self, near_s: f64, e: impl std::fmt::Display) -> VideoError {
            VideoError::Undecodable {
                path: self.path.clone(),
                near_s,
                message: e.to_string(),
            }
        }

        pub fn frames(
            &mut self,
            queries: &[f64],
            tolerance_s: f64,
            sink: &mut dyn FnMut(usize, &RgbImage) -> bool,
        ) -> Result<(), VideoError> {
            let mut picker = FramePicker::new(queries, self.fps, self.time_base, tolerance_s);
            let Some(first) = picker.first_target() else {
                return Ok(());
            };
            // As torchcodec: seek the stream to the key frame at or before
            // the first target, flush, decode forward.
            // SAFETY: the format context is open and owned by `self.input`;
            // the arguments are plain integers.
            let status = unsafe {
                ff::ffi::avformat_seek_file(
                    self.input.as_mut_ptr(),
                    self.stream as i32,
                    i64::MIN,
                    first,
                    first,
                    0,
                )
            };
            if status < 0 {
                return Err(self.undecodable(
                    super::pts_seconds(first, self.time_base),
                    format!("seek failed: {}", ff::Error::from(status)),
                ));
            }
            self.decoder.flush();
            let mut frame = ff::frame::Video::empty();
            let mut rgb = RgbImage::new(1, 1);
            let mut last_s = super::pts_seconds(first, self.time_base);
            loop {
                let mut packet = ff::Packet::empty();
                let eof = match packet.read(&mut self.input) {
                    Ok(()) => false,
                    Err(ff::Error::Eof) => true,
                    Err(e) => return Err(self.undecodable(last_s, format!("reading: {e}"))),
                };
                if eof {
                    // Drain what the decoder still holds.
                    let _ = self.decoder.send_eof();
                } else {
                    if packet.stream() != self.stream {
                        continue;
                    }
                    if let Some(p) = packet.pts().or(packet.dts()) {
                        last_s = super::pts_seconds(p, self.time_base);
                    }
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        return Err(self.undecodable(last_s, e));
                    }
                }
                loop {
                    match self.decoder.receive_frame(&mut frame) {
                        Ok(()) => {}
                        Err(ff::Error::Eof) => return picker.finish(&self.path),
                        Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                            break
                        }
                        Err(e) => return Err(self.undecodable(last_s, e)),
                    }
                    let Some(pts) = frame.pts().or(frame.timestamp()) else {
                        continue;
                    };
                    let answered = picker.frame(pts, &self.path)?;
                    if answered.is_empty() {
                        continue;
                    }
                    self.convert_to_rgb(&frame, &mut rgb)?;
                    for q in answered {
                        if !sink(q, &rgb) {
                            return Err(VideoError::Stopped);
                        }
                    }
                    if picker.done() {
                        return Ok(());
                    }
                }
                if eof {
                    return picker.finish(&self.path);
                }
            }
        }

        /// RGB24 as torchcodec's CPU path: swscale, SWS_BILINEAR, the
        /// frame's colour matrix for input and output, default ranges.
        fn convert_to_rgb(
            &mut self,
            frame: &ff::frame::Video,
            out: &mut RgbImage,
        ) -> Result<(), VideoError> {
            let key = ScalerKey {
                format: frame.format(),
                width: frame.width(),
                height: frame.height(),
                space: frame.color_space(),
            };
            if self.scaler.as_ref().map(|(k, _)| *k) != Some(key) {
                let mut ctx = scaling::Context::get(
                    key.format,
                    key.width,
                    key.height,
                    ff::format::Pixel::RGB24,
                    key.width,
                    key.height,
                    scaling::Flags::BILINEAR,
                )
                .map_err(|e| self.undecodable(0.0, format!("colour conversion: {e}")))?;
                // SAFETY: the context was just created; the pointers come from
                // swscale itself (sws_getColorspaceDetails fills them with its
                // own tables) and are only passed back to it.
                unsafe {
                    let sws = ctx.as_mut_ptr();
                    let mut inv_table: *mut i32 = std::ptr::null_mut();
                    let mut table: *mut i32 = std::ptr::null_mut();
                    let (mut src_range, mut dst_range) = (0, 0);
                    let (mut brightness, mut contrast, mut saturation) = (0, 0, 0);
                    let ok = ff::ffi::sws_getColorspaceDetails(
                        sws,
                        &mut inv_table,
                        &mut src_range,
                        &mut table,
                        &mut dst_range,
                        &mut brightness,
                        &mut contrast,
                        &mut saturation,
                    );
                    if ok != -1 {
                        let coefficients = ff::ffi::sws_getCoefficients(
                            ff::ffi::AVColorSpace::from(key.space) as i32,
                        );
                        ff::ffi::sws_setColorspaceDetails(
                            sws,
                            coefficients,
                            src_range,
                            coefficients,
                            dst_range,
                            brightness,
                            contrast,
                            saturation,
                        );
                    }
                }
                self.scaler = Some((key, ctx));
            }
            let Some((_, ctx)) = self.scaler.as_mut() else {
                return Err(self.undecodable(0.0, "no colour converter"));
            };
            ctx.run(frame, &mut self.rgb)
                .map_err(|e| VideoError::Undecodable {
                    path: self.path.clone(),
                    near_s: 0.0,
                    message: format!("colour conversion: {e}"),
                })?;
            let (w, h) = (key.width, key.height);
            if out.width() != w || out.height() != h {
                *out = RgbImage::new(w, h);
            }
            let stride = self.rgb.stride(0);
            let data = self.rgb.data(0);
            let row = w as usize * 3;
            for (y, dst) in out.chunks_exact_mut(row).enumerate() {
                dst.copy_from_slice(&data[y * stride..y * stride + row]);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_is_pythons() {
        for (x, want) in [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, 0.0),
            (2.4999, 2.0),
            (3.7, 4.0),
        ] {
            assert_eq!(round_half_even(x), want, "{x}");
        }
    }

    #[test]
    fn targets_follow_torchcodec() {
        // 50 fps, time base 1/12800 (what LeRobot's mp4s get): frame k at 256 k.
        let tb = (1, 12800);
        let q = 3.0f64 + (0.74f32 as f64); // from_timestamp + float32 timestamp
        assert_eq!(target_pts(q, 50.0, tb), 187 * 256);
        assert_eq!(pts_seconds(187 * 256, tb), 3.74);
    }

    #[test]
    fn the_first_frame_at_or_after_the_target_answers() {
        let tb = (1, 1000);
        let path = Path::new("v.mp4");
        // queries at 0.0, 0.02, 0.02 (repeated), 0.06 at 50 fps
        let mut p = FramePicker::new(&[0.0, 0.02, 0.02, 0.06], 50.0, tb, 1e-4);
        assert_eq!(p.first_target(), Some(0));
        assert_eq!(p.frame(0, path).unwrap(), 0..1);
        assert_eq!(p.frame(20, path).unwrap(), 1..3);
        assert_eq!(p.frame(40, path).unwrap(), 3..3);
        assert!(!p.done());
        assert_eq!(p.frame(60, path).unwrap(), 3..4);
        assert!(p.done());
        p.finish(path).unwrap();
    }

    #[test]
    fn a_frame_too_far_from_its_query_is_refused() {
        let tb = (1, 1000);
        let path = Path::new("v.mp4");
        // frame 2 is missing from the file: the query at 0.04 gets the frame at 0.06
        let mut p = FramePicker::new(&[0.04], 50.0, tb, 1e-4);
        assert_eq!(p.frame(20, path).unwrap(), 0..0);
        match p.frame(60, path) {
            Err(VideoError::Tolerance {
                found_s, query_s, ..
            }) => {
                assert_eq!((found_s, query_s), (0.06, 0.04));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn queries_past_the_last_frame_are_out_of_range() {
        let tb = (1, 1000);
        let path = Path::new("v.mp4");
        let mut p = FramePicker::new(&[0.0, 9.0], 50.0, tb, 1e-4);
        assert_eq!(p.frame(0, path).unwrap(), 0..1);
        assert_eq!(p.frame(20, path).unwrap(), 1..1);
        assert!(matches!(
            p.finish(path),
            Err(VideoError::OutOfRange { query_s, last_s, .. }) if query_s == 9.0 && last_s == 0.02
        ));
    }

    #[test]
    fn without_the_feature_opening_says_how_to_build() {
        let dir = std::env::temp_dir().join(format!("sarm-video-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.mp4");
        std::fs::write(&p, b"not a video").unwrap();
        let e = VideoFile::open(&p).err().unwrap();
        if VIDEO_BUILT {
            assert!(matches!(e, VideoError::Open { .. }), "{e}");
        } else {
            assert!(e.to_string().contains("--features sarm-ros/video"), "{e}");
        }
        assert!(matches!(
            VideoFile::open(&dir.join("missing.mp4")),
            Err(VideoError::Missing { .. })
        ));
    }
}
