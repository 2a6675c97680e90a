"""The `bevcc` command line: compile | passes | plugins."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import warnings

from bevcc.errors import BevccError, UsageError

TRACEBACK_ENV = "BEVCC_TRACEBACK"


class _Parser(argparse.ArgumentParser):
    # Text after the options that needs the plugins (e.g. the registered models): computed only
    # when help is printed, so parsing a command line loads nothing for it.
    epilog_source = None

    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def format_help(self) -> str:
        if self.epilog_source is not None:
            self.epilog = self.epilog_source()
        return super().format_help()


def _models_epilog() -> str:
    """compile's INPUT by name: the models the built-ins and installed plugins register, read
    from their declarations (no deferred load runs, so no torch)."""
    from bevcc.plugins import default_plugins

    names = default_plugins().registry.model_names()
    return (
        f"registered models (INPUT by name): {', '.join(names) or 'none'}; `bevcc plugins` says "
        "which plugin adds each. A callable reference (INPUT or --calib) is path/file.py:name or "
        "package.module:name, e.g. --calib bevcc.reference.tiny_cnn:calibration_batches."
    )


def build_parser() -> argparse.ArgumentParser:
    from bevcc.version import __version__

    parser = _Parser(prog="bevcc", description="Compile perception models for INT8 TensorRT.")
    parser.add_argument("--version", action="version", version=f"bevcc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # the long-running commands report progress (bevcc/progress.py)
    long_running = _Parser(add_help=False)
    long_running.add_argument(
        "--progress",
        nargs="?",
        const="on",
        choices=("auto", "on", "lines", "off"),
        metavar="MODE",
        help="progress on stderr: auto (default; a bar on a terminal, timestamped lines "
        "where CI is set, else nothing), on (the bare flag: a bar on a terminal, lines "
        "otherwise), lines, off; BEVCC_PROGRESS sets the default",
    )

    # the commands that run models (calibration, sensitivity runs) run them on a device
    on_device = _Parser(add_help=False)
    on_device.add_argument(
        "--device",
        type=_device,
        metavar="DEVICE",
        help="where models run while passes calibrate and measure them: cpu, cuda, cuda:N or "
        "auto (default: cuda where torch sees a GPU, else cpu; a config's `device` key sets "
        "it too); written files do not depend on it beyond the statistics' rounding "
        "(README, 'Devices')",
    )

    c = sub.add_parser(
        "compile",
        help="run a pipeline of passes and write the result",
        parents=[long_running, on_device],
    )
    c.epilog_source = _models_epilog
    c.add_argument(
        "input",
        nargs="?",
        help="a registered model's name (listed below), model.onnx, a saved .pt, or "
        "file.py:callable / package.module:callable returning an nn.Module or "
        "(module, example inputs)",
    )
    c.add_argument(
        "-o",
        "--output",
        help="output file (.onnx / .pt) or directory (for a set config: the directory of the set)",
    )
    c.add_argument(
        "--pipeline",
        help="IR(pass,pass{option=value}),conversion,... (default: "
        "the named pipeline default-fx, or default-onnx for .onnx)",
    )
    c.add_argument(
        "--config",
        help="TOML file with input, pipeline, calib, output, or a set "
        "of [[files]] (docs/deploy_sets.md)",
    )
    c.add_argument(
        "--calib",
        metavar="DATA",
        help=".npz, a directory of .npz, or file.py:callable / package.module:callable "
        "returning an iterable of batches (dicts of input name -> array)",
    )
    c.add_argument(
        "--calib-batch-size",
        type=int,
        metavar="N",
        help="samples per calibration batch for a model whose batch is dynamic "
        "(a static batch always splits the data into batches of its size)",
    )
    c.add_argument("--print-pipeline", action="store_true", help="print the pipeline text")
    c.add_argument("--timing", action="store_true", help="print time per pass")
    c.add_argument("--print-ir-after", metavar="WHAT", help="NAME[,NAME], all, or change")
    c.add_argument(
        "--print-ir-after-failure",
        action="store_true",
        help="when a pass fails, print the IR it left behind (stderr)",
    )
    c.add_argument(
        "--reproducer",
        metavar="DIR",
        help="when a pass fails, write DIR: the IR before it, the pipeline from it "
        "on, and the bevcc compile command that reruns it (README.txt)",
    )
    c.add_argument(
        "--fp16-set",
        action="store_true",
        help="set config: also write DIR/fp16/, every file without its quantization "
        "passes (the config key fp16_set = true does the same)",
    )
    c.add_argument(
        "--no-verify",
        action="store_true",
        help="skip IR verification and the modified check after each pass",
    )

    p = sub.add_parser("passes", help="list the registered passes and named pipelines")
    p.add_argument(
        "--json", action="store_true", help="print them as JSON (passes with options, pipelines)"
    )
    p.add_argument("--markdown", action="store_true", help="print docs/passes.md")

    sens = sub.add_parser(
        "sensitivity",
        help="rank quantized layers by the accuracy INT8 "
        "costs; write the report and a disable list",
        parents=[long_running, on_device],
    )
    sens.epilog_source = _models_epilog
    sens.add_argument("input", help="the model, as for compile (a registered name is listed below)")
    sens.add_argument(
        "-o",
        "--output",
        required=True,
        help="directory for the report, the disable list and the model",
    )
    sens.add_argument(
        "--calib",
        required=True,
        metavar="DATA",
        help="calibration / evaluation data, as for compile",
    )
    sens.add_argument(
        "--calib-batch-size",
        type=int,
        metavar="N",
        help="samples per batch for a model whose batch is dynamic",
    )
    sens.add_argument(
        "--prefix",
        help="passes before the analysis, on the input's IR: fx for "
        "a model, onnx for an .onnx file; '' for a file that is "
        "already Q/DQ (default: the steps before the analysis "
        "in the named pipeline sensitivity-fx or -onnx)",
    )
    budget = sens.add_mutually_exclusive_group()
    budget.add_argument(
        "--top-k", type=int, metavar="K", help="keep the K most sensitive units float"
    )
    budget.add_argument("--min-sqnr-db", type=float, metavar="D", help="greedy until SQNR >= D dB")
    budget.add_argument(
        "--max-drop",
        type=float,
        metavar="FRACTION",
        help="greedy until the task metric drops at most this fraction",
    )
    sens.add_argument("--metric", default="sqnr", help="sqnr, cosine or a plugin metric")
    sens.add_argument(
        "--mode",
        default="both",
        choices=("both", "alone_quantized", "alone_float"),
        help="how each unit is measured against float: alone_quantized (only that unit INT8), "
        "alone_float (all but that unit INT8), or both (ranked by alone_quantized, both "
        "reported) (default: %(default)s)",
    )
    sens.add_argument(
        "--eval-batches",
        type=int,
        default=4,
        metavar="N",
        help="batches of --calib each measurement runs (default: %(default)s)",
    )

    lint = sub.add_parser("lint", help="check a Q/DQ ONNX file against TensorRT's rules")
    lint.add_argument("file", help="an ONNX file (bevcc's, onnxruntime's, modelopt's, ...)")
    lint.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON (errors, predicted_reformats, qdq_pairs, int8_mac_share, "
        "problems, warnings: TensorRT operator limits)",
    )
    lint.add_argument(
        "--conv-transpose-axis",
        type=int,
        choices=(0, 1),
        default=0,
        help="expected per-channel axis of ConvTranspose weights (default 0, TensorRT's)",
    )

    ev = sub.add_parser(
        "evaluate",
        help="run a set's files as the deployment chains them; "
        "task metric and per-file parity against PyTorch",
        parents=[long_running, on_device],
    )
    ev.add_argument("directory", help="a directory written by a set compile")
    ev.add_argument(
        "--scenes", type=int, default=100, help="evaluation scenes/batches (default: %(default)s)"
    )
    ev.add_argument("--config", help="the set config (default: the one report.json records)")
    ev.add_argument("--json", metavar="FILE", help="also write the result as JSON here")

    g = sub.add_parser("plugins", help="list loaded plugins and what they added")
    g.add_argument("--json", action="store_true", help="print them as JSON")
    return parser


def _device(text: str) -> str:
    """--device's type: the accepted forms, checked without torch (bevcc.device)."""
    from bevcc.device import DeviceError, check_device

    try:
        return check_device(text)
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_compile(args) -> int:
    from bevcc.compiler import compile as run_compile
    from bevcc.config import CompileConfig, load_config

    config = load_config(args.config) if args.config else CompileConfig()
    if config.is_set:
        return _compile_set(args, config)
    if args.fp16_set:
        raise UsageError("--fp16-set applies to a set config ([[files]] tables)")
    model = args.input or config.input
    output = args.output or config.output
    if model is None:
        raise UsageError("compile needs an INPUT (or `input` in --config)")
    if output is None:
        raise UsageError("compile needs -o OUTPUT (or `output` in --config)")
    result = run_compile(
        model,
        pipeline=args.pipeline or config.pipeline,
        calib=args.calib or config.calib,
        output=output,
        verify_each=not args.no_verify,
        print_ir_after=args.print_ir_after,
        timing=args.timing,
        stream=sys.stderr,
        calib_batch_size=args.calib_batch_size,
        print_ir_after_failure=args.print_ir_after_failure,
        reproducer=args.reproducer,
        on_pipeline=(lambda text: print(text, flush=True)) if args.print_pipeline else None,
        device=args.device or config.device,
    )
    for record in result.records:
        for line in record.report:
            print(f"{record.name}: {line}", file=sys.stderr)
    print(f"wrote {result.output}", file=sys.stderr)
    if args.timing:
        from bevcc.deploy.time_accounting import time_text

        print(f"time: {result.seconds:.1f} s ({time_text(result.time)})", file=sys.stderr)
    return 0


