"""The user's mmdetection3d checkout: `projects/BEVFusion` imported, its detector config read.

mmdet3d's BEVFusion is not in the mmdet3d package: it lives in the repository's `projects/`
folder and is imported from a checkout (`custom_imports` in its configs). bevcc-mmdet3d finds
that checkout in BEVCC_MMDET3D_CHECKOUT (the folder holding `projects/BEVFusion`), never
downloads it, and fails in one line naming the variable when it is missing.

The project's compiled ops (bev_pool, voxelization) are CUDA extensions a user builds with its
setup.py; the deployable subnets use none of them, so where they are not built, stand-ins that
raise when called (as mmcv's, ext_standin.py) let the package import.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

from bevcc.errors import InputError
from bevcc_mmdet3d import ext_standin, mm

CHECKOUT_ENV = "BEVCC_MMDET3D_CHECKOUT"
PACKAGE = "projects.BEVFusion.bevfusion"
CONFIG = "projects/BEVFusion/configs/bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py"
COMPILED_OPS = (f"{PACKAGE}.ops.bev_pool.bev_pool_ext", f"{PACKAGE}.ops.voxel.voxel_layer")
CLONE_HINT = (
    "git clone -b v1.4.0 https://github.com/open-mmlab/mmdetection3d and set "
    f"{CHECKOUT_ENV}=/path/to/mmdetection3d"
)


def checkout() -> Path:
    """The checkout folder BEVCC_MMDET3D_CHECKOUT names, checked to hold projects/BEVFusion."""
    text = os.environ.get(CHECKOUT_ENV, "").strip()
    if not text:
        raise InputError(
            f"mmdet3d's BEVFusion is read from your mmdetection3d checkout, and {CHECKOUT_ENV} "
            f"is not set; {CLONE_HINT}"
        )
    root = Path(text).expanduser().resolve()
    if not (root / "projects" / "BEVFusion" / "bevfusion" / "__init__.py").is_file():
        raise InputError(
            f"{CHECKOUT_ENV}={text} holds no projects/BEVFusion/bevfusion package; point it at "
            f"the top folder of an mmdetection3d v1.4 clone ({CLONE_HINT})"
        )
    return root


@cache
def detector_config(root: Path):
    """The lidar-camera detector's config (mmengine Config) with the project imported."""
    import_project(root)
    from mmengine.config import Config

    path = root / CONFIG
    if not path.is_file():
        raise InputError(f"{path}: no such config in the checkout; check out mmdetection3d v1.4")
    return Config.fromfile(str(path))


def import_project(root: Path) -> None:
    """Import projects.BEVFusion from `root`, registering its modules in mmdet3d's registry."""
    mm.models_registry()  # mmcv's stand-in, mmdet's and mmdet3d's modules
    for name in COMPILED_OPS:
        ext_standin.install(name)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        __import__(PACKAGE)
    except ImportError as exc:
        raise InputError(f"cannot import {PACKAGE} from {root} ({exc}); {mm.INSTALL_HINT}") from exc
    from mmengine.registry import init_default_scope

    # The head builds its coder and assigners from mmdet's task registry by unprefixed names
    # that only mmdet3d's scope resolves (mmdet3d's own tools set it the same way).
    init_default_scope("mmdet3d")
