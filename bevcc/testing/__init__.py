"""Test helpers for bevcc and its plugins (public for plugin authors):

- golden-graph comparison (`compare_golden`; as a pytest plugin, the `golden` fixture);
- `run_bevcc`: the CLI in a subprocess, as a user runs it (`NO_PLUGINS`: without the installed
  plugins);
- `plugin_registry`: a registry with the installed plugins, failing clearly when yours is not;
- `private_imports`: where code reaches past bevcc's public API (bevcc.PUBLIC_MODULES);
- `scaled_timeout`: a test's time limit for a wait, grown to this machine's load and speed;
- `run_watched`: a long command ended only when it stops using CPU (a hang), never for being slow.

Seeded reference weights and spconv inputs are in bevcc.reference.
"""

from bevcc.testing.cli import NO_PLUGINS, run_bevcc
from bevcc.testing.golden import GoldenMismatch, compare_golden
from bevcc.testing.plugins import plugin_registry
from bevcc.testing.public_imports import private_imports, public_names
from bevcc.testing.timeouts import scaled_timeout
from bevcc.testing.watchdog import run_watched

__all__ = [
    "NO_PLUGINS",
    "GoldenMismatch",
    "compare_golden",
    "plugin_registry",
    "private_imports",
    "public_names",
    "run_bevcc",
    "run_watched",
    "scaled_timeout",
]
