"""`bevcc evaluate DIR` for the mmdet3d BEVFusion set: every file against the PyTorch subnet.

No task metric here (seeded weights detect nothing); each file is fed held-out inputs (seeds the
calibration never saw) and compared, output by output, with:
- the float PyTorch subnet (mmdet3d's modules, as bevfusion.py cuts them): what INT8 costs;
- the PyTorch model the file was exported from: the fake-quant model for the files whose pipeline
  has an fx part (the exactness check), and the float subnet for the files captured as ONNX,
  which were quantized after capture and have no PyTorch fake-quant twin.
A head selects proposals by a TopK over its heatmap: where INT8 reorders near-equal scores, the
outputs gathered after that TopK belong to other proposals and differ wholesale, whatever the
arithmetic. Those outputs are measured and reported (a note), and the file is held to the
outputs that do not pass through a TopK (the dense heatmap).
The Q/DQ files run in onnxruntime without graph rewrites (its rewrites mis-compute fp16-scale
Q/DQ, see bevcc_bevfusion/deployed.py), the libspconv file in bevcc's libspconv interpreter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils import _pytree as pytree

from bevcc.deploy.evaluation import Evaluation, FileParity, Parity, reference_modules
from bevcc.loading import load_callable

HELD_OUT_SEED = 500


def evaluate(directory, config, scenes: int, stream=sys.stderr, device: str = "cpu"):
    directory = Path(directory)
    traced = [spec for spec in config.files if spec.pipeline.lstrip().startswith("fx(")]
    fake_quant = reference_modules(_only(config, traced), directory, True, device)
    parity, notes = [], []
    for spec in config.files:
        module, inputs = load_callable(spec.input, "model")()
        path = directory / f"{spec.name}.onnx"
        run = _file_runner(path, spec.precision)
        selected = _after_topk(path) if spec.precision != "libspconv" else set()
        against_float, against_reference, after_selection = Parity(), Parity(), Parity()
        for index in range(scenes):
            batch = _held_out(inputs, HELD_OUT_SEED + index)
            with torch.no_grad():
                want = _tensors(module(*batch))
                reference = (
                    _tensors(fake_quant[spec.name](*_tensor_inputs(batch)))
                    if spec.name in fake_quant
                    else want
                )
            got = run(_tensor_inputs(batch))
            for index, (g, w, r) in enumerate(zip(got, want, reference, strict=True)):
                if index in selected:
                    after_selection.add(g, w.numpy())
                    continue
                against_float.add(g, w.numpy())
                against_reference.add(g, r.numpy())
        if selected:
            notes.append(
                f"{spec.name}: {len(selected)} output(s) gathered after a TopK (its proposals) "
                f"are {after_selection.sqnr_db:.1f} dB from the float subnet where INT8 reorders "
                "near-equal scores; the file is held to its other outputs"
            )
        parity.append(
            FileParity(
                set="int8",
                file=spec.name,
                max_abs=against_reference.max_abs,
                cosine=against_reference.cosine,
                sqnr_db=against_reference.sqnr_db,
                chained_sqnr_db=None,
                reference="fake-quant" if spec.name in fake_quant else "float",
                float_max_abs=against_float.max_abs,
                float_cosine=against_float.cosine,
                float_sqnr_db=against_float.sqnr_db,
            )
        )
        print(
            f"{spec.name}: {against_float.sqnr_db:.1f} dB from the float subnet, "
            f"{against_reference.sqnr_db:.1f} dB from the model it was exported from",
            file=stream,
            flush=True,
        )
    for note in notes:
        print(note, file=stream, flush=True)
    return Evaluation(metric="none", scenes=scenes, rows=[], parity=parity, notes=notes)


def _after_topk(path: Path) -> set[int]:
    """Indices of the file's outputs that depend on a TopK's result."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    tainted: set[str] = set()
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type == "TopK" or tainted.intersection(node.input):
            tainted.update(node.output)
    return {i for i, out in enumerate(graph.output) if out.name in tainted}


def _only(config, files):
    from dataclasses import replace

    return replace(config, files=list(files))


def _file_runner(path: Path, precision: str):
    import onnx

    if precision == "libspconv":
        from bevcc.sparse.interpreter import LibspconvInterpreter

        lidar = LibspconvInterpreter(onnx.load(path), "int8")
        return lambda inputs: [t.detach().numpy() for t in lidar(*inputs[:2])]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(
        None, {n: x.numpy() for n, x in zip(names, inputs, strict=True)}
    )


def _held_out(inputs: tuple, seed: int) -> tuple:
    """The example's structure with fresh values: floats drawn like the example's (same mean and
    spread), integer tensors (voxel coordinates) and non-tensors kept."""
    generator = torch.Generator().manual_seed(seed)

    def fresh(x):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return x
        sparse = (x == 0).float().mean().item()
        values = torch.randn(x.shape, generator=generator) * x.std() + x.mean()
        if sparse > 0.5:  # a depth image: keep it as sparse as the example's
            values = values.abs() * (torch.rand(x.shape, generator=generator) > sparse)
        return values

    return tuple(pytree.tree_map(fresh, list(inputs)))


def _tensor_inputs(batch: tuple) -> tuple:
    return tuple(x for x in pytree.tree_leaves(list(batch)) if isinstance(x, torch.Tensor))


def _tensors(outputs) -> list[torch.Tensor]:
    return [
        (t.dense() if hasattr(t, "dense") else t).float()
        for t in pytree.tree_leaves(outputs)
        if isinstance(t, torch.Tensor) or hasattr(t, "dense")
    ]


__all__ = ["evaluate"]
