"""The pass contract: a named, typed, verifiable rewrite of one IR (or a conversion between two)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from bevcc.errors import PluginError
from bevcc.ir.base import IR


@dataclass(frozen=True)
class NoOptions:
    """Options of a pass that takes none."""


@dataclass
class PassResult:
    """What a pass returns: the IR (the same object or a new one) and whether it changed.

    `modified` is part of the contract: the manager compares fingerprints and names a pass whose
    claim is wrong. `stats` is free-form and ends up in reports (e.g. folds per pattern).
    """

    ir: IR
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassContext:
    """What the compilation offers a pass beyond the IR: plugin registry, calibration data, ..."""

    registry: Any = None
    calib: Any = None
    quant_config: Any = None  # a QuantConfig / dict from the Python API (qdq_insert's default)
    artifacts_dir: Any = None  # where passes put reports next to the output (None: no output)
    # passes also record there what they decided, for Pass.replay_options (a set compile)
    records_decisions: bool = False
    # where passes that run the model run it (bevcc/device.py): "cpu", "cuda" or "cuda:N",
    # already resolved; the model rests on the CPU between passes
    device: str = "cpu"
    history: list[str] = field(default_factory=list)


@dataclass
class ReportContext:
    """Where a set compile's file was built, for report sections that name files."""

    artifacts: Any  # the directory the passes of this file wrote their artifacts to
    build_dir: Any  # the set's build directory; report paths are relative to it


# What a pass states about itself, as class attributes (and as a PassInfo declaration's fields).
DECLARED = ("name", "ir", "summary", "produces", "quantizes", "types")


class Pass:
    """Base class of every pass.

    Subclasses set `name` (the pipeline word), `summary` (one line), `ir` (the IR kind the pass
    reads), optionally `produces` (the IR kind it returns, for conversions such as `export`) and
    `Options` (a dataclass whose fields are the pass's typed options), and implement `call`.

    A pass declared by a bevcc.pass_info.PassInfo (the built-ins: each pass folder's __init__)
    states them once, there: `class QdqInsertFx(Pass, declaration=FX)` takes them from it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    ir: ClassVar[str]
    produces: ClassVar[str | None] = None
    Options: ClassVar[type] = NoOptions
    # True for passes that add, share or switch quantizers: a float (FP16) set drops them and
    # keeps the rest of the pipeline (folding, cleanup, export).
    quantizes: ClassVar[bool] = False
    # True for passes that type the file for TensorRT's strong typing (fp16 tensors where the
    # layers are to run fp16): a set file declared int8 or fp16 needs one in its pipeline.
    types: ClassVar[bool] = False

    def __init_subclass__(cls, declaration: Any = None, **kwargs):
        """`declaration`: the PassInfo naming this class (its `impl`); the class reads name, ir,
        summary, produces, quantizes, types and Options from it instead of repeating them."""
        super().__init_subclass__(**kwargs)
        if declaration is None:
            return
        where = f"{cls.__module__}:{cls.__qualname__}"
        if declaration.impl != where:
            raise PluginError(
                f"{where} takes the declaration of {declaration.impl} (pass "
                f"'{declaration.name}' on {declaration.ir}); bind it to its own"
            )
        for attr in DECLARED:
            setattr(cls, attr, getattr(declaration, attr))
        cls.Options = declaration.options

    def __init__(self, options: Any = None, context: PassContext | None = None):
        if options is None:
            options = self.Options()
        if not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} expects {self.Options.__name__} options")
        self.options = options
        self.context = context or PassContext()

    @classmethod
    def output_kind(cls) -> str:
        return cls.produces or cls.ir

    @classmethod
    def is_conversion(cls) -> bool:
        return cls.output_kind() != cls.ir

    def requires(self, ir: IR) -> None:
        """Raise (any exception, ideally a BevccError) if `ir` does not meet the preconditions."""

    def report(self, stats: dict) -> list[str]:
        """Human lines for `bevcc compile` about what this run did (from its PassResult stats)."""
        return []

    def call(self, ir: IR) -> PassResult:
        raise NotImplementedError(f"{type(self).__name__}.call")

    # ---- what set compiles and `bevcc evaluate` (bevcc/deploy) ask a pass: the layer above the
    # core names no pass, so a pass that has something to say there says it here ----
    @classmethod
    def set_report_section(cls, runs: list[dict], context: ReportContext) -> dict[str, Any]:
        """Keys this pass adds to a file's report.json entry, from the stats of its runs in the
        file's pipeline (oldest first). Use keys of your own; a file of the set whose pipeline
        does not run the pass gets them as null."""
        return {}

    @classmethod
    def set_report_lines(cls, entry: dict) -> list[str]:
        """Lines for the file's section of report.md, read from the entry's keys."""
        return []

    @classmethod
    def replay_options(
        cls, options: list[tuple[str, str]], reports: Any
    ) -> list[tuple[str, str]] | None:
        """The options that repeat what this step decided in a set compile whose pass artifacts
        are in the directory `reports` (`bevcc evaluate` rebuilds the PyTorch model that way),
        or None to run the step as written."""
        return None

    def ensures(self, ir: IR) -> None:
        """Raise if the pass's postconditions do not hold on its result."""

    def __call__(self, ir: IR) -> PassResult:
        self.requires(ir)
        result = self.call(ir)
        if isinstance(result, PassResult):
            self.ensures(result.ir)
        return result
