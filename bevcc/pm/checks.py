"""The manager's checks after each pass, as instrumentations: verify the IR, and hold the pass
to its `modified` claim by fingerprint.

Checks run their after_pass before any other instrumentation's, and the time they take is the
step's verify time. A check rejects a step by raising PassError.
"""

from __future__ import annotations

from bevcc.errors import InputError, PassError
from bevcc.ir.base import IRInvalid
from bevcc.pm.instrument import Instrumentation


class Fingerprints:
    """The last fingerprint taken and the IR object it belongs to, shared by the two checks.

    Nothing runs between two passes, so one pass's "after" is the next one's "before"; and on
    ONNX one serialization serves both the verifier and the fingerprint
    (IR.verify_and_fingerprint).
    """

    def __init__(self):
        self._ir = None
        self._value: str | None = None

    def of(self, ir) -> str:
        if self._ir is not ir:
            self.remember(ir, ir.fingerprint())
        return self._value

    def remember(self, ir, value: str) -> None:
        self._ir, self._value = ir, value

    def forget(self) -> None:
        """The pass about to run may change the IR in place: the fingerprint is stale then."""
        self._ir = self._value = None


# how to see a verifier's complaint about an input without bevcc, by IR kind
_CHECK_IT_YOURSELF = {
    "onnx": " (onnx.checker.check_model(FILE, full_check=True) is the same check)",
}


class VerifyEach(Instrumentation):
    """The IR a pass returns must pass its verifier (onnx.checker + strict shape inference; fx
    lint + recompile). The input is verified too, before the first pass: an input that is
    already invalid is the input's fault, not the first pass's."""

    def __init__(self, fingerprints: Fingerprints | None = None):
        self.fingerprints = fingerprints  # given when the modified check needs the fingerprint

    def before_pass(self, step, ir) -> None:
        if step.index != 0:
            return
        try:
            self._verify(ir)  # its fingerprint is the modified check's "before": no extra cost
        except IRInvalid as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            detail = " ".join(str(cause).split())  # the checker's message spans lines
            source = getattr(ir, "source", None) or f"the {ir.kind} input"
            raise InputError(
                f"{source}: the input is invalid before any pass ran ({ir.kind} verifier: "
                f"{detail}); re-export it or fix what produced it"
                + _CHECK_IT_YOURSELF.get(ir.kind, "")
            ) from exc

    def after_pass(self, step, ir, result) -> None:
        try:
            self._verify(ir)
        except IRInvalid as exc:
            raise PassError(
                f"pass '{step.pass_.name}' broke the IR (after "
                f"[{', '.join(step.ran_before)}]): {exc}"
            ) from exc

    def _verify(self, ir) -> None:
        if self.fingerprints is None:
            ir.verify()
        else:
            self.fingerprints.remember(ir, ir.verify_and_fingerprint())


class ModifiedCheck(Instrumentation):
    """A pass's `modified` must agree with the IR's fingerprint before and after it, both ways.

    Conversions are not checked: they always make a new IR.
    """

    def __init__(self, fingerprints: Fingerprints):
        self.fingerprints = fingerprints
        self._before: str | None = None

    def before_pass(self, step, ir) -> None:
        self._before = None if step.is_conversion else self.fingerprints.of(ir)
        self.fingerprints.forget()

    def after_pass(self, step, ir, result) -> None:
        if self._before is None:
            return
        changed = self.fingerprints.of(ir) != self._before
        if changed != result.modified:
            truth = "changed" if changed else "did not change"
            raise PassError(
                f"pass '{step.pass_.name}' reported modified={result.modified} but "
                f"the IR {truth} (after [{', '.join(step.ran_before)}]); its "
                "PassResult must say whether it changed the IR"
            )


def default_checks(verify_each: bool, check_modified: bool) -> list[Instrumentation]:
    """The checks the manager runs after every pass, verifier first (its error names the
    breakage, which explains a changed fingerprint too)."""
    fingerprints = Fingerprints() if check_modified else None
    checks: list[Instrumentation] = []
    if verify_each:
        checks.append(VerifyEach(fingerprints))
    if check_modified:
        checks.append(ModifiedCheck(fingerprints))
    return checks
