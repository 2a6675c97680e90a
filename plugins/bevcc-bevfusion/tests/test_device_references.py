"""`bevcc evaluate --device cuda` rebuilds the PyTorch references on the GPU, then runs them on
the CPU beside the deployed files: their bn_fold must keep sparse conv biases outside the conv
(spconv's CPU kernels reject one inside, where `auto` puts it on CUDA)."""

import re
from pathlib import Path

from bevcc_bevfusion.deployed import sparse_bias_outside

from bevcc.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "bevcc_bevfusion" / "bevfusion.toml"


def test_every_fx_bn_fold_keeps_sparse_biases_outside_and_nothing_else_changes():
    config = load_config(CONFIG)
    changed = sparse_bias_outside(config)
    for before, after in zip(config.files, changed.files, strict=True):
        want = re.sub(r"\bbn_fold(?=[,)])", "bn_fold{sparse_bias=outside}", before.pipeline)
        assert after.pipeline == want
        assert (after.name, after.input, after.calib) == (before.name, before.input, before.calib)
    assert sum("sparse_bias=outside" in f.pipeline for f in changed.files) == 4


def test_a_bn_fold_that_says_where_keeps_its_choice():
    config = load_config(CONFIG)
    config.files[0].pipeline = "fx(bn_fold{sparse_bias=inside},qdq_insert),export"
    assert sparse_bias_outside(config).files[0].pipeline == config.files[0].pipeline
