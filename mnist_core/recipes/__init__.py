"""Named training recipes: TOML files of :class:`~mnist_core.config.TrainConfig` options.

A recipe is an ordinary ``--config`` file shipped with the package::

    python -m mnist_core.train --config recipes/fast-mnist-cpu.toml --data-dir ../shared/data/mnist-5k
    python -m mnist_core.recipes                      # the recipes and what each measured
    python -m mnist_core.recipes --show fast-mnist-cpu

``--config recipes/NAME.toml`` (or just ``--config NAME``) names a built-in recipe when no
such file exists where the user runs; a file that does exist always wins, so a user's own
copy of a recipe is the one used. Flags given beside ``--config`` override the recipe's values.

Besides the options, a recipe has a ``[recipe]`` table that the trainer does not read: what
it is (``kind``: ``tutorial`` or ``fast``), the data it was measured on, the accuracy and
time it reached, and the machine. ``python -m mnist_core.recipes`` lists those.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from mnist_core.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent
# The keys a [recipe] table may hold: it describes, it never configures.
META_KEYS = ("kind", "script", "description", "data", "target", "result", "time_to_target", "measured_on", "command")
_NAME = re.compile(r"(?:\./)?(?:recipes/)?([A-Za-z0-9_.-]+?)(?:\.toml)?")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A built-in recipe.

    Attributes:
        name: File name without ``.toml``; what ``--config`` and ``--show`` take.
        path: The TOML file.
        options: The TrainConfig options it sets (flags override them).
        meta: Its ``[recipe]`` table: kind, description, data, target, result, ...
    """

    name: str
    path: Path
    options: Dict
    meta: Dict


def names() -> List[str]:
    """The built-in recipes' names, sorted."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def resolve(path: str) -> str:
    """The file ``--config PATH`` reads: PATH itself if it exists, else the built-in recipe
    it names (``recipes/NAME.toml``, ``NAME.toml`` or ``NAME``), else PATH unchanged so that
    reading it reports the missing file."""
    if os.path.exists(path):
        return path
    name = _builtin(path)
    return str(RECIPES_DIR / f"{name}.toml") if name else path


def _builtin(text: str) -> Optional[str]:
    """The built-in recipe ``text`` names (``recipes/NAME.toml``, ``NAME.toml``, ``NAME``), or None."""
    match = _NAME.fullmatch(text)
    return match.group(1) if match and match.group(1) in names() else None


def split(values: Dict, flag: str) -> Tuple[Dict, Dict]:
    """Separates a config file's options from its ``[recipe]`` description.

    Raises:
        ConfigError: ``recipe`` is not a table, or holds a key that is not a description key
            (an option put under ``[recipe]`` by mistake would otherwise be ignored).
    """
    values = dict(values)
    meta = values.pop("recipe", {})
    if not isinstance(meta, dict):
        raise ConfigError(f"{flag}: 'recipe' must be a [recipe] table describing the recipe")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ConfigError(f"{flag}: [recipe] describes a recipe and sets no options; unknown key(s) "
                          f"{', '.join(unknown)} (allowed: {', '.join(META_KEYS)}; put options above [recipe])")
    return values, meta


def get(name: str) -> Recipe:
    """Loads the built-in recipe ``name``.

    Raises:
        ConfigError: no such recipe, or its file does not parse.
    """
    builtin = _builtin(name)
    if builtin is None:
        raise ConfigError(f"recipe {name!r}: unknown; choose one of {', '.join(names())}")
    path = RECIPES_DIR / f"{builtin}.toml"
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise ConfigError("recipes are TOML files and need Python 3.11+ (tomllib)") from None
    try:
        values = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"recipe {path}: {e}") from None
    options, meta = split(values, f"recipe {path}")
    return Recipe(builtin, path, options, meta)


def all_recipes(kind: Optional[str] = None) -> List[Recipe]:
    """Every built-in recipe (of one ``kind`` if given), in name order."""
    recipes = [get(name) for name in names()]
    return [r for r in recipes if kind is None or r.meta.get("kind") == kind]
