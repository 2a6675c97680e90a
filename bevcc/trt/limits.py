"""TensorRT's documented limits that perception heads reach, as data: `bevcc lint` warns where a
graph passes one and quotes it. Only limits stated in TensorRT's own documentation belong here,
with where it states them; a head's TopK over every class and cell of the BEV grid (K = classes
x H x W) is the usual way to pass one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_RANK", "TOPK_AXES", "TOPK_K", "TOPK_VOLUME", "Limit"]

_TOPK_PAGE = "https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/operators/TopK.html"


@dataclass(frozen=True)
class Limit:
    bound: int
    statement: str  # the limit as TensorRT's documentation states it
    source: str  # where, in words (`url` is the page)
    url: str


# TopK's k: "k <= d, k <= 3840" in the TensorRT 10 operator reference (TensorRT 8.6's said 1024)
TOPK_K = Limit(
    3840, "k <= 3840", "TensorRT operator reference, TopK; 1024 before TensorRT 10", _TOPK_PAGE
)
# the axis TopK reduces must be one of the input's last four dimensions
TOPK_AXES = Limit(
    4, "the axis must be one of the last four dimensions", "TensorRT operator reference, TopK",
    _TOPK_PAGE,
)  # fmt: skip
# TopK's input, values and indices: at most 2^31 - 1 elements each ("Volume Limits")
TOPK_VOLUME = Limit(
    2**31 - 1, "at most 2^31-1 elements", "TensorRT operator reference, TopK", _TOPK_PAGE
)
# a tensor's rank: nvinfer1::Dims64::MAX_DIMS
MAX_RANK = Limit(
    8,
    "at most 8 dimensions (Dims::MAX_DIMS)",
    "TensorRT C++ API, nvinfer1::Dims64",
    "https://docs.nvidia.com/deeplearning/tensorrt/api/c_api/classnvinfer1_1_1_dims64.html",
)
