"""Pipeline text: `fx(bn_fold,qdq_insert{calibrator=histogram:mse}),export,onnx(check)`.

Grammar (whitespace between tokens is ignored and not printed back):
    pipeline := element ("," element)*
    element  := IR "(" step ("," step)* ")"    passes that run on one IR
              | step                            a conversion between IRs, e.g. `export`
    step     := WORD options?
    options  := "{" WORD "=" value ("," WORD "=" value)* "}"
    value    := run of characters other than , { } ( ) " and whitespace  |  "quoted \\" text"
              | nothing: `key=` before `,` or `}` is the empty value, as `key=""` is
Printing a parsed pipeline gives the canonical text; canonical text prints back unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bevcc.errors import UsageError

__all__ = ["IRGroup", "Pipeline", "StepSpec", "parse_pipeline"]

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_BARE_VALUE = re.compile(r'[^,{}()"\s]+')


@dataclass
class StepSpec:
    """One pass (or conversion) as written: its word and its options as raw text, in order."""

    name: str
    options: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        if not self.options:
            return self.name
        return self.name + "{" + ",".join(f"{k}={_quote(v)}" for k, v in self.options) + "}"


@dataclass
class IRGroup:
    """Passes that run on one IR: `fx(a,b)`."""

    ir: str
    steps: list[StepSpec]

    def text(self) -> str:
        return f"{self.ir}(" + ",".join(s.text() for s in self.steps) + ")"


@dataclass
class Pipeline:
    elements: list[IRGroup | StepSpec]

    def text(self) -> str:
        return ",".join(e.text() for e in self.elements)

    def step_names(self) -> list[str]:
        names = []
        for element in self.elements:
            names += (
                [s.name for s in element.steps] if isinstance(element, IRGroup) else [element.name]
            )
        return names

    __str__ = text


def _quote(value: str) -> str:
    if value and _BARE_VALUE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, expected: str):
        got = repr(self.text[self.pos]) if self.pos < len(self.text) else "end of text"
        raise UsageError(
            f"pipeline text: expected {expected} at column {self.pos + 1}, got {got}, "
            f"in '{self.text}'"
        )

    def skip_space(self):
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str):
        if self.peek() != char:
            self.fail(f"'{char}'")
        self.pos += 1

    def word(self, what: str) -> str:
        self.skip_space()
        m = _WORD.match(self.text, self.pos)
        if not m:
            self.fail(what)
        self.pos = m.end()
        return m.group()

    def value(self) -> str:
        self.skip_space()
        if self.peek() == '"':
            self.pos += 1
            out = []
            while self.pos < len(self.text) and self.text[self.pos] != '"':
                if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                    self.pos += 1
                out.append(self.text[self.pos])
                self.pos += 1
            if self.pos >= len(self.text):
                self.fail("closing '\"'")
            self.pos += 1
            return "".join(out)
        if self.peek() in (",", "}"):  # `key=}`: the empty value, which the option then judges
            return ""
        m = _BARE_VALUE.match(self.text, self.pos)
        if not m:
            self.fail("an option value")
        self.pos = m.end()
        return m.group()

    def step(self) -> StepSpec:
        spec = StepSpec(self.word("a pass name"))
        if self.peek() == "{":
            self.pos += 1
            while True:
                key = self.word("an option name")
                self.expect("=")
                spec.options.append((key, self.value()))
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.expect("}")
                break
        return spec

    def element(self) -> IRGroup | StepSpec:
        start = self.pos
        name = self.word("an IR group such as fx(...) or a conversion such as export")
        if self.peek() == "(":
            self.pos += 1
            steps = [self.step()]
            while self.peek() == ",":
                self.pos += 1
                steps.append(self.step())
            self.expect(")")
            return IRGroup(name, steps)
        self.pos = start
        return self.step()

    def pipeline(self) -> Pipeline:
        if not self.text.strip():
            raise UsageError(
                "pipeline text is empty; write IR(pass,pass{option=value}),conversion,... "
                "(`bevcc passes` lists them)"
            )
        elements = [self.element()]
        while self.peek() == ",":
            self.pos += 1
            elements.append(self.element())
        if self.peek():
            self.fail("',' or end of text")
        return Pipeline(elements)


def placed_steps(pipeline: Pipeline, input_kind: str, ir_kinds, resolve):
    """Each step with what `resolve(name, ir, conversion)` finds for it (a pass class or its
    declaration, anything with `output_kind()`), after checking that every IR group runs on the
    IR the pipeline holds at that point. Yields (step spec, resolved, IR kind after the step)."""
    kind = input_kind
    for element in pipeline.elements:
        if isinstance(element, IRGroup):
            if element.ir not in ir_kinds:
                raise UsageError(
                    f"unknown IR '{element.ir}' in pipeline; known: {', '.join(ir_kinds)}"
                )
            if element.ir != kind:
                raise UsageError(
                    f"'{element.text()}' runs on {element.ir}, but the pipeline holds "
                    f"{kind} there; convert first (e.g. export) or regroup"
                )
            for spec in element.steps:
                yield spec, resolve(spec.name, kind, False), kind
        else:
            resolved = resolve(element.name, kind, True)
            kind = resolved.output_kind()
            yield element, resolved, kind


def parse_pipeline(text: str) -> Pipeline:
    """Parse pipeline text; a syntax error is one UsageError naming the column."""
    return _Parser(text).pipeline()
