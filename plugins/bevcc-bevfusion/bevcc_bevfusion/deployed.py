"""`bevcc evaluate DIR` for the BEVFusion reference: the files a set compile wrote, chained as
CUDA-BEVFusion's runtime chains its engines (camera.backbone -> BEV pool -> camera.vtransform,
voxelization -> lidar.backbone.xyz, fuser, head.bbox), on the validation split.

Without TensorRT, onnxruntime runs the ONNX files as written, in their own types (strongly typed:
fp16 float layers, INT8 through Q/DQ with fp16 scales; no graph rewrites, which mishandle fp16
scales) and bevcc's libspconv interpreter runs the lidar file
(int8 mode for the INT8 set, float for the FP16 set). The runtime glue (BEV pool, voxelization)
is the same torch code the PyTorch model uses. Every file is held against two PyTorch models:
the float model (what INT8 or FP16 costs it) and the model it was exported from, rebuilt from the
set's config and its recorded sensitivity decisions (`bevcc.deploy.evaluation.reference_modules`):
the fake-quant model for the INT8 set, which the files must compute exactly (the tolerance).
"""

from __future__ import annotations

import copy
import dataclasses
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
from bevcc.deploy.evaluation import (
    Evaluation,
    FileParity,
    MetricRow,
    Parity,
    estimate,
    reference_modules,
)
from bevcc.pm.pipeline import IRGroup, Pipeline, StepSpec, parse_pipeline
from bevcc.progress import track
from bevcc.sparse.interpreter import LibspconvInterpreter

LIDAR = "lidar.backbone.xyz"
FILES = tuple(SUBNETS.values())
# head outputs whose values do not depend on the order top-K breaks ties in
_HEAD_COMPARED = (OUTPUTS.index("dense_heatmap"), OUTPUTS.index("query_score"))
# scenes of each set run before the estimate: the first pays for warm-up, the second sets the pace
WARM_UP_SCENES = 2
# onnxruntime's threads per session (0: its default, one per core); a sharded evaluation gives
# each process its share of the cores
ORT_THREADS = 0


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
        # no graph rewrites: the strongly typed files carry fp16 Q/DQ scales, which onnxruntime's
        # extended QDQ fusions have no kernels for (QLinearConcat) and its basic rewrites compute
        # wrongly (the INT8 fuser: 16 dB from the same file run unrewritten, which is 31 dB from
        # its fp32 twin; measured with onnxruntime 1.32 on the main job's fuser)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = ORT_THREADS
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


class SetRun:
    """One set's evaluation, a scene at a time. Each file is compared with `reference`, the
    PyTorch model it was exported from (the exactness check), and with `float_model` (what
    quantization costs it; the same comparison when `float_model` is None: the FP16 set, whose
    reference is the float model)."""

    def __init__(
        self,
        directory: Path,
        reference,
        lidar_mode: str,
        label: str,
        float_model=None,
        reference_name: str = "float",
    ):
        self.chain = FileChain(directory, lidar_mode)
        self.reference, self.float_model = reference, float_model
        self.label, self.reference_name = label, reference_name
        self.exact = {name: (Parity(), Parity()) for name in FILES}  # (alone, chained)
        self.against_float = (
            {name: (Parity(), Parity()) for name in FILES}
            if float_model is not None
            else self.exact
        )
        self.predictions: dict[str, list] = {"float": [], "reference": [], "files": []}
        self.seconds: list[float] = []  # per scene

    @torch.no_grad()
    def run(self, scene) -> None:
        start = time.perf_counter()
        want, got = {}, {}
        reference_out = self.reference(*scene_inputs(scene), want)
        file_out = self.chain(*scene_inputs(scene), got)
        _compare(self.chain, want, got, self.exact)
        float_out = reference_out
        if self.float_model is not None:
            float_want = {}
            float_out = self.float_model(*scene_inputs(scene), float_want)
            _compare(self.chain, float_want, got, self.against_float)
        for key, out in (("float", float_out), ("reference", reference_out), ("files", file_out)):
            self.predictions[key].append(detections(out, small.preset))
        self.seconds.append(time.perf_counter() - start)

    def result(self, scenes) -> tuple[float, float, float, list[FileParity]]:
        """(BEV mAP of the float model, of the reference, of the files; per-file parity)."""
        truths = [truth(s) for s in scenes]
        maps = {k: mean_ap(found, truths, CLASSES)["mAP"] for k, found in self.predictions.items()}
        parity = [
            FileParity(
                self.label,
                f"{name}.onnx",
                self.exact[name][0].max_abs,
                self.exact[name][0].cosine,
                self.exact[name][0].sqnr_db,
                self.exact[name][1].sqnr_db,
                reference=self.reference_name,
                float_max_abs=self.against_float[name][0].max_abs,
                float_cosine=self.against_float[name][0].cosine,
                float_sqnr_db=self.against_float[name][0].sqnr_db,
                float_chained_sqnr_db=self.against_float[name][1].sqnr_db,
            )
            for name in FILES
        ]
        return maps["float"], maps["reference"], maps["files"], parity


