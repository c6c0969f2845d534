//! The model's frame clock: which camera frames the scorer sees.
//!
//! A camera runs faster than the model (50 Hz vs the bundle's fps), so each
//! tick of the model's clock (`first stamp + round(k · period)`) takes the
//! camera frame nearest to it in stamp, ties to the earlier one. Offline
//! (`sarm label`) and live (`sarm run`) use this same type, so both score the
//! same frames. Live, a tick is decided when the first frame stamped at or
//! after it arrives; the frame before it is the only other candidate, so the
//! gate keeps no history beyond it and allocates nothing.

/// For one arriving frame: how many ticks take the previous frame, then
/// how many take this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ticks {
    pub previous: u32,
    pub current: u32,
    /// Ticks whose chosen frame is more than half a period away (a gap in
    /// the camera stream; the frame is still used, as offline).
    pub gaps: u32,
}

/// The frame clock of one episode.
#[derive(Debug, Clone)]
pub struct RateGate {
    period_ns: f64,
    first: Option<i64>,
    /// Index of the next undecided tick.
    next: u64,
    previous: Option<i64>,
}

impl RateGate {
    /// `fps` is the bundle's frame rate (> 0).
    pub fn new(fps: f64) -> Self {
        RateGate {
            period_ns: 1e9 / fps,
            first: None,
            next: 0,
            previous: None,
        }
    }

    fn tick(&self, k: u64) -> i64 {
        self.first.unwrap_or(0) + (k as f64 * self.period_ns).round() as i64
    }

    /// A camera frame stamped `stamp` arrived (stamps must not go backwards;
    /// the caller drops those). Returns the ticks it decides.
    pub fn push(&mut self, stamp: i64) -> Ticks {
        let mut out = Ticks::default();
        if self.first.is_none() {
            self.first = Some(stamp);
        }
        let half = self.period_ns / 2.0;
        loop {
            let t = self.tick(self.next);
            if t > stamp {
                break;
            }
            let take_current = match self.previous {
                None => true,
                Some(p) => (stamp - t).abs() < (t - p).abs(),
            };
            let chosen = if take_current {
                out.current += 1;
                stamp
            } else {
                out.previous += 1;
                self.previous.unwrap_or(stamp)
            };
            if (chosen - t).abs() as f64 > half {
                out.gaps += 1;
            }
            self.next += 1;
        }
        self.previous = Some(stamp);
        out
    }

    /// At the end of the episode: ticks within half a period after the last
    /// frame still take it (as `sarm label` does).
    pub fn finish(&mut self) -> u32 {
        let Some(last) = self.previous else {
            return 0;
        };
        let mut n = 0;
        while self.tick(self.next) as f64 <= last as f64 + self.period_ns / 2.0 {
            n += 1;
            self.next += 1;
        }
        n
    }

    /// Ticks decided so far (= frames the scorer has been given).
    pub fn ticks(&self) -> u64 {
        self.next
    }

    /// Starts a new episode.
    pub fn reset(&mut self) {
        self.first = None;
        self.next = 0;
        self.previous = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    /// The offline rule, written directly: for each tick, the nearest
    /// frame (ties to the earlier), while tick <= last + period/2.
    fn offline(stamps: &[i64], fps: f64) -> Vec<usize> {
        let period = 1e9 / fps;
        let mut out = Vec::new();
        for k in 0.. {
            let t = stamps[0] + (k as f64 * period).round() as i64;
            if t as f64 > *stamps.last().unwrap() as f64 + period / 2.0 {
                break;
            }
            let mut best = 0;
            for (i, s) in stamps.iter().enumerate() {
                if (s - t).abs() < (stamps[best] - t).abs() {
                    best = i;
                }
            }
            out.push(best);
        }
        out
    }

    fn online(stamps: &[i64], fps: f64) -> Vec<usize> {
        let mut g = RateGate::new(fps);
        let mut out = Vec::new();
        for (i, &s) in stamps.iter().enumerate() {
            let t = g.push(s);
            out.extend(std::iter::repeat_n(
                i.saturating_sub(1),
                t.previous as usize,
            ));
            out.extend(std::iter::repeat_n(i, t.current as usize));
        }
        out.extend(std::iter::repeat_n(stamps.len() - 1, g.finish() as usize));
        out
    }

    #[test]
    fn a_50hz_camera_read_at_30fps_matches_the_offline_rule() {
        let stamps: Vec<i64> = (0..200)
            .map(|i| 1_000 * MS + i * 20 * MS + (i % 3) * MS)
            .collect();
        assert_eq!(online(&stamps, 30.0), offline(&stamps, 30.0));
    }

    #[test]
    fn gaps_and_jitter_match_the_offline_rule() {
        let mut stamps = Vec::new();
        let mut t = 5 * MS;
        for i in 0..300i64 {
            t += 7 * MS + (i * 7919 % 23) * MS; // irregular, sometimes long gaps
            stamps.push(t);
        }
        for fps in [10.0, 15.0, 30.0, 50.0, 100.0] {
            assert_eq!(online(&stamps, fps), offline(&stamps, fps), "fps {fps}");
        }
    }

    #[test]
    fn gaps_are_reported() {
        let mut g = RateGate::new(10.0);
        assert_eq!(
            g.push(0),
            Ticks {
                previous: 0,
                current: 1,
                gaps: 0
            }
        );
        // next frame 350 ms later: ticks 100 (prev), 200 (cur, 150 away: gap), 300 (cur)
        let t = g.push(350 * MS);
        assert_eq!((t.previous, t.current), (1, 2));
        assert_eq!(t.gaps, 2);
    }
}
