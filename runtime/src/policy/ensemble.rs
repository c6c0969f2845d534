//! ACT's temporal ensembling exactly as LeRobot implements it
//! (`lerobot.policies.act.modeling_act.ACTTemporalEnsembler`, 0.4.4):
//!
//! - weights `w_i = exp(-coeff * i)`, `i = 0 .. chunk_size-1`: the product
//!   in float32 (torch casts the coefficient), the exponential correctly
//!   rounded to float32; `W_n = w_0 + .. + w_{n-1}` accumulated in double
//!   and rounded to float32 (torch's CPU `cumsum` accumulates float in
//!   double). Both are checked bit for bit against LeRobot's tensors in the
//!   goldens;
//! - per future tick `j` a running average `E[j]` and a count `c[j]`; each
//!   update, for the carried entries, `E = E * W[c-1]`, `E = E + chunk[j] *
//!   w[c]`, `E = E / W[c]` (three float32 operations, in that order, no
//!   fused multiply-add), `c = min(c + 1, chunk_size)`; then the chunk's
//!   last row is appended with `c = 1`; the first entry is returned and
//!   dropped.
//!
//! Storage is a ring of `chunk_size` rows allocated once. Beyond LeRobot,
//! [`TemporalEnsembler::update`] takes a `skip` for a chunk computed from an
//! older observation, and [`TemporalEnsembler::consume`] may run without an
//! update (a late model call: the averages already held keep serving);
//! with `skip = 0` and one update per tick it is LeRobot's algorithm.

/// LeRobot's online temporal ensemble of action chunks (normalised).
#[derive(Debug, Clone)]
pub struct TemporalEnsembler {
    chunk_size: usize,
    dim: usize,
    weights: Vec<f32>,
    cumsum: Vec<f32>,
    avg: Vec<f32>,
    counts: Vec<u32>,
    head: usize,
    len: usize,
    /// The slot consumed last (its values stay until the next update).
    consumed: Option<usize>,
}

/// `w_i = exp(-coeff * i)` as torch computes it in float32.
pub fn ensemble_weights(coeff: f32, chunk_size: usize) -> Vec<f32> {
    (0..chunk_size)
        .map(|i| {
            let x = -coeff * i as f32;
            (x as f64).exp() as f32
        })
        .collect()
}

/// The cumulative sums of `weights`, accumulated in f64 and rounded to f32
/// (torch's CPU `cumsum` of a float tensor).
pub fn ensemble_weights_cumsum(weights: &[f32]) -> Vec<f32> {
    let mut acc = 0f64;
    weights
        .iter()
        .map(|w| {
            acc += *w as f64;
            acc as f32
        })
        .collect()
}

impl TemporalEnsembler {
    /// For chunks of `chunk_size` (>= 1) rows of `dim` values.
    pub fn new(coeff: f32, chunk_size: usize, dim: usize) -> Self {
        let weights = ensemble_weights(coeff, chunk_size);
        let cumsum = ensemble_weights_cumsum(&weights);
        TemporalEnsembler {
            chunk_size,
            dim,
            weights,
            cumsum,
            avg: vec![0.0; chunk_size * dim],
            counts: vec![0; chunk_size],
            head: 0,
            len: 0,
            consumed: None,
        }
    }

    /// LeRobot's `ensemble_weights`.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// LeRobot's `ensemble_weights_cumsum`.
    pub fn weights_cumsum(&self) -> &[f32] {
        &self.cumsum
    }

    /// Future ticks with an average (the ticks that can be served without
    /// another update).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// LeRobot's `reset()`: forget every average.
    pub fn reset(&mut self) {
        self.head = 0;
        self.len = 0;
        self.consumed = None;
    }

    fn slot(&self, j: usize) -> usize {
        (self.head + j) % self.chunk_size
    }

    /// Averages a new chunk (`chunk_size` rows, normalised) into the
    /// ensemble. Row `r` of the chunk is for the `r - skip`-th tick from
    /// now (`skip = 0`: the chunk was computed for this tick, LeRobot).
    pub fn update(&mut self, chunk: &[f32], skip: usize) {
        let (n, dim) = (self.chunk_size, self.dim);
        let carried = self.len.min(n.saturating_sub(skip));
        for j in 0..carried {
            let slot = self.slot(j);
            // Unreachable above chunk_size - 1 (an entry lives fewer ticks
            // than the chunk is long); clamped so an index never panics.
            let c = (self.counts[slot] as usize).clamp(1, n - 1);
            let (w_prev, w, w_next) = (self.cumsum[c - 1], self.weights[c], self.cumsum[c]);
            let row = &chunk[(j + skip) * dim..(j + skip + 1) * dim];
            let avg = &mut self.avg[slot * dim..(slot + 1) * dim];
            for (e, a) in avg.iter_mut().zip(row) {
                let mut v = *e * w_prev;
                v += *a * w;
                v /= w_next;
                *e = v;
            }
            self.counts[slot] = (c as u32 + 1).min(n as u32);
        }
        for j in self.len..n.saturating_sub(skip) {
            let slot = self.slot(j);
            let row = &chunk[(j + skip) * dim..(j + skip + 1) * dim];
            self.avg[slot * dim..(slot + 1) * dim].copy_from_slice(row);
            self.counts[slot] = 1;
            self.len += 1;
        }
        self.consumed = None;
    }

