"""policy_export: LeRobot ACT checkpoints -> sarm policy bundles, goldens from LeRobot.

Modules:
    act            -- loading an ACT checkpoint with its processors; the exported graph (ACT.forward, eval)
    preprocess     -- the robot camera -> model input rule (resize) before LeRobot's own conversion
    quantize       -- INT8 QDQ (Conv, MatMul, Gemm) and its structural check
    bundle         -- the exporter (bundle.toml + model.fp32.onnx + model.int8.onnx)
    manifest       -- the bundle.toml schema: every key, its type, and a validator
    reference      -- a numpy/onnxruntime policy stepper driven by bundle.toml alone (what the runtime does)
    goldens        -- per-step records of LeRobot's own select_action (queue and temporal ensembling)
    goldenio       -- golden files: JSON index + raw little-endian binaries
    tiny_backbone  -- `resnet_tiny`, the narrow ResNet of the test bundle
"""

__version__ = "0.1.0"
