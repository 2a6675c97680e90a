"""bevcc-mmdet3d: compile mmdet3d 1.4 models built from config dicts.

Importing the package (bevcc imports it when it loads plugins) puts the `mmcv._ext` stand-in in
place when mmcv is installed without compiled ops, so mmdet3d then imports in any bevcc process.
"""

from bevcc_mmdet3d import ext_standin

ext_standin.install()
