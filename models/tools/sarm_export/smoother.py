"""Confidence-weighted progress smoother (SARM paper's reference behaviour), written from its description.

Keeps the last ``window`` accepted (value, confidence) pairs.  update(v, c):
  * c is clamped to [0, 1];
  * baseline = confidence^beta-weighted mean of the history (weights max(eps, c)^beta,
    normalised by (sum of weights + eps)), or v itself when the history is empty;
  * with no previous output yet, the previous output becomes that baseline;
  * if c < threshold: return the previous output, history unchanged;
  * else append (v, c) (dropping the oldest beyond ``window``) and return the weighted
    mean of the history, which becomes the previous output.
"""

from __future__ import annotations

from collections import deque


class ConfidenceSmoother:
    def __init__(self, window: int = 10, beta: float = 3.0, eps: float = 1e-6, threshold: float = 0.9):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.beta = beta
        self.eps = eps
        self.threshold = threshold
        self.history: deque[tuple[float, float]] = deque(maxlen=window)
        self.previous: float | None = None

    def _weighted_mean(self) -> float:
        num = 0.0
        den = 0.0
        for v, c in self.history:
            w = max(self.eps, c) ** self.beta
            num += w * v
            den += w
        return num / (den + self.eps)

    def update(self, value: float, confidence: float) -> float:
        c = min(1.0, max(0.0, float(confidence)))
        v = float(value)
        baseline = self._weighted_mean() if self.history else v
        if self.previous is None:
            self.previous = baseline
        if c < self.threshold:
            return self.previous
        self.history.append((v, c))
        self.previous = self._weighted_mean()
        return self.previous

    def reset(self) -> None:
        self.history.clear()
        self.previous = None
