"""`bevcc lint` output: a human summary, or JSON."""

from __future__ import annotations

from bevcc.lint.checks import LintReport


def macs_text(n: int) -> str:
    """A MAC count for people: 1.23G, 45.60M, 7.00k."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _labels(report: LintReport) -> str:
    """The layers not in INT8 as `module.path (onnx node name)`."""
    return ", ".join(layer.label for layer in report.layers if not layer.int8)


def human(report: LintReport) -> str:
    if report.kind == "libspconv":
        lines = [
            f"bevcc lint {report.path} (libspconv file)",
            f"  parser errors        {len(report.problems)}",
            (
                f"  INT8 layers          {report.int8_layers} of {len(report.layers)} sparse "
                "convs (their `precision` attribute)"
            ),
            (
                f"  INT8 MAC share       {100 * report.int8_mac_share:.1f}% "
                f"({macs_text(report.int8_macs)} of {macs_text(report.total_macs)} dense-equivalent "
                "MACs)"
            ),
        ]
        lines += [f"  {p}" for p in report.problems]
        if report.float_layers:
            lines.append(f"fp16 layers ({len(report.float_layers)}): " + _labels(report))
        lines.append("ok" if report.errors == 0 else f"{report.errors} error(s)")
        return "\n".join(lines)
    lines = [
        f"bevcc lint {report.path}",
        f"  Q/DQ pairs           {report.qdq_pairs}",
        f"  predicted Reformats  {report.reformats}",
        f"  encoding errors      {len(report.problems)}",
        f"  INT8 layers          {report.int8_layers} of {len(report.layers)}",
        (
            f"  INT8 MAC share       {100 * report.int8_mac_share:.1f}% "
            f"({macs_text(report.int8_macs)} of {macs_text(report.total_macs)} MACs)"
        ),
    ]
    if report.mismatches:
        lines.append("scale mismatches (each extra scale is a Reformat):")
        for m in report.mismatches:
            scales = ", ".join(f"{s:.6g}" for s in m.scales)
            lines.append(f"  {m.kind} {m.where}: scales {scales} ({', '.join(m.nodes)})")
    if report.problems:
        lines.append("encoding errors:")
        lines += [f"  {p}" for p in report.problems]
    if report.float_layers:
        lines.append(f"float layers ({len(report.float_layers)}): " + _labels(report))
    if report.typing is not None:
        lines += _typing(report.typing)
    if report.warnings:  # TensorRT operator limits: the build would fail, the file is valid
        lines.append("warnings:")
        lines += [f"  {w}" for w in report.warnings]
    lines.append("ok" if report.errors == 0 else f"{report.errors} error(s)")
    return "\n".join(lines)


def _typing(typing) -> list[str]:
    """The precision table: what each compute layer runs at on TensorRT 11 (10: --stronglyTyped)."""
    shares = ", ".join(f"{k.upper()} {100 * v:.1f}%" for k, v in typing.mac_shares().items())
    declared = typing.declared or ("none (weakly typed)" if typing.weakly_typed else "none")
    lines = [f"strong typing: declared float precision {declared}; MACs {shares or '-'}"]
    counts = {}
    for layer in typing.layers:
        counts[layer.precision] = counts.get(layer.precision, 0) + 1
    lines.append(
        "  compute layers: " + ", ".join(f"{n} {p.upper()}" for p, n in sorted(counts.items()))
    )
    lines += [
        f"  fp32 {layer.node} ({layer.op}): {layer.reason}"
        for layer in typing.layers
        if layer.precision == "fp32" and layer.reason
    ]
    lines += [f"  error: {e}" for e in typing.errors]
    lines += [f"  warning: {w}" for w in typing.warnings]
    return lines
