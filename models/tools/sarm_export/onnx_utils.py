"""ONNX export and inspection helpers."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

OPSET = 17
BATCH = "batch"
FRAMES = "frames"

# Ops that the sarm runtime's tract build handles in these graphs. Anything else in a
# transformer graph is a regression of the exporter and is rejected at export time.
TRANSFORMER_OPS = {
    "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Div", "Equal", "Expand", "Gather",
    "Gemm", "GreaterOrEqual", "Identity", "LayerNormalization", "MatMul", "Mul", "Range", "Relu",
    "Reshape", "ScatterElements", "ScatterND", "Shape", "Sigmoid", "Slice", "Softmax", "Squeeze",
    "Sub", "Transpose", "Trilu", "Unsqueeze", "Where", "Sqrt", "Neg", "Not", "And", "Or", "Less",
    "Greater", "Max", "Min", "ReduceSum", "ReduceMean", "Pow", "Tile",
}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
FORBIDDEN_OPS = {
    "If", "Loop", "Scan", "SequenceConstruct", "SequenceAt", "SequenceInsert", "SplitToSequence",
    "ConcatFromSequence", "QGemm", "QLinearAdd", "QLinearMatMul", "MatMulInteger", "ConvInteger",
    "DynamicQuantizeLinear", "QLinearConv", "QAttention", "Attention", "MultiHeadAttention",
}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path, bundle_dir: Path) -> dict:
    return {
        "path": path.relative_to(bundle_dir).as_posix(),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
    }


def op_counts(model: onnx.ModelProto | str | Path) -> collections.Counter:
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    c: collections.Counter = collections.Counter()

    def walk(g):
        for n in g.node:
            c[n.op_type] += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sub in a.graphs:
                    walk(sub)

    walk(model.graph)
    return c


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    raise ValueError("model has no default-domain opset")


def io_signature(model: onnx.ModelProto | str | Path) -> dict:
    """{'inputs': [(name, [dims], elem_type)], 'outputs': [...]} with symbolic dims as strings."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)

    def dims(vi):
        return [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]

    def et(vi):
        return onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)

    inits = {i.name for i in model.graph.initializer}
    return {
        "inputs": [(v.name, dims(v), et(v)) for v in model.graph.input if v.name not in inits],
        "outputs": [(v.name, dims(v), et(v)) for v in model.graph.output],
    }


def check_ops(path: str | Path, allowed: set[str], what: str) -> collections.Counter:
    counts = op_counts(path)
    bad = sorted(set(counts) & FORBIDDEN_OPS)
    unknown = sorted(set(counts) - allowed)
    if bad or unknown:
        raise RuntimeError(
            f"{what}: {path} contains ops the runtime does not accept: forbidden={bad} unexpected={unknown}"
        )
    return counts


@contextlib.contextmanager
def export_mode():
    """Deterministic, exporter-friendly torch state: the fused MHA fast path
    (torch._transformer_encoder_layer_fwd) is switched off so the math path is traced."""
    prev = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(prev)


