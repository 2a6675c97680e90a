"""The built-in passes, registered through the same hooks as any plugin (plugin name `bevcc`)."""

from bevcc import hookimpl


@hookimpl
def bevcc_register_passes(registry):
    from bevcc.passes.bn_fold.fx import BatchNormFoldFx
    from bevcc.passes.bn_fold.onnx import BatchNormFoldOnnx
    from bevcc.passes.check.onnx import Check
    from bevcc.passes.cleanup.onnx import Cleanup
    from bevcc.passes.dce.fx import DeadCodeElimination
    from bevcc.passes.qdq_insert.fx import QdqInsertFx
    from bevcc.passes.qdq_insert.onnx import QdqInsertOnnx
    from bevcc.passes.quantizer_unify.fx import QuantizerUnifyFx
    from bevcc.passes.quantizer_unify.onnx import QuantizerUnifyOnnx
    from bevcc.passes.sensitivity_disable.fx import SensitivityDisable
    from bevcc.passes.sensitivity_disable.onnx import SensitivityDisableOnnx
    from bevcc.passes.sparse_conv_quant.fx import SparseConvQuant

    registry.add_pass(DeadCodeElimination)
    registry.add_pass(BatchNormFoldFx)
    registry.add_pass(BatchNormFoldOnnx)
    registry.add_pass(QdqInsertFx)
    registry.add_pass(QdqInsertOnnx)
    registry.add_pass(QuantizerUnifyFx)
    registry.add_pass(QuantizerUnifyOnnx)
    registry.add_pass(SparseConvQuant)
    registry.add_pass(SensitivityDisable)
    registry.add_pass(SensitivityDisableOnnx)
    registry.add_pass(Check)
    registry.add_pass(Cleanup)


@hookimpl
def bevcc_register_backends(registry):
    from bevcc.passes.export.fx import Export
    from bevcc.passes.export_libspconv.fx import ExportLibspconv

    registry.add_backend(Export)
    registry.add_backend(ExportLibspconv)


@hookimpl
def bevcc_register_metrics(registry):
    from bevcc.sensitivity.metrics import BUILTIN

    for name, fn in BUILTIN.items():
        registry.add_metric(name, fn)


@hookimpl
def bevcc_register_models(registry):
    from bevcc.reference.tiny_cnn import tiny_cnn
    from bevcc.sparse.tracing import spconv_installed

    registry.add_model("tiny_cnn", tiny_cnn)
    if spconv_installed():
        from bevcc.reference.sparse_encoder import sparse_encoder
        from bevcc.reference.tiny_sparse import tiny_sparse

        registry.add_model("tiny_sparse", tiny_sparse)
        registry.add_model("sparse_encoder", sparse_encoder)


@hookimpl
def bevcc_register_leaf_modules(registry):
    from bevcc.quant.modules import QUANT_CLASSES
    from bevcc.quant.quantizer import TensorQuantizer
    from bevcc.sparse import tracing

    # Models that already hold bevcc quantizers (QAT checkpoints) trace as they were built.
    registry.add_leaf_module(TensorQuantizer)
    for quant_class in QUANT_CLASSES.values():
        registry.add_leaf_module(quant_class)
    tracing.register(registry)
