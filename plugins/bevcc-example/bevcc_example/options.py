"""remove_identity's options, in a module of their own: the plugin's declaration (plugin.py) reads
them on every command, and this imports nothing heavy (the pass module imports onnx)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoveIdentityOptions:
    keep_outputs: bool = field(
        default=True,
        metadata={"help": "keep Identity nodes that produce a graph output, so output names stay"},
    )