def _quiet_exporter_logs():
    import logging

    for name in ("torch.onnx", "onnxscript", "torch.export", "torch._dynamo", "torch.fx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def export_sequence_graph(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic: list[dict[int, str]],
    path: Path,
) -> onnx.ModelProto:
    """Export a (B, T, ...) sequence graph with torch.export (dynamo) at opset 17.

    The legacy TorchScript exporter bakes the token count of nn.MultiheadAttention's
    reshapes as a constant, so the dynamo exporter is used; its opset-18 output is
    down-converted to 17 by onnx's version converter.
    """
    from torch.export import Dim

    _quiet_exporter_logs()
    dims = {BATCH: Dim(BATCH, min=1, max=1024), FRAMES: Dim(FRAMES, min=1, max=4096)}
    dynamic_shapes = tuple({ax: dims[name] for ax, name in d.items()} for d in dynamic)
    module = module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with export_mode(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        prog = torch.onnx.export(
            module,
            example_inputs,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            opset_version=OPSET,
            dynamo=True,
            optimize=True,
            external_data=False,
            verbose=False,
        )
    model = prog.model_proto
    if opset_of(model) != OPSET:
        model = onnx.version_converter.convert_version(model, OPSET)
    model = _clean(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


def export_image_graph(
    module: torch.nn.Module, example: torch.Tensor, input_name: str, output_name: str, path: Path
) -> onnx.ModelProto:
    """Export an image encoder (B,3,H,W) -> (B,D) with the TorchScript exporter, batch symbolic."""
    _quiet_exporter_logs()
    path.parent.mkdir(parents=True, exist_ok=True)
    with export_mode():
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: BATCH}, output_name: {0: BATCH}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(path))
    model = _clean(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


def _clean(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop exporter metadata that varies run to run (keeps files reproducible)."""
    del model.metadata_props[:]
    model.producer_name = "sarm_export"
    model.producer_version = ""
    model.doc_string = ""
    model.graph.doc_string = ""
    for n in model.graph.node:
        n.doc_string = ""
        del n.metadata_props[:]
    for vi in list(model.graph.value_info):
        del vi.metadata_props[:]
    for t in model.graph.initializer:
        del t.metadata_props[:]
    # keep only the graph inputs/outputs value_info; intermediate shapes are recomputed by runtimes
    del model.graph.value_info[:]
    name_nodes_after_outputs(model)
    return model


def name_nodes_after_outputs(model: onnx.ModelProto) -> None:
    """Name each node that produces a graph output after that output, so runtimes that label
    outlets by node name (tract) show the tensor names of the manifest."""
    outs = {o.name for o in model.graph.output}
    taken = {n.name for n in model.graph.node}
    for n in model.graph.node:
        if len(n.output) == 1 and n.output[0] in outs and n.name != n.output[0]:
            if n.output[0] in taken:
                continue
            n.name = n.output[0]


def ort_session(path: str | Path, threads: int = 1, optimize: bool = True):
    """onnxruntime CPU session. ``optimize=False`` disables all graph optimisations, so QDQ
    graphs run literally (DequantizeLinear -> float MatMul): the exact QDQ semantics, which is
    also what tract computes. With optimisations, onnxruntime fuses QDQ into integer kernels
    whose u8*s8 products saturate on x86 CPUs without VNNI, a deviation of onnxruntime only."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtRunner:
    def __init__(self, path: str | Path, optimize: bool = True):
        self.sess = ort_session(path, optimize=optimize)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return ort_run(self.sess, feeds)


class TractRunner:
    """Loads a graph once with tract (symbolic batch/frames) and runs it."""

    def __init__(self, path: str | Path):
        import tract

        proto = onnx.load(str(path), load_external_data=False)
        inits = {i.name for i in proto.graph.initializer}
        self.inputs = [v.name for v in proto.graph.input if v.name not in inits]
        self.outputs = [v.name for v in proto.graph.output]
        self.runnable = tract.onnx().load(str(path)).into_model().into_runnable()

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.runnable.run([np.ascontiguousarray(feeds[n]) for n in self.inputs])
        return {n: o.to_numpy() for n, o in zip(self.outputs, outs, strict=True)}


def ort_run(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    return dict(zip(names, outs, strict=True))


def tract_available() -> bool:
    try:
        import tract  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def tract_run(path: str | Path, feeds: dict[str, np.ndarray], concretize: dict[str, int] | None = None):
    """Load with tract (same version as the Rust runtime), optimise and run. Returns outputs by name."""
    import tract

    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    names = [v.name for v in proto.graph.input if v.name not in inits]
    out_names = [v.name for v in proto.graph.output]
    m = tract.onnx().load(str(path))
    if m.input_count() != len(names) or m.output_count() != len(out_names):
        raise RuntimeError(f"tract sees {m.input_count()} inputs / {m.output_count()} outputs in {path}")
    tm = m.into_model()
    if concretize:
        tm.transform(tract.SetSymbols(concretize))
    r = tm.into_runnable()
    outs = r.run([np.ascontiguousarray(feeds[n]) for n in names])
    return {n: o.to_numpy() for n, o in zip(out_names, outs, strict=True)}
