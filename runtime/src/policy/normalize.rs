//! LeRobot's normalisation (`NormalizerProcessorStep` /
//! `UnnormalizerProcessorStep` in 0.4.4), elementwise in float32 with the
//! same operations in the same order, so the runtime's tensors are
//! LeRobot's bit for bit:
//!
//! | mode | normalise | unnormalise |
//! | --- | --- | --- |
//! | `MEAN_STD` | `(x - mean) / (std + eps)` | `x * std + mean` |
//! | `MIN_MAX` | `2 * (x - min) / d - 1` | `(x + 1) / 2 * d + min` |
//! | `QUANTILES`, `QUANTILE10` | `2 * (x - lo) / d - 1` | `(x + 1) * d / 2 + lo` |
//! | `IDENTITY` | `x` | `x` |
//!
//! with `d = hi - lo`, replaced by `eps` where it is 0. (The quantile modes
//! unnormalise in a different order than `MIN_MAX` in LeRobot's code; the
//! order matters for the last bit, so it is kept.)

use super::manifest::{NormMode, NormalizationSpec};
use crate::bundle::BundleError;

/// One normalisation table, checked and ready to apply (per element, or per
/// channel for images).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    mode: NormMode,
    /// MEAN_STD: mean; the range modes: the low stat.
    offset: Vec<f32>,
    /// MEAN_STD: std; the range modes: `d` (eps where the range is 0).
    scale: Vec<f32>,
    /// MEAN_STD: `std + eps`; unused otherwise.
    denom: Vec<f32>,
}

