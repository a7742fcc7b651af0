"""Finding user code named ``package.module:Name`` (``--model``, ``--callback``)."""

from __future__ import annotations

import importlib
from typing import Type

from mnist_core.errors import MnistCoreError, one_line


def import_attr(path: str, where: str, error: Type[MnistCoreError]):
    """The object ``package.module:Name`` (``Name`` may be dotted) names.

    Args:
        path: ``package.module:Name``.
        where: How messages name it (``--model 'pkg.mod:Net'``).
        error: The error class raised.

    Raises:
        error: the path is malformed, the module cannot be imported or lacks the name.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise error(f"{where}: expected package.module:Name")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise error(f"{where}: cannot import module {module_name!r} ({type(e).__name__}: {one_line(e)})") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise error(f"{where}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    return target
