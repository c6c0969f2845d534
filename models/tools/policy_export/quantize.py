"""INT8 QDQ quantization of the ACT graph: Conv (the ResNet), MatMul and Gemm (the transformer).

`onnxruntime.quantization.quantize_static`, QDQ format, MinMax calibration on real frames:
activations QUInt8 asymmetric per tensor, weights QInt8 symmetric in a 7-bit range
(`reduce_range`; per output channel when `per_channel`), biases int32 behind DequantizeLinear.
The 7-bit weights are for onnxruntime on x86 CPUs without VNNI: its u8 x s8 kernels add pairs
of products in int16, which saturates with full 8-bit weights (measured on act-test: 0.15 rad
off LeRobot instead of 0.02). Q/DQ pairs are then kept only in front of
the quantized ops: any float consumer the quantizer had routed through a shared Q/DQ pair
(a residual Add, a LayerNorm, a Reshape) is rewired to the float tensor, so everything except
the inputs of Conv/MatMul/Gemm stays float32 exactly as in the fp32 graph.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

QDQ = ("QuantizeLinear", "DequantizeLinear")


class _Reader:
    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - MinMax reads once
        pass


def quantize(fp32_path: Path, int8_path: Path, calibration: list[dict[str, np.ndarray]],
             op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm"), per_channel: bool = True) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("INT8 quantization needs at least one calibration sample")
    with tempfile.TemporaryDirectory() as td:
        split = Path(td) / "split.onnx"
        model = onnx.load(str(fp32_path))
        copies = _split_shared_constants(model, set(op_types))
        onnx.save(model, str(split))
        pre = Path(td) / "pre.onnx"
        preprocessed = True
        try:  # shape inference only: onnxruntime's graph optimisations could add fused, non-standard ops
            quant_pre_process(str(split), str(pre), skip_optimization=True, skip_onnx_shape=False,
                              skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - symbolic shape inference is best effort
            shutil.copy(split, pre)
            preprocessed = False
        quantize_static(
            str(pre), str(int8_path), _Reader(calibration),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=per_channel,
            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "QuantizeBias": True,
                           "OpTypesToExcludeOutputQuantization": list(op_types)},
        )
    model = onnx.load(str(int8_path))
    _restrict_qdq(model, set(op_types))
    del model.graph.value_info[:]
    del model.metadata_props[:]
    onnx.save(model, str(int8_path))
    summary = check_int8(int8_path, set(op_types))
    return {
        "method": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "op_types": list(op_types),
        "per_channel_weights": per_channel,
        "activation_type": "QUInt8",
        "activation_symmetric": False,
        "activation_granularity": "per tensor",
        "weight_type": "QInt8",
        "weight_bits": 7,
        "weight_symmetric": True,
        "bias": "int32 behind DequantizeLinear",
        "calibration_method": "MinMax",
        "calibration_samples": len(calibration),
        "output_quantization": "none (outputs of Conv/MatMul/Gemm stay float)",
        "float_consumers": "rewired to the float tensor (Q/DQ pairs only feed the quantized ops)",
        "quant_pre_process": "shape inference only" if preprocessed else "skipped",
        "shared_constants_split": copies,
        **summary,
    }


def _split_shared_constants(model: onnx.ModelProto, quantized: set[str]) -> int:
    """An initializer read by a quantized op and by a float op gets a float copy for the float op.

    The quantizer replaces a constant input of Conv/MatMul/Gemm by int8 + DequantizeLinear and
    routes every reader through it; after constant folding, ACT's decoder positional term is such
    a constant (a MatMul input and a residual Add). The copy keeps the Add exactly float."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            if i in inits:
                readers.setdefault(i, []).append(n)
    copies = 0
    for name, nodes in readers.items():
        if not any(n.op_type in quantized for n in nodes) or all(n.op_type in quantized for n in nodes):
            continue
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[name])
        copy.name = f"{name}_float"
        g.initializer.append(copy)
        for n in nodes:
            if n.op_type not in quantized:
                for k, i in enumerate(n.input):
                    if i == name:
                        n.input[k] = copy.name
        copies += 1
    return copies


def _restrict_qdq(model: onnx.ModelProto, quantized: set[str]) -> None:
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    for n in g.node:
        if n.op_type != "DequantizeLinear":
            continue
        q = producer.get(n.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue  # weight / bias DQ of an initializer
        if n.output[0] in outputs:
            raise RuntimeError(f"quantized graph output {n.output[0]}")
        for c in g.node:
            if c.op_type in quantized:
                continue
            for i, name in enumerate(c.input):
                if name == n.output[0]:
                    c.input[i] = q.input[0]
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for t in list(g.initializer):
        if t.name not in used:
            g.initializer.remove(t)


def check_int8(path: Path, quantized: set[str]) -> dict:
    """Q -> DQ -> (Conv|MatMul|Gemm) only; counts of quantized ops per type."""
    model = onnx.load(str(path))
    g = model.graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name for t in g.initializer}
    for n in g.node:
        if n.op_type == "QuantizeLinear":
            for c in consumers.get(n.output[0], []):
                if c.op_type != "DequantizeLinear":
                    raise RuntimeError(f"{path}: QuantizeLinear {n.name} feeds {c.op_type}")
        elif n.op_type == "DequantizeLinear":
            for c in consumers.get(n.output[0], []):
                if c.op_type not in quantized:
                    raise RuntimeError(f"{path}: DequantizeLinear {n.name} feeds {c.op_type}")
    counts: dict[str, list[int]] = {op: [0, 0] for op in sorted(quantized)}
    weights_int8 = 0
    for n in g.node:
        if n.op_type not in quantized:
            continue
        counts[n.op_type][1] += 1
        srcs = [producer.get(i) for i in n.input[:2]]
        if all(s is not None and s.op_type == "DequantizeLinear" for s in srcs):
            counts[n.op_type][0] += 1
            for s in srcs:
                if s.input[0] in inits:
                    t = next(t for t in g.initializer if t.name == s.input[0])
                    if numpy_helper.to_array(t).dtype == np.int8:
                        weights_int8 += 1
    if sum(c[0] for c in counts.values()) == 0:
        raise RuntimeError(f"{path}: nothing was quantized")
    return {
        "quantized": {op: f"{c[0]} of {c[1]}" for op, c in counts.items()},
        "int8_weight_tensors": weights_int8,
    }