impl Normalization {
    /// Checks `spec` (manifest key `field`) for `len` elements: the mode's
    /// two stats present with `len` finite values each, no stat of another
    /// mode, a finite eps; MEAN_STD needs `std + eps > 0`, the range modes
    /// `hi >= lo`.
    pub fn new(spec: &NormalizationSpec, len: usize, field: &str) -> Result<Self, BundleError> {
        if !spec.eps.is_finite() || spec.eps < 0.0 {
            return Err(BundleError::mismatch(
                format!("{field}.eps"),
                "a finite value >= 0",
                spec.eps,
            ));
        }
        let wanted = spec.mode.stats();
        for key in NormalizationSpec::STAT_KEYS {
            if spec.stat(key).is_some() && !wanted.contains(&key) {
                return Err(BundleError::mismatch(
                    format!("{field}.{key}"),
                    format!("only the stats of mode {} ({wanted:?})", spec.mode.as_str()),
                    format!("a `{key}` stat"),
                ));
            }
        }
        let mut stats: Vec<&[f32]> = Vec::with_capacity(2);
        for key in wanted {
            let Some(v) = spec.stat(key) else {
                return Err(BundleError::mismatch(
                    format!("{field}.{key}"),
                    format!(
                        "{len} values (mode {} needs {wanted:?})",
                        spec.mode.as_str()
                    ),
                    "no such key",
                ));
            };
            if v.len() != len {
                return Err(BundleError::mismatch(
                    format!("{field}.{key}"),
                    format!("{len} values"),
                    format!("{} values", v.len()),
                ));
            }
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(BundleError::mismatch(
                    format!("{field}.{key}[{i}]"),
                    "a finite value",
                    x,
                ));
            }
            stats.push(v);
        }
        let eps = spec.eps;
        let n = Normalization {
            mode: spec.mode,
            offset: Vec::new(),
            scale: Vec::new(),
            denom: Vec::new(),
        };
        match spec.mode {
            NormMode::Identity => Ok(n),
            NormMode::MeanStd => {
                let (mean, std) = (stats[0], stats[1]);
                let denom: Vec<f32> = std.iter().map(|s| s + eps).collect();
                if let Some((i, d)) = denom.iter().enumerate().find(|(_, d)| **d <= 0.0) {
                    return Err(BundleError::mismatch(
                        format!("{field}.std[{i}]"),
                        "std + eps > 0",
                        format!("std {} + eps {eps} = {d}", std[i]),
                    ));
                }
                Ok(Normalization {
                    offset: mean.to_vec(),
                    scale: std.to_vec(),
                    denom,
                    ..n
                })
            }
            NormMode::MinMax | NormMode::Quantiles | NormMode::Quantile10 => {
                let (lo, hi) = (stats[0], stats[1]);
                let mut scale = Vec::with_capacity(len);
                for (i, (l, h)) in lo.iter().zip(hi).enumerate() {
                    if h < l {
                        return Err(BundleError::mismatch(
                            format!("{field}.{}[{i}]", wanted[1]),
                            format!(">= {}[{i}] = {l}", wanted[0]),
                            h,
                        ));
                    }
                    let d = h - l;
                    scale.push(if d == 0.0 { eps } else { d });
                }
                Ok(Normalization {
                    offset: lo.to_vec(),
                    scale,
                    ..n
                })
            }
        }
    }

    pub fn mode(&self) -> NormMode {
        self.mode
    }

    /// Normalises `x`, element (or channel) `i`.
    #[inline]
    pub fn normalize(&self, i: usize, x: f32) -> f32 {
        match self.mode {
            NormMode::Identity => x,
            NormMode::MeanStd => (x - self.offset[i]) / self.denom[i],
            NormMode::MinMax | NormMode::Quantiles | NormMode::Quantile10 => {
                2.0 * (x - self.offset[i]) / self.scale[i] - 1.0
            }
        }
    }

    /// Unnormalises `x`, element `i`.
    #[inline]
    pub fn unnormalize(&self, i: usize, x: f32) -> f32 {
        match self.mode {
            NormMode::Identity => x,
            NormMode::MeanStd => x * self.scale[i] + self.offset[i],
            NormMode::MinMax => (x + 1.0) / 2.0 * self.scale[i] + self.offset[i],
            NormMode::Quantiles | NormMode::Quantile10 => {
                (x + 1.0) * self.scale[i] / 2.0 + self.offset[i]
            }
        }
    }

    /// Normalises `src` element by element into `dst` (same length).
    pub fn normalize_into(&self, src: &[f32], dst: &mut [f32]) {
        for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
            *d = self.normalize(i, *s);
        }
    }

    /// Unnormalises `src` element by element into `dst` (same length).
    pub fn unnormalize_into(&self, src: &[f32], dst: &mut [f32]) {
        for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
            *d = self.unnormalize(i, *s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> NormalizationSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn mean_std_matches_lerobot_formula() {
        let n = Normalization::new(
            &spec("mode = \"MEAN_STD\"\nmean = [1.0, -2.0]\nstd = [0.5, 0.0]\neps = 1e-8"),
            2,
            "x",
        )
        .unwrap();
        let eps = 1e-8f32;
        assert_eq!(n.normalize(0, 2.0), (2.0 - 1.0) / (0.5 + eps));
        assert_eq!(n.normalize(1, -2.0), 0.0);
        assert_eq!(n.unnormalize(0, 2.0), 2.0 * 0.5 + 1.0);
        // std 0: unnormalise ignores eps (LeRobot: x * std + mean).
        assert_eq!(n.unnormalize(1, 5.0), -2.0);
    }

    #[test]
    fn min_max_zero_range_uses_eps() {
        let n = Normalization::new(
            &spec("mode = \"MIN_MAX\"\nmin = [0.0, 3.0]\nmax = [4.0, 3.0]\neps = 0.5"),
            2,
            "x",
        )
        .unwrap();
        assert_eq!(n.normalize(0, 1.0), 2.0 * 1.0 / 4.0 - 1.0);
        assert_eq!(n.normalize(1, 3.0), -1.0);
        assert_eq!(n.normalize(1, 3.25), 2.0 * 0.25 / 0.5 - 1.0);
        assert_eq!(n.unnormalize(0, 0.0), 2.0);
        assert_eq!(n.unnormalize(1, 1.0), 3.5);
    }

    #[test]
    fn quantiles_unnormalise_in_lerobots_order() {
        let n = Normalization::new(
            &spec("mode = \"QUANTILES\"\nq01 = [0.1]\nq99 = [0.7]\neps = 1e-8"),
            1,
            "x",
        )
        .unwrap();
        let (lo, d) = (0.1f32, 0.7f32 - 0.1f32);
        for x in [-0.3f32, 0.123, 0.9, 1.7] {
            assert_eq!(n.unnormalize(0, x), (x + 1.0) * d / 2.0 + lo);
            assert_eq!(n.normalize(0, x), 2.0 * (x - lo) / d - 1.0);
        }
        let q10 = Normalization::new(
            &spec("mode = \"QUANTILE10\"\nq10 = [-1.0]\nq90 = [1.0]\neps = 1e-8"),
            1,
            "x",
        )
        .unwrap();
        assert_eq!(q10.unnormalize(0, 0.5), 0.5);
    }

    #[test]
    fn identity_passes_through() {
        let n = Normalization::new(&spec("mode = \"IDENTITY\"\neps = 1e-8"), 3, "x").unwrap();
        let mut out = [0.0; 3];
        n.normalize_into(&[1.0, f32::MAX, -0.0], &mut out);
        assert_eq!(out, [1.0, f32::MAX, -0.0]);
    }

    #[test]
    fn bad_tables_name_the_key() {
        let err = |text: &str, len: usize| {
            Normalization::new(&spec(text), len, "action.normalization")
                .unwrap_err()
                .to_string()
        };
        let e = err("mode = \"MEAN_STD\"\nmean = [0.0]\neps = 1e-8", 1);
        assert!(e.contains("action.normalization.std"), "{e}");
        let e = err(
            "mode = \"MEAN_STD\"\nmean = [0.0]\nstd = [1.0, 2.0]\neps = 1e-8",
            1,
        );
        assert!(
            e.contains("action.normalization.mean") || e.contains(".std"),
            "{e}"
        );
        assert!(e.contains("1 values") && e.contains("2 values"), "{e}");
        let e = err(
            "mode = \"MIN_MAX\"\nmin = [0.0]\nmax = [1.0]\nmean = [0.0]\neps = 1e-8",
            1,
        );
        assert!(e.contains("action.normalization.mean"), "{e}");
        let e = err(
            "mode = \"MIN_MAX\"\nmin = [1.0]\nmax = [0.0]\neps = 1e-8",
            1,
        );
        assert!(e.contains("action.normalization.max[0]"), "{e}");
        let e = err(
            "mode = \"MEAN_STD\"\nmean = [0.0]\nstd = [-1.0]\neps = 1e-8",
            1,
        );
        assert!(e.contains("action.normalization.std[0]"), "{e}");
        let e = err(
            "mode = \"MEAN_STD\"\nmean = [nan]\nstd = [1.0]\neps = 1e-8",
            1,
        );
        assert!(e.contains("action.normalization.mean[0]"), "{e}");
        assert!(toml::from_str::<NormalizationSpec>("mode = \"Z\"\neps = 1.0").is_err());
    }
}
