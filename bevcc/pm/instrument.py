"""Pass instrumentation output: IR printing between passes and the timing table."""

from __future__ import annotations

from typing import TextIO


def print_ir(label: str, ir, modified: bool, stream: TextIO) -> None:
    state = "changed" if modified else "unchanged"
    stream.write(f"// ----- IR after {label} ({state}) ----- //\n")
    stream.write(ir.dump())
    stream.flush()


def print_timing(records, stream: TextIO) -> None:
    total_pass = sum(r.seconds for r in records)
    total_verify = sum(r.verify_seconds for r in records)
    stream.write("===- bevcc pass timing -===\n")
    stream.write(f"{'pass (s)':>10} {'verify (s)':>11} {'nodes':>7}  step\n")
    for r in records:
        flag = "" if r.modified else "  (unchanged)"
        stream.write(f"{r.seconds:10.4f} {r.verify_seconds:11.4f} {r.nodes_after:7d}  {r.name}{flag}\n")
    stream.write(f"{total_pass:10.4f} {total_verify:11.4f} {'':7}  total\n")
    stream.flush()
