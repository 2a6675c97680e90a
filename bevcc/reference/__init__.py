"""Small built-in reference models, used by the README's main job and by tests.

Public for plugin authors: deterministic weights for their own reference models (`seeded`,
`randomize_batchnorm`, so BatchNorm folding has statistics to fold) and spconv inputs and blocks
(`random_voxels`, `sparse_basic_block`). Importing this package imports torch, never spconv.
"""

from bevcc.reference.seeding import randomize_batchnorm, seeded
from bevcc.reference.tiny_sparse import random_voxels, sparse_basic_block

__all__ = ["random_voxels", "randomize_batchnorm", "seeded", "sparse_basic_block"]