def _compare(chain: FileChain, want: dict, got: dict, parity: dict) -> None:
    """Add one scene to each file's (alone, chained) parity against the PyTorch boundaries
    `want`: alone, the file run on the PyTorch model's inputs; chained, its output in the chain."""
    for name in FILES:
        inputs, outputs = want[name]
        alone, chained = parity[name]
        expected = compared(name, outputs)
        for a, b in zip(compared(name, chain.run_file(name, inputs)), expected, strict=True):
            alone.add(a, b)
        for a, b in zip(compared(name, got[name]), expected, strict=True):
            chained.add(a, b)


def run_sets(runs: list[SetRun], scenes, stream) -> None:
    """Every scene through every set. The first scenes of each set run first and time the rest:
    the first pays for warm-up, so a set's pace is its second scene; the estimate is printed
    before the long part of the run."""
    measured = min(WARM_UP_SCENES, len(scenes))
    for run in runs:
        for s in track(scenes[:measured], f"{run.label} set (timing)", unit="scene"):
            run.run(s)
    if len(scenes) > measured:
        done = sum(sum(run.seconds) for run in runs)
        pace = sum(run.seconds[-1] for run in runs)  # one more scene of every set
        total = done + pace * (len(scenes) - measured)
        what = f"scenes x {len(runs)} sets" if len(runs) > 1 else "scenes"
        print(
            f"  {estimate(total, len(scenes), what)} (timed on the first {measured} of each)",
            file=stream,
            flush=True,
        )
    for run in runs:
        for s in track(scenes[measured:], f"{run.label} set", unit="scene"):
            run.run(s)
        print(
            f"  {run.label}: {len(scenes)} scenes in {sum(run.seconds):.0f} s",
            file=stream,
            flush=True,
        )


def reference_model(config, directory: Path, quantized: bool, device: str = "cpu"):
    """The float model with each subnet replaced by the PyTorch module its file came from, its
    passes run on `device`; the model itself runs on the CPU, beside the deployed chain."""
    if device != "cpu":
        config = sparse_bias_outside(config)
    model = copy.deepcopy(small.model)
    attributes = {file: attr for attr, file in SUBNETS.items()}
    for name, module in reference_modules(config, directory, quantized, device).items():
        setattr(model, attributes[name], module)
    return model.eval()


def sparse_bias_outside(config):
    """`config` with every fx bn_fold that does not say otherwise keeping a folded sparse conv's
    bias outside the conv: on CUDA bn_fold's `auto` puts it inside, which spconv's CPU kernels,
    where the references run, reject. The arithmetic is the same (the bias is added after the
    convolution either way)."""
    files = []
    for spec in config.files:
        elements = []
        for element in parse_pipeline(spec.pipeline).elements:
            if isinstance(element, IRGroup) and element.ir == "fx":
                element = IRGroup("fx", [_outside(step) for step in element.steps])
            elements.append(element)
        files.append(dataclasses.replace(spec, pipeline=Pipeline(elements).text()))
    return dataclasses.replace(config, files=files)


