"""sarm_export: export LeRobot SARM reward models to ONNX bundles for the sarm runtime.

Modules:
    wrappers   -- export wrappers around LeRobot's StageTransformer / SubtaskTransformer
    onnx_utils -- ONNX export, op inventory, onnxruntime / tract helpers, hashing
    quantize   -- INT8 QDQ quantization (MatMul/Gemm only) and its checks
    encoders   -- image encoders (EfficientNet-lite0, CLIP vision) and their preprocessing
    text       -- MiniLM-L6 task-text embeddings
    windows    -- frame-window layouts (centered / causal / anchored)
    state      -- joint-state normalization (LeRobot MEAN_STD) and padding
    smoother   -- confidence-weighted progress smoother (reference implementation)
    tomlw      -- a tiny deterministic TOML writer (float32 round-trip floats)
    bundle     -- the bundle exporter (used by export_bundle.py)
"""

__version__ = "0.1.0"

ALOHA_JOINT_NAMES = [
    f"{side}_{j}"
    for side in ("left", "right")
    for j in (
        "waist",
        "shoulder",
        "elbow",
        "forearm_roll",
        "wrist_angle",
        "wrist_rotate",
        "gripper",
    )
]