def _compile_set(args, config) -> int:
    """A config with [[files]] tables: several deployable files into one directory."""
    from bevcc.deploy.set_compile import compile_set
    from bevcc.deploy.time_accounting import time_text

    given = [
        flag
        for flag, value in (
            ("INPUT", args.input),
            ("--pipeline", args.pipeline),
            ("--calib", args.calib),
            ("--calib-batch-size", args.calib_batch_size),
        )
        if value
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} given with {args.config}, a set config "
            "([[files]] tables); set input, pipeline and calib in the config"
        )
    if args.fp16_set:
        config.fp16_set = True
    result = compile_set(
        config,
        output=args.output,
        verify_each=not args.no_verify,
        timing=args.timing,
        print_ir_after=args.print_ir_after,
        stream=sys.stderr,
        on_pipeline=(lambda text: print(text, flush=True)) if args.print_pipeline else None,
        print_ir_after_failure=args.print_ir_after_failure,
        reproducer=args.reproducer,
        device=args.device,
    )
    print(
        f"wrote {result.output} ({len(result.files)} files, {result.report_md.name})",
        file=sys.stderr,
    )
    print(f"time: {result.seconds:.1f} s ({time_text(result.time)})", file=sys.stderr)
    return 0


def cmd_lint(args) -> int:
    from bevcc.ir.onnx import read_onnx_file
    from bevcc.lint.checks import lint_model
    from bevcc.lint.report import human

    report = lint_model(read_onnx_file(args.file), args.file, args.conv_transpose_axis)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(human(report))
    return 1 if report.errors else 0


