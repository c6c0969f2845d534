"""Frame-window layouts: which episode frames feed the 9 window positions of a scored frame.

centered         offsets -k*g .. +k*g (k = n_obs_steps/2), read out the centre (LeRobot's
                 training/inference window; the output is delayed by k*g frames).
causal           offsets -n*g .. 0, read out the last position (no delay).
anchored (flag)  window position 0 replaced by the episode's first frame.
Out-of-range indices clamp to the episode's first/last frame ("edge").
"""

from __future__ import annotations


def offsets(layout: str, n_obs_steps: int, frame_gap: int) -> list[int]:
    if layout == "centered":
        if n_obs_steps % 2:
            raise ValueError(f"centered window needs an even n_obs_steps, got {n_obs_steps}")
        half = n_obs_steps // 2
        return [frame_gap * i for i in range(-half, half + 1)]
    if layout == "causal":
        return [frame_gap * i for i in range(-n_obs_steps, 1)]
    raise ValueError(f"unknown window layout {layout!r} (centered or causal)")


def readout(layout: str, n_obs_steps: int) -> int:
    return n_obs_steps // 2 if layout == "centered" else n_obs_steps


def frame_indices(
    scored_frame: int, length: int, layout: str, n_obs_steps: int, frame_gap: int, anchor_first: bool = False
) -> list[int]:
    """Window frame indices for ``scored_frame`` in an episode of ``length`` frames.

    The centered layout uses LeRobot's own compute_absolute_indices.
    """
    if layout == "centered":
        from lerobot.policies.sarm.sarm_utils import compute_absolute_indices

        idx, _ = compute_absolute_indices(scored_frame, 0, length, n_obs_steps, frame_gap)
        out = [int(i) for i in idx.tolist()]
    else:
        out = [min(max(scored_frame + o, 0), length - 1) for o in offsets(layout, n_obs_steps, frame_gap)]
    if anchor_first:
        out[0] = 0
    return out
