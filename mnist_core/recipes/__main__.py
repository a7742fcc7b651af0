"""``python -m mnist_core.recipes``: list the built-in recipes with what they measured, or show one.

    python -m mnist_core.recipes                       # table: name, kind, model, data, result
    python -m mnist_core.recipes --show fast-mnist-cpu # the recipe file, ready to copy and edit
"""

from __future__ import annotations

import sys
from typing import List, Optional

from mnist_core import cli

PROG = "mnist_core.recipes"


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mnist_core.recipes``."""
    parser = cli.ArgumentParser(prog=PROG, description="List the built-in training recipes, or show one.")
    parser.add_argument("--show", metavar="NAME", help="print the recipe's TOML file")
    args = parser.parse_args(argv)

    def body():
        # No TensorFlow here: listing recipes is reading a few small files.
        from mnist_core import recipes
        from mnist_core.reporting import make_console

        console = make_console()
        if args.show:
            recipe = recipes.get(args.show)
            sys.stdout.write(recipe.path.read_text("utf-8"))
            return 0
        from rich.table import Table

        table = Table(title="recipes: python -m mnist_core.train --config recipes/NAME.toml --data-dir DIR",
                      title_justify="left")
        for column in ("name", "kind", "script", "model", "data", "measured"):
            table.add_column(column, overflow="fold")
        for recipe in recipes.all_recipes():
            o, m = recipe.options, recipe.meta
            table.add_row(recipe.name, m.get("kind", ""), m.get("script", ""),
                          f"{o.get('model', 'cnn')}, {o.get('optimizer', 'adam')}, {o.get('epochs', 5)} epochs",
                          m.get("data", ""), m.get("result", "not measured"))
        console.print(table)
        return 0

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