def cmd_sensitivity(args) -> int:
    from pathlib import Path

    from bevcc.compiler import compile as run_compile
    from bevcc.frontend import input_kind
    from bevcc.plugins import default_plugins

    options = {"metric": args.metric, "mode": args.mode, "eval_batches": args.eval_batches}
    for key in ("top_k", "min_sqnr_db", "max_drop"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    # an .onnx input is analysed as ONNX (onnxruntime), anything else as FX
    kind = input_kind(args.input)
    pipeline = _sensitivity_pipeline(
        default_plugins().registry, kind, args.prefix, [(k, str(v)) for k, v in options.items()]
    )
    output = Path(args.output) / ("model.onnx" if kind == "onnx" else "model.pt")
    result = run_compile(
        args.input,
        pipeline=pipeline,
        calib=args.calib,
        output=output,
        stream=sys.stderr,
        calib_batch_size=args.calib_batch_size,
        device=args.device,
    )
    for line in result.records[-1].report:
        print(line)
    return 0


def _sensitivity_pipeline(
    registry, kind: str, prefix: str | None, options: list[tuple[str, str]]
) -> str:
    """The named pipeline sensitivity-KIND is one KIND(...) group whose last step is the
    analysis: it gets the command's options, and --prefix replaces the steps before it."""
    from bevcc.errors import PluginError
    from bevcc.pm.pipeline import IRGroup, StepSpec, parse_pipeline

    name = f"sensitivity-{kind}"
    named = parse_pipeline(registry.pipeline(name))
    (group, *rest) = named.elements
    if rest or not isinstance(group, IRGroup) or group.ir != kind:
        raise PluginError(
            f"named pipeline '{name}' is {named.text()}; `bevcc sensitivity` "
            f"needs one {kind}(...) group ending in the analysis step"
        )
    *steps, analysis = group.steps
    if prefix is None:
        prefix = ",".join(step.text() for step in steps)
    analysis = StepSpec(analysis.name, [*analysis.options, *options])
    prefix = f"{prefix.strip().rstrip(',')}," if prefix.strip() else ""
    return f"{kind}({prefix}{analysis.text()})"


def cmd_evaluate(args) -> int:
    from pathlib import Path

    from bevcc.atomic import write_text_atomic
    from bevcc.config import load_config
    from bevcc.deploy.evaluation import set_report
    from bevcc.device import resolve_device
    from bevcc.loading import load_callable

    directory = Path(args.directory)
    report = set_report(directory)
    source = args.config or report.get("config")
    if not source or not Path(source).is_file():
        raise UsageError(
            f"{directory}: its set config {source!r} is not there (paths in "
            "report.json are as given when compiling); pass --config SET.toml"
        )
    config = load_config(source)
    if not config.evaluate:
        raise UsageError(
            f"config {source} names no `evaluate`; add evaluate = "
            '"package.module:function" (the function that chains the files)'
        )
    if args.scenes < 1:
        raise UsageError("--scenes must be at least 1")
    device = resolve_device(args.device if args.device is not None else config.device)
    evaluate = load_callable(config.evaluate, "evaluate")
    extra = {}
    if _takes(evaluate, "device"):
        extra["device"] = device
    elif args.device not in (None, "cpu", "auto"):
        raise UsageError(
            f"--device {args.device}: {config.evaluate} takes no device (it runs where it "
            "runs); drop --device, or add a `device` parameter to it"
        )
    result = evaluate(
        directory=directory, config=config, scenes=args.scenes, stream=sys.stderr, **extra
    )
    sys.stdout.write(result.markdown())
    if args.json:
        write_text_atomic(Path(args.json), json.dumps(result.to_json(), indent=2) + "\n")
    failures = result.failures()
    if failures:
        more = f" (and {len(failures) - 1} more above)" if len(failures) > 1 else ""
        for line in failures[1:]:
            print(f"bevcc: also: {line}", file=sys.stderr)
        print(f"bevcc: error: evaluation failed: {failures[0]}{more}", file=sys.stderr)
        return 1
    return 0


def _takes(function, name: str) -> bool:
    """Whether `function` accepts the keyword `name` (by name or through **kwargs)."""
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def cmd_passes(args) -> int:
    from bevcc.catalog import pass_rows, passes_markdown, passes_table, pipeline_rows
    from bevcc.plugins import default_plugins

    registry = default_plugins().registry  # declarations only: imports no pass, no torch
    if args.json:
        print(
            json.dumps(
                {"passes": pass_rows(registry), "pipelines": pipeline_rows(registry)},
                indent=2,
                default=str,
            )
        )
    elif args.markdown:
        sys.stdout.write(passes_markdown(registry))
    else:
        sys.stdout.write(passes_table(registry))
    return 0


def cmd_plugins(args) -> int:
    from bevcc.catalog import plugins_table
    from bevcc.plugins import default_plugins

    infos = default_plugins().infos
    if args.json:
        print(json.dumps({"plugins": [i.as_dict() for i in infos]}, indent=2))
    else:
        sys.stdout.write(plugins_table(infos))
    return 0


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    from bevcc import progress  # light: tqdm only once a bar is drawn

    with progress.paused():  # off the progress bar's line
        sys.stderr.write(f"bevcc: warning: {message}\n")


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _one_line_warnings
    show_traceback = os.environ.get(TRACEBACK_ENV, "") not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        handler = {
            "compile": cmd_compile,
            "passes": cmd_passes,
            "plugins": cmd_plugins,
            "lint": cmd_lint,
            "sensitivity": cmd_sensitivity,
            "evaluate": cmd_evaluate,
        }
        if not hasattr(args, "progress"):  # the listing commands are quick
            code = handler[args.command](args)
        else:
            from bevcc import progress

            progress.configure(args.progress)
            # the whole command is one background step: until its first phase opens (imports,
            # plugins, checking the pipelines) the lines still show it working
            with progress.step(args.command, background=True):
                code = handler[args.command](args)
        sys.stdout.flush()  # output that fit in the buffer meets a closed pipe here, not at exit
        return code
    except BevccError as exc:
        if show_traceback:
            raise
        print(f"bevcc: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bevcc: interrupted; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        closed = [stream for stream in (sys.stdout, sys.stderr) if _reader_left(stream)]
        if closed:
            return _stop_quietly(closed)
        if show_traceback:
            raise
        return _internal_error(exc)  # some other pipe: a bug
    except OSError as exc:
        if exc.errno not in _FULL_ERRNOS:
            if show_traceback:
                raise
            return _internal_error(exc)
        # a full disk (or `> /dev/full`) is the machine's state, not a bug: say where
        where = exc.filename or "standard output"
        _stop_quietly([sys.stdout])  # what stdout still buffers cannot fail at exit again
        print(
            f"bevcc: error: cannot write {where}: {exc.strerror}; free space there or write "
            "somewhere else",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        if show_traceback:
            raise
        return _internal_error(exc)


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _internal_error(exc: Exception) -> int:
    print(
        f"bevcc: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with "
        f"{TRACEBACK_ENV}=1 for the traceback and report it)",
        file=sys.stderr,
    )
    return 70


def _reader_left(stream) -> bool:
    """Whether the reader of `stream` has gone (`bevcc lint F | head -1` after head's first
    line): poll reports an error on the writing end of a pipe nobody reads."""
    import select

    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an in-memory stream
        return False
    if not hasattr(select, "poll"):
        return stream is sys.stdout  # no poll (Windows): the usual case, a closed reader
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _stop_quietly(closed: list) -> int:
    """Stop as coreutils do when the reader of their output leaves: no message, and the status a
    shell shows for a process SIGPIPE ended (128 + 13). What is still buffered for the closed
    streams goes to /dev/null, so Python's flush at exit cannot fail again (the recipe of
    Python's signal module documentation, "Note on SIGPIPE")."""
    import signal

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in closed:
        os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return 128 + getattr(signal, "SIGPIPE", 13)


if __name__ == "__main__":
    sys.exit(main())
