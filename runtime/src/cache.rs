//! Per-frame embedding cache: image features and normalised state of the
//! frames that windows read, in a fixed ring sized to the window's reach, so
//! no frame is encoded twice and memory does not grow with episode length.

/// Ring of per-frame feature and state slots, keyed by frame index.
#[derive(Debug, Clone)]
pub struct FrameCache {
    feat_dim: usize,
    state_dim: usize,
    tags: Vec<Option<usize>>,
    feats: Vec<f32>,
    states: Vec<f32>,
    /// Frame 0 is kept apart: clamping at the start and anchored windows
    /// read it for the whole episode.
    first: Option<()>,
    first_feat: Vec<f32>,
    first_state: Vec<f32>,
}

impl FrameCache {
    /// `capacity` frames besides frame 0; all memory is allocated here.
    pub fn new(capacity: usize, feat_dim: usize, state_dim: usize) -> Self {
        let capacity = capacity.max(1);
        FrameCache {
            feat_dim,
            state_dim,
            tags: vec![None; capacity],
            feats: vec![0.0; capacity * feat_dim],
            states: vec![0.0; capacity * state_dim],
            first: None,
            first_feat: vec![0.0; feat_dim],
            first_state: vec![0.0; state_dim],
        }
    }

    pub fn capacity(&self) -> usize {
        self.tags.len()
    }

    pub fn clear(&mut self) {
        self.tags.fill(None);
        self.first = None;
    }

    pub fn contains(&self, frame: usize) -> bool {
        if frame == 0 {
            self.first.is_some()
        } else {
            self.tags[frame % self.tags.len()] == Some(frame)
        }
    }

    /// Slots to write frame `frame` into (features, state). Evicts whatever
    /// frame used the slot before; the caller commits with [`Self::commit`].
    pub fn slot_mut(&mut self, frame: usize) -> (&mut [f32], &mut [f32]) {
        if frame == 0 {
            return (&mut self.first_feat, &mut self.first_state);
        }
        let i = frame % self.tags.len();
        self.tags[i] = None;
        (
            &mut self.feats[i * self.feat_dim..(i + 1) * self.feat_dim],
            &mut self.states[i * self.state_dim..(i + 1) * self.state_dim],
        )
    }

    /// Marks `frame`'s slot as holding valid data.
    pub fn commit(&mut self, frame: usize) {
        if frame == 0 {
            self.first = Some(());
        } else {
            let i = frame % self.tags.len();
            self.tags[i] = Some(frame);
        }
    }

    /// Features and state of `frame`, if cached.
    pub fn get(&self, frame: usize) -> Option<(&[f32], &[f32])> {
        if !self.contains(frame) {
            return None;
        }
        if frame == 0 {
            return Some((&self.first_feat, &self.first_state));
        }
        let i = frame % self.tags.len();
        Some((
            &self.feats[i * self.feat_dim..(i + 1) * self.feat_dim],
            &self.states[i * self.state_dim..(i + 1) * self.state_dim],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_evicts_old_frames_but_keeps_frame_zero() {
        let mut c = FrameCache::new(3, 2, 1);
        for f in 0..6 {
            let (feat, state) = c.slot_mut(f);
            feat.fill(f as f32);
            state.fill(-(f as f32));
            c.commit(f);
        }
        assert!(c.contains(0));
        assert!(!c.contains(1) && !c.contains(2));
        assert_eq!(c.get(4).unwrap().0, &[4.0, 4.0]);
        assert_eq!(c.get(5).unwrap().1, &[-5.0]);
        assert_eq!(c.get(0).unwrap().0, &[0.0, 0.0]);
        c.clear();
        assert!(c.get(5).is_none() && c.get(0).is_none());
    }
}