def _outside(step: StepSpec) -> StepSpec:
    if step.name != "bn_fold" or any(key == "sparse_bias" for key, _ in step.options):
        return step
    return StepSpec(step.name, [*step.options, ("sparse_bias", "outside")])


def int8_names(config) -> tuple[str, str]:
    """(table row, parity set name) for the INT8 set this config compiles: with or without
    layers kept float by sensitivity_disable."""
    if any("sensitivity_disable" in spec.pipeline for spec in config.files):
        return "PTQ INT8 + sensitivity_disable", "int8"
    return "PTQ INT8, all layers", "int8-all"


def evaluate(
    directory, config, scenes: int, stream=sys.stderr, device: str = "cpu", jobs: int = 1
) -> Evaluation:
    """The `evaluate` function bevfusion.toml names: the INT8 set in DIR and, when the set was
    compiled with an FP16 set, DIR/fp16. Every file is held against the float PyTorch model, and
    separately against the PyTorch model it was exported from (fake-quant for the INT8 set).
    `device` (`bevcc evaluate --device`): where rebuilding the PyTorch references calibrates and
    replays their passes; the files and the references then run scene by scene on the CPU.
    `jobs` > 1 splits the scenes among that many processes (bevcc_bevfusion.sharded): the same
    numbers, each process rebuilding the references once."""
    directory = Path(directory)
    val = load_split("val", scenes, small.preset)
    label, _ = int8_names(config)
    if jobs > 1 and scenes > 1:
        from bevcc_bevfusion.sharded import run_sharded

        runs = run_sharded(directory, config, scenes, device, min(jobs, scenes), stream)
    else:
        runs = set_runs(directory, config, device, stream)
        run_sets(runs, val, stream)
    rows, parity = [], []
    for run in runs:
        float_map, torch_map, files_map, run_parity = run.result(val)
        name = "float (FP16 files)" if run.label == "fp16" else f"{label} (INT8 files)"
        rows.append(MetricRow(name, torch_map, files_map, float=float_map))
        parity += run_parity
    step = one_detection_step([truth(s) for s in val], CLASSES)
    return Evaluation(
        "BEV mAP",
        scenes,
        rows,
        parity,
        metric_step=step,
        notes=[
            (
                "onnxruntime runs the ONNX files as written, in their tensors' types (fp16 float "
                "layers; Q/DQ with fp16 scales), without graph rewrites; bevcc's libspconv "
                "interpreter runs the lidar file."
            ),
            (
                "head.bbox: compared on its dense heatmap and its sorted query scores (top-K breaks "
                "ties in its own order in each runtime)."
            ),
        ],
    )


def set_runs(directory: Path, config, device: str, stream, references: bool = True) -> list:
    """The FP16 set's run (when DIR/fp16 exists) and the INT8 set's. `references=False` builds
    them without their PyTorch models (nothing runs through them: they only collect results)."""
    if references:
        float_model = reference_model(config, directory, quantized=False, device=device)
    else:
        float_model = object()  # only tells the INT8 run to keep separate float parity
    _, set_name = int8_names(config)
    print(
        "INT8 set: the files vs the float PyTorch model, and vs the PyTorch fake-quant model "
        "they were exported from (exactness)",
        file=stream,
        flush=True,
    )
    int8 = SetRun(
        directory,
        reference_model(config, directory, quantized=True, device=device) if references else None,
        "int8",
        set_name,
        float_model=float_model,
        reference_name="fake-quant",
    )
    runs = [int8]
    if (directory / "fp16").is_dir():
        print("FP16 set: the files vs the float PyTorch model", file=stream, flush=True)
        fp16_reference = float_model if references else None
        runs.insert(0, SetRun(directory / "fp16", fp16_reference, "float", "fp16"))
    return runs
