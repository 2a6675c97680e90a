"""The two sizes of the reference: `full` is mit-han-lab's ResNet-50 camera+lidar ConvFuser config
(the architecture CUDA-BEVFusion deploys); `small` keeps every layer and scales widths and
resolutions down so it trains and compiles on 2 CPU cores. Everything size-dependent lives here."""

from __future__ import annotations

from dataclasses import dataclass

CLASSES = ("car", "truck", "pedestrian")


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: tuple[int, int]  # per camera (H, W)
    resnet_width: int  # 64 is ResNet-50
    fpn_channels: int  # GeneralizedLSSFPN out_channels
    camera_channels: int  # LSS feature channels (80 in BEVFusion)
    dbound: tuple[float, float, float]  # depth bins (start, stop, step) in metres
    xbound: tuple[float, float, float]  # camera BEV grid before the vtransform downsample
    voxel_size: tuple[float, float, float]
    lidar_base_channels: int  # SparseEncoder widths scale (16 is real)
    lidar_out_channels: int  # SparseEncoder output channels (x 2 z-cells in BEV)
    fuser_channels: int  # ConvFuser out
    second_channels: tuple[int, int]  # SECOND out_channels
    fpn_out_channels: tuple[int, int]  # SECONDFPN out_channels
    head_hidden: int
    num_proposals: int
    max_objects: int  # objects per synthetic scene (upper bound)
    lidar_azimuths: int

    @property
    def point_range(self) -> tuple[float, float, float, float, float, float]:
        lo, hi, _ = self.xbound
        return (lo, lo, -5.0, hi, hi, 3.0)

    @property
    def sparse_shape(self) -> tuple[int, int, int]:
        lo, hi, _ = self.xbound
        cells = round((hi - lo) / self.voxel_size[0])
        return (cells, cells, 41)

    @property
    def bev_cells(self) -> int:
        """Cells per side of the fused BEV map (camera grid downsampled 2x, lidar stride 8)."""
        lo, hi, step = self.xbound
        return round((hi - lo) / step) // 2

    @property
    def depth_bins(self) -> int:
        start, stop, step = self.dbound
        return round((stop - start) / step)

    @property
    def feature_size(self) -> tuple[int, int]:
        return (self.image_size[0] // 8, self.image_size[1] // 8)


FULL = Preset(
    name="full",
    image_size=(256, 704),
    resnet_width=64,
    fpn_channels=256,
    camera_channels=80,
    dbound=(1.0, 60.0, 0.5),
    xbound=(-54.0, 54.0, 0.3),
    voxel_size=(0.075, 0.075, 0.2),
    lidar_base_channels=16,
    lidar_out_channels=128,
    fuser_channels=256,
    second_channels=(128, 256),
    fpn_out_channels=(256, 256),
    head_hidden=128,
    num_proposals=200,
    max_objects=40,
    lidar_azimuths=1800,
)

SMALL = Preset(
    name="small",
    image_size=(64, 176),
    resnet_width=8,
    fpn_channels=32,
    camera_channels=16,
    dbound=(1.0, 45.0, 1.0),
    xbound=(-32.0, 32.0, 1.0),
    voxel_size=(0.25, 0.25, 0.2),
    lidar_base_channels=8,
    lidar_out_channels=32,
    fuser_channels=48,
    second_channels=(32, 64),
    fpn_out_channels=(48, 48),
    head_hidden=32,
    num_proposals=32,
    max_objects=14,
    lidar_azimuths=720,
)

PRESETS = {p.name: p for p in (FULL, SMALL)}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset '{name}'; known: {', '.join(PRESETS)}") from None
