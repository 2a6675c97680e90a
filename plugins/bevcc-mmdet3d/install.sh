#!/usr/bin/env bash
# Installs mmdet3d 1.4 for bevcc-mmdet3d into a venv without touching its torch or numpy:
#   plugins/bevcc-mmdet3d/install.sh .venv/bin/pip
# The OpenMMLab packages go in with --no-deps: their declared requirements would pull
# open3d, tensorboard, nuscenes-devkit, ... (dataset and visualization tools bevcc never
# imports) and opencv-python with GUI libraries. What they import when mmdet3d.models and
# mmdet.models load is installed explicitly below. mmcv-lite has no compiled ops; the plugin
# provides the `mmcv._ext` stand-in at import time (bevcc_mmdet3d/ext_standin.py).
set -euo pipefail
pip="${1:-.venv/bin/pip}"
here="$(cd "$(dirname "$0")" && pwd)"
quiet=(--quiet --disable-pip-version-check)
"$pip" install "${quiet[@]}" --no-deps mmengine==0.10.7 mmcv-lite==2.1.0 mmdet==3.3.0 \
    mmdet3d==1.4.0
# Import-time needs of the four (each checked against numpy 2.4 / Python 3.11 wheels):
# addict, yapf (+platformdirs): mmengine.config; cv2: mmcv.image; numba (+llvmlite):
# mmdet3d's box NMS; pycocotools, shapely, six, terminaltables: mmdet; pyquaternion: mmdet3d's
# datasets, which mmdetection3d's projects/BEVFusion imports (the mmdet3d BEVFusion set).
"$pip" install "${quiet[@]}" --no-deps addict==2.4.0 yapf==0.43.0 platformdirs==4.14.8 \
    opencv-python-headless==5.0.0.93 numba==0.68.1 llvmlite==0.50.0 pycocotools==2.0.11 \
    shapely==2.2.0 six==1.17.0 terminaltables==3.1.10 pyquaternion==0.9.9
"$pip" install "${quiet[@]}" --no-deps -e "$here"
