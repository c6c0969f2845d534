//! Stage + within-stage progress (tau) to global progress, as LeRobot's
//! `normalize_stage_tau` computes it: global = P[k-1] + prior[k] * tau, where
//! the breakpoints P are the cumulative temporal proportions of the stages.

/// Cumulative breakpoints `[0, p0, p0+p1, ..., 1]`, one more than the stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakpoints(Vec<f64>);

impl Breakpoints {
    /// LeRobot's `temporal_proportions_to_breakpoints`: proportions are
    /// renormalised when they do not sum to 1 (beyond 1e-6) and the last
    /// breakpoint is pinned to exactly 1.
    ///
    /// The error is a description of the offending values.
    pub fn from_proportions(proportions: &[f64]) -> Result<Self, String> {
        if proportions.is_empty() {
            return Err("no proportions".into());
        }
        if proportions.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err(format!("{proportions:?}"));
        }
        let total: f64 = proportions.iter().sum();
        if total <= 0.0 {
            return Err(format!("{proportions:?} (sum {total})"));
        }
        let scale = if (total - 1.0).abs() > 1e-6 {
            total
        } else {
            1.0
        };
        let mut points = Vec::with_capacity(proportions.len() + 1);
        points.push(0.0);
        let mut cumsum = 0.0;
        for p in proportions {
            cumsum += p / scale;
            points.push(cumsum);
        }
        if let Some(last) = points.last_mut() {
            *last = 1.0;
        }
        Ok(Breakpoints(points))
    }

    pub fn num_stages(&self) -> usize {
        self.0.len() - 1
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }

    /// Global progress in [0, 1] for a predicted stage and its tau.
    ///
    /// Follows LeRobot's tensor path in float32: the raw reward `stage + tau`
    /// is formed first and the stage interval is re-derived from it, so a tau
    /// that rounds to 1.0 lands on the next breakpoint exactly as in PyTorch.
    pub fn progress(&self, stage: usize, tau: f32) -> f32 {
        let raw = stage as f32 + tau;
        let n = self.num_stages();
        if raw.is_nan() {
            return f32::NAN;
        }
        if raw >= n as f32 {
            return 1.0;
        }
        if raw < 0.0 {
            return 0.0;
        }
        // floor of a value in [0, n): the interval i with i <= raw < i + 1.
        let i = (raw.floor() as usize).min(n - 1);
        let lo = self.0[i] as f32;
        let width = (self.0[i + 1] - self.0[i]) as f32;
        let within = raw - i as f32;
        (lo + within * width).clamp(0.0, 1.0)
    }
}

/// Softmax over `logits` into `probs`; returns (argmax, its probability).
///
/// Ties resolve to the lowest index, as `torch.argmax` does on CPU.
pub fn softmax_argmax(logits: &[f32], probs: &mut [f32]) -> (usize, f32) {
    debug_assert_eq!(logits.len(), probs.len());
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (p, l) in probs.iter_mut().zip(logits) {
        *p = (l - max).exp();
        sum += *p;
    }
    let mut best = 0;
    for i in 0..probs.len() {
        probs[i] /= sum;
        if probs[i] > probs[best] {
            best = i;
        }
    }
    (best, probs[best])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakpoints_are_cumulative_and_pinned() {
        let b = Breakpoints::from_proportions(&[0.2, 0.3, 0.5]).unwrap();
        assert_eq!(b.as_slice(), &[0.0, 0.2, 0.5, 1.0]);
        // Unnormalised proportions are rescaled, as in LeRobot.
        let b = Breakpoints::from_proportions(&[1.0, 1.0, 2.0]).unwrap();
        assert_eq!(b.as_slice(), &[0.0, 0.25, 0.5, 1.0]);
    }

    #[test]
    fn progress_formula() {
        let b = Breakpoints::from_proportions(&[0.2, 0.3, 0.5]).unwrap();
        assert!((b.progress(0, 0.5) - 0.1).abs() < 1e-6);
        assert!((b.progress(1, 0.5) - 0.35).abs() < 1e-6);
        assert!((b.progress(2, 0.0) - 0.5).abs() < 1e-6);
        // tau saturating at 1 moves to the next breakpoint; the last stage caps at 1.
        assert!((b.progress(0, 1.0) - 0.2).abs() < 1e-6);
        assert_eq!(b.progress(2, 1.0), 1.0);
    }

    #[test]
    fn bad_proportions_are_refused() {
        assert!(Breakpoints::from_proportions(&[]).is_err());
        assert!(Breakpoints::from_proportions(&[0.0, 0.0]).is_err());
        assert!(Breakpoints::from_proportions(&[0.5, f64::NAN]).is_err());
        assert!(Breakpoints::from_proportions(&[-0.1, 1.1]).is_err());
    }

    #[test]
    fn softmax_picks_first_maximum() {
        let mut p = [0.0; 3];
        let (k, c) = softmax_argmax(&[1.0, 3.0, 3.0], &mut p);
        assert_eq!(k, 1);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((c - p[1]).abs() < 1e-7);
    }
}
