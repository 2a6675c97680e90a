"""The modules plugin authors may import from, and nothing else: bevcc's public API.

Each module named here lists its public names in `__all__`; any other module, and any name not in
its module's `__all__`, is internal and may change without notice. tests/test_public_api.py holds
this repo's plugins to the list (bevcc.testing.private_imports is the checker), so a plugin that
needs something internal makes it public here first, on purpose.
"""

PUBLIC_MODULES = (
    # the core: Pass, compile, errors, the hookimpl marker; what plugin hooks are handed
    "bevcc",
    "bevcc.errors",
    "bevcc.hookspecs",
    "bevcc.pass_info",
    "bevcc.registry",
    "bevcc.plugins",
    # the IRs a pass reads and writes, and the FX frontend's specialization
    "bevcc.ir.base",
    "bevcc.ir.fx",
    "bevcc.ir.onnx",
    "bevcc.ir.specialize",
    # what passes, model builders and a set's `evaluate` callable build on
    "bevcc.quant.quantizer",
    "bevcc.pm.pipeline",
    "bevcc.config",
    "bevcc.loading",
    "bevcc.batching",
    "bevcc.deploy.evaluation",
    "bevcc.sparse.interpreter",
    "bevcc.sparse.libspconv_check",
    "bevcc.lint.checks",
    # progress of long loops and phases (a plugin's model builder, a set's `evaluate`)
    "bevcc.progress",
    # where passes run the model: the compile's device, moving models and batches there
    "bevcc.device",
    # TensorRT's Q/DQ rules as data, and the FX spelling of their ops
    "bevcc.trt.rules",
    "bevcc.trt.fx_ops",
    # TensorRT's INT8 multi-head-attention fusion rule (attention passes and checks)
    "bevcc.trt.mha",
    # seeded reference models and inputs; helpers for plugins' tests
    "bevcc.reference",
    "bevcc.testing",
)
