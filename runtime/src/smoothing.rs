//! Confidence-weighted smoothing of progress, as in the SARM paper's
//! reference inference code (window 10, beta 3, frames whose stage confidence
//! is below 0.9 skipped): the output is the confidence^beta-weighted mean of
//! the last accepted values, and a low-confidence frame repeats the previous
//! output instead of moving it.

use heapless::Deque;

/// The longest history the smoother keeps.
pub const MAX_SMOOTHING_WINDOW: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmootherConfig {
    pub window: usize,
    pub beta: f64,
    pub eps: f64,
    pub min_confidence: f64,
}

impl Default for SmootherConfig {
    fn default() -> Self {
        SmootherConfig {
            window: 10,
            beta: 3.0,
            eps: 1e-6,
            min_confidence: 0.9,
        }
    }
}

impl SmootherConfig {
    /// Checks ranges; the error names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.window == 0 || self.window > MAX_SMOOTHING_WINDOW {
            return Err(format!(
                "smoothing.window: expected 1..={MAX_SMOOTHING_WINDOW}, found {}",
                self.window
            ));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(format!(
                "smoothing.beta: expected >= 0, found {}",
                self.beta
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(format!("smoothing.eps: expected > 0, found {}", self.eps));
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!(
                "smoothing.min_confidence: expected 0..=1, found {}",
                self.min_confidence
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct ConfidenceSmoother {
    config: SmootherConfig,
    history: Deque<(f64, f64), MAX_SMOOTHING_WINDOW>,
    last: Option<f64>,
}

impl ConfidenceSmoother {
    pub fn new(config: SmootherConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(ConfidenceSmoother {
            config,
            history: Deque::new(),
            last: None,
        })
    }

    pub fn reset(&mut self) {
        self.history.clear();
        self.last = None;
    }

    fn weighted_mean(&self) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (v, c) in self.history.iter() {
            let w = c.max(self.config.eps).powf(self.config.beta);
            num += w * v;
            den += w;
        }
        num / (den + self.config.eps)
    }

    /// Feeds one prediction; returns the smoothed value.
    pub fn update(&mut self, value: f64, confidence: f64) -> f64 {
        let confidence = if confidence.is_nan() {
            0.0
        } else {
            confidence.clamp(0.0, 1.0)
        };
        if self.last.is_none() {
            self.last = Some(if self.history.is_empty() {
                value
            } else {
                self.weighted_mean()
            });
        }
        if confidence < self.config.min_confidence || !value.is_finite() {
            return self.last.unwrap_or(value);
        }
        if self.history.len() == self.config.window {
            self.history.pop_front();
        }
        // Cannot fail: the length is kept below the window, itself <= capacity.
        let _ = self.history.push_back((value, confidence));
        let smoothed = self.weighted_mean();
        self.last = Some(smoothed);
        smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_confidence_repeats_previous_output() {
        let mut s = ConfidenceSmoother::new(SmootherConfig::default()).unwrap();
        // First value with low confidence: the output is that value itself.
        assert_eq!(s.update(0.3, 0.5), 0.3);
        let a = s.update(0.4, 0.95);
        assert!((a - 0.4).abs() < 1e-5, "{a}");
        assert_eq!(s.update(0.9, 0.1), a);
    }

    #[test]
    fn window_is_bounded() {
        let cfg = SmootherConfig {
            window: 3,
            ..Default::default()
        };
        let mut s = ConfidenceSmoother::new(cfg).unwrap();
        for _ in 0..3 {
            s.update(0.0, 1.0);
        }
        for _ in 0..3 {
            s.update(1.0, 1.0);
        }
        // Only the last three (all 1.0) remain.
        assert!((s.update(1.0, 1.0) - 1.0).abs() < 1e-5);
        assert!(ConfidenceSmoother::new(SmootherConfig {
            window: 0,
            ..Default::default()
        })
        .is_err());
    }
}
