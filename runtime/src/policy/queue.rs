//! LeRobot's action queue (`ACTPolicy._action_queue`, a
//! `deque(maxlen=n_action_steps)`): a model call's chunk fills it with its
//! first `n_action_steps` rows, one row is popped per control tick, and the
//! model runs again when it is empty. Rows are kept normalised (the
//! bundle's `stepper_space`); a fixed ring of `n_action_steps` rows,
//! allocated once.

/// A bounded queue of normalised action rows.
#[derive(Debug, Clone)]
pub struct ActionQueue {
    dim: usize,
    capacity: usize,
    rows: Vec<f32>,
    head: usize,
    len: usize,
}

impl ActionQueue {
    /// Room for `n_action_steps` rows of `dim` values.
    pub fn new(n_action_steps: usize, dim: usize) -> Self {
        ActionQueue {
            dim,
            capacity: n_action_steps,
            rows: vec![0.0; n_action_steps * dim],
            head: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `n_action_steps`.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Extends the queue with chunk rows `skip ..` (at most `capacity` of
    /// them; `chunk` holds whole rows). As LeRobot's bounded deque, rows
    /// already queued are pushed out from the front when it overflows.
    /// LeRobot refills an empty queue with `skip = 0`.
    pub fn extend_from_chunk(&mut self, chunk: &[f32], skip: usize) {
        let rows = chunk.chunks_exact(self.dim).skip(skip).take(self.capacity);
        for row in rows {
            if self.len == self.capacity {
                self.head = (self.head + 1) % self.capacity;
                self.len -= 1;
            }
            let slot = (self.head + self.len) % self.capacity;
            self.rows[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(row);
            self.len += 1;
        }
    }

    /// The front row, removed from the queue.
    pub fn pop(&mut self) -> Option<&[f32]> {
        if self.len == 0 {
            return None;
        }
        let slot = self.head;
        self.head = (self.head + 1) % self.capacity;
        self.len -= 1;
        Some(&self.rows[slot * self.dim..(slot + 1) * self.dim])
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(rows: usize, dim: usize) -> Vec<f32> {
        (0..rows * dim).map(|v| v as f32).collect()
    }

    #[test]
    fn keeps_the_first_n_rows_and_pops_in_order() {
        let mut q = ActionQueue::new(3, 2);
        q.extend_from_chunk(&chunk(5, 2), 0);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(&[0.0, 1.0][..]));
        assert_eq!(q.pop(), Some(&[2.0, 3.0][..]));
        assert_eq!(q.pop(), Some(&[4.0, 5.0][..]));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn overflow_pushes_out_the_oldest_like_a_bounded_deque() {
        let mut q = ActionQueue::new(3, 1);
        q.extend_from_chunk(&[10.0, 11.0, 12.0], 0);
        q.pop();
        // deque(maxlen=3) holding [11, 12] extended by [0, 1, 2] -> [0, 1, 2].
        q.extend_from_chunk(&[0.0, 1.0, 2.0, 3.0], 0);
        let popped: Vec<f32> = std::iter::from_fn(|| q.pop().map(|r| r[0])).collect();
        assert_eq!(popped, [0.0, 1.0, 2.0]);
        // Skipping rows (an observation two ticks old).
        q.extend_from_chunk(&[0.0, 1.0, 2.0, 3.0], 2);
        let popped: Vec<f32> = std::iter::from_fn(|| q.pop().map(|r| r[0])).collect();
        assert_eq!(popped, [2.0, 3.0]);
    }
}
