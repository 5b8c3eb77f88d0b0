"""Command groups of ``python -m tasks`` that live in their own module.

Each module here defines ``register(sub, fmt)``: it adds its sub-parser(s) to the CLI's
sub-parsers and sets ``handler`` (a function ``args -> exit code``) with ``set_defaults``. The
CLI (tasks/cli.py) registers every module of this package, so a command group (``review``,
``quarantine``, ``models``...) is one file that nothing else has to list.
"""

from __future__ import annotations

import importlib
import pkgutil


def register_all(sub, fmt) -> None:
    """Add every command group of this package, in name order (stable ``--help``)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{info.name}").register(sub, fmt)