    /// The average for this tick, removed from the ensemble (LeRobot's
    /// "consume the first action"); `None` when nothing is held.
    pub fn consume(&mut self) -> Option<&[f32]> {
        if self.len == 0 {
            return None;
        }
        let slot = self.head;
        self.head = (self.head + 1) % self.chunk_size;
        self.len -= 1;
        self.consumed = Some(slot);
        Some(&self.avg[slot * self.dim..(slot + 1) * self.dim])
    }

    /// The state just before the last [`Self::consume`], entry 0 first:
    /// `(count, average)` per future tick, as LeRobot's
    /// `ensembled_actions_count` and `ensembled_actions` at that moment
    /// (entry 0: how many predictions the returned action averages).
    /// Empty before the first consume after an update.
    pub fn before_consume(&self) -> impl Iterator<Item = (u32, &[f32])> + '_ {
        let (start, n) = match self.consumed {
            Some(slot) => (slot, self.len + 1),
            None => (self.head, 0),
        };
        (0..n).map(move |j| {
            let slot = (start + j) % self.chunk_size;
            (
                self.counts[slot],
                &self.avg[slot * self.dim..(slot + 1) * self.dim],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LeRobot's algorithm written out with a shifting Vec (the docstring's
    /// online average), f32 throughout, for comparison with the ring.
    struct Shifting {
        w: Vec<f32>,
        cs: Vec<f32>,
        e: Vec<f32>,
        c: Vec<usize>,
    }

    impl Shifting {
        // Indexes as LeRobot's formula reads: e[j], c[j] and chunk[j] together.
        #[allow(clippy::needless_range_loop)]
        fn update(&mut self, chunk: &[f32]) -> f32 {
            let n = self.w.len();
            if self.e.is_empty() {
                self.e = chunk.to_vec();
                self.c = vec![1; n];
            } else {
                for j in 0..n - 1 {
                    let c = self.c[j];
                    self.e[j] = (self.e[j] * self.cs[c - 1] + chunk[j] * self.w[c]) / self.cs[c];
                    self.c[j] = (c + 1).min(n);
                }
                self.e.push(chunk[n - 1]);
                self.c.push(1);
            }
            self.c.remove(0);
            self.e.remove(0)
        }
    }

    #[test]
    fn ring_matches_a_shifting_reference() {
        let n = 5;
        let mut ring = TemporalEnsembler::new(0.01, n, 1);
        let w = ensemble_weights(0.01, n);
        let mut reference = Shifting {
            cs: ensemble_weights_cumsum(&w),
            w,
            e: Vec::new(),
            c: Vec::new(),
        };
        for t in 0..40 {
            let chunk: Vec<f32> = (0..n)
                .map(|r| ((t * 7 + r * 3) % 11) as f32 * 0.1)
                .collect();
            ring.update(&chunk, 0);
            let got = ring.consume().unwrap()[0];
            let counts: Vec<u32> = ring.before_consume().map(|(c, _)| c).collect();
            assert_eq!(got, reference.update(&chunk), "tick {t}");
            assert_eq!(counts.len(), n);
            assert_eq!(counts[0] as usize, (t + 1).min(n), "tick {t}");
        }
    }

    #[test]
    fn weights_and_cumsum() {
        let w = ensemble_weights(0.0, 4);
        assert_eq!(w, [1.0; 4]);
        assert_eq!(ensemble_weights_cumsum(&w), [1.0, 2.0, 3.0, 4.0]);
        let w = ensemble_weights(0.5, 3);
        assert_eq!(w[1], (-0.5f64).exp() as f32);
    }

    #[test]
    fn serves_held_averages_without_updates_and_realigns_late_chunks() {
        let mut e = TemporalEnsembler::new(0.0, 4, 1);
        e.update(&[0.0, 1.0, 2.0, 3.0], 0);
        assert_eq!(e.consume(), Some(&[0.0][..]));
        // A tick without a model call: the next average is served.
        assert_eq!(e.consume(), Some(&[1.0][..]));
        assert_eq!(e.len(), 2);
        // A chunk from an observation one tick old: its row 1 is for now.
        e.update(&[10.0, 11.0, 12.0, 13.0], 1);
        // Uniform weights: (2 + 11) / 2, (3 + 12) / 2, then 13 alone.
        let served: Vec<f32> = std::iter::from_fn(|| e.consume().map(|r| r[0])).collect();
        assert_eq!(served, [6.5, 7.5, 13.0]);
        assert!(e.is_empty());
        e.reset();
        assert_eq!(e.before_consume().count(), 0);
    }
}
