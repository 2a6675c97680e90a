"""`bevcc evaluate DIR` for the BEVFusion reference: the files a set compile wrote, chained as
CUDA-BEVFusion's runtime chains its engines (camera.backbone -> BEV pool -> camera.vtransform,
voxelization -> lidar.backbone.xyz, fuser, head.bbox), on the validation split.

Without TensorRT, onnxruntime runs the ONNX files (all graph optimizations on, so Q/DQ pairs run
as integer kernels, as an engine would) and bevcc's libspconv interpreter runs the lidar file
(int8 mode for the INT8 set, float for the FP16 set). The runtime glue (BEV pool, voxelization)
is the same torch code the PyTorch model uses. The PyTorch reference of each set is rebuilt from
the set's config and its recorded sensitivity decisions (`bevcc.deploy.evaluation.reference_modules`).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from bevcc_bevfusion.dataset import load_split
from bevcc_bevfusion.deploy import small
from bevcc_bevfusion.evaluate import detections, truth
from bevcc_bevfusion.head import OUTPUTS
from bevcc_bevfusion.lidar import voxelize
from bevcc_bevfusion.metric import mean_ap, one_detection_step
from bevcc_bevfusion.model import SUBNETS, scene_inputs
from bevcc_bevfusion.presets import CLASSES

from bevcc.batching import run_in_batches
from bevcc.deploy.evaluation import Evaluation, FileParity, MetricRow, Parity, reference_modules
from bevcc.progress import step, track
from bevcc.sparse.interpreter import LibspconvInterpreter

LIDAR = "lidar.backbone.xyz"
FILES = tuple(SUBNETS.values())
# head outputs whose values do not depend on the order top-K breaks ties in
_HEAD_COMPARED = (OUTPUTS.index("dense_heatmap"), OUTPUTS.index("query_score"))


class FileChain:
    """The deployed files of one set, run in the deployment's order."""

    def __init__(self, directory: Path, lidar_mode: str):
        self.directory = Path(directory)
        missing = [
            f"{name}.onnx" for name in FILES if not (self.directory / f"{name}.onnx").is_file()
        ]
        if missing:
            raise FileNotFoundError(f"{self.directory}: missing {', '.join(missing)}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.sessions = {
            name: ort.InferenceSession(
                str(self.directory / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
            )
            for name in FILES
            if name != LIDAR
        }
        self.lidar = LibspconvInterpreter(onnx.load(self.directory / f"{LIDAR}.onnx"), lidar_mode)
        self.glue = small.model  # BEV pool geometry and the preset: runtime code, not a file

    def run_file(self, name: str, inputs) -> tuple[torch.Tensor, ...]:
        if name == LIDAR:
            return tuple(self.lidar(*inputs))
        session = self.sessions[name]
        feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs, strict=True)}
        outputs = run_in_batches(session, feeds, f"{self.directory / name}.onnx")
        return tuple(torch.from_numpy(out) for out in outputs)

    @torch.no_grad()
    def __call__(self, images, depth, points, record: dict):
        probs, features = self.run_file("camera.backbone", (images, depth))
        pooled = self.glue.bev_pool(probs, features)
        (camera_bev,) = self.run_file("camera.vtransform", (pooled,))
        voxels, coords = voxelize(points, self.glue.preset)
        (lidar_bev,) = self.run_file(LIDAR, (voxels, coords))
        (fused,) = self.run_file("fuser", (camera_bev, lidar_bev))
        out = self.run_file("head.bbox", (fused,))
        record.update(
            {
                "camera.backbone": (probs, features),
                "camera.vtransform": (camera_bev,),
                LIDAR: (lidar_bev,),
                "fuser": (fused,),
                "head.bbox": out,
            }
        )
        return out


def compared(name: str, outputs) -> list[torch.Tensor]:
    """The outputs a parity check compares: all of them, except the head's per-query tensors,
    whose order follows top-K's tie-breaking (empty BEV cells score exactly alike); its query
    scores are compared sorted."""
    if name != "head.bbox":
        return list(outputs)
    heatmap, scores = (outputs[i] for i in _HEAD_COMPARED)
    return [heatmap, scores.sort(dim=-1, descending=True).values]


def evaluate_set(directory: Path, reference, lidar_mode: str, scenes, label: str, stream):
    """(task metric of the PyTorch reference, of the files, per-file parity rows)."""
    with step(f"loading the {label} files"):
        chain = FileChain(directory, lidar_mode)
    alone = {name: Parity() for name in FILES}
    chained = {name: Parity() for name in FILES}
    reference_predictions, file_predictions = [], []
    start = time.time()
    with torch.no_grad():
        for s in track(scenes, f"{label} set", unit="scene"):
            want, got = {}, {}
            reference_out = reference(*scene_inputs(s), want)
            file_out = chain(*scene_inputs(s), got)
            for name in FILES:
                inputs, outputs = want[name]
                for a, b in zip(
                    compared(name, chain.run_file(name, inputs)),
                    compared(name, outputs),
                    strict=True,
                ):
                    alone[name].add(a, b)
                for a, b in zip(compared(name, got[name]), compared(name, outputs), strict=True):
                    chained[name].add(a, b)
            reference_predictions.append(detections(reference_out, small.preset))
            file_predictions.append(detections(file_out, small.preset))
    truths = [truth(s) for s in scenes]
    print(
        f"  {label}: {len(scenes)} scenes in {time.time() - start:.0f} s", file=stream, flush=True
    )
    parity = [
        FileParity(
            label,
            f"{name}.onnx",
            alone[name].max_abs,
            alone[name].cosine,
            alone[name].sqnr_db,
            chained[name].sqnr_db,
        )
        for name in FILES
    ]
    return (
        mean_ap(reference_predictions, truths, CLASSES)["mAP"],
        mean_ap(file_predictions, truths, CLASSES)["mAP"],
        parity,
    )


def reference_model(config, directory: Path, quantized: bool):
    """The float model with each subnet replaced by the PyTorch module its file came from."""
    model = copy.deepcopy(small.model)
    attributes = {file: attr for attr, file in SUBNETS.items()}
    for name, module in reference_modules(config, directory, quantized).items():
        setattr(model, attributes[name], module)
    return model.eval()


def int8_names(config) -> tuple[str, str]:
    """(table row, parity set name) for the INT8 set this config compiles: with or without
    layers kept float by sensitivity_disable."""
    if any("sensitivity_disable" in spec.pipeline for spec in config.files):
        return "PTQ INT8 + sensitivity_disable", "int8"
    return "PTQ INT8, all layers", "int8-all"


def evaluate(directory, config, scenes: int, stream=sys.stderr) -> Evaluation:
    """The `evaluate` function bevfusion.toml names: the INT8 set in DIR and, when the set was
    compiled with an FP16 set, DIR/fp16."""
    directory = Path(directory)
    val = load_split("val", scenes, small.preset)
    rows, parity = [], []
    if (directory / "fp16").is_dir():
        print("FP16 set: the files vs the float PyTorch model", file=stream, flush=True)
        reference = reference_model(config, directory, quantized=False)
        torch_map, files_map, rows_parity = evaluate_set(
            directory / "fp16", reference, "float", val, "fp16", stream
        )
        rows.append(MetricRow("float (FP16 files)", torch_map, files_map))
        parity += rows_parity
    print("INT8 set: the files vs the PyTorch fake-quant model", file=stream, flush=True)
    reference = reference_model(config, directory, quantized=True)
    label, set_name = int8_names(config)
    torch_map, files_map, rows_parity = evaluate_set(
        directory, reference, "int8", val, set_name, stream
    )
    rows.append(MetricRow(f"{label} (INT8 files)", torch_map, files_map))
    parity += rows_parity
    step = one_detection_step([truth(s) for s in val], CLASSES)
    return Evaluation(
        "BEV mAP",
        scenes,
        rows,
        parity,
        metric_step=step,
        notes=[
            (
                "onnxruntime runs the ONNX files with all graph optimizations (Q/DQ as integer "
                "kernels); bevcc's libspconv interpreter runs the lidar file."
            ),
            (
                "head.bbox: compared on its dense heatmap and its sorted query scores (top-K breaks "
                "ties in its own order in each runtime)."
            ),
        ],
    )
