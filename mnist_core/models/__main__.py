"""``python -m mnist_core.models``: list the registered models, or summarise one.

    python -m mnist_core.models                      # table: name, parameters, input shape
    python -m mnist_core.models --model cnn --summary  # Keras summary of one model
    python -m mnist_core.models --model my_pkg.nets:Net --summary
"""

from __future__ import annotations

import sys
from typing import List, Optional

from mnist_core import cli

PROG = "mnist_core.models"


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mnist_core.models``."""
    cli.quiet_tensorflow_logs()
    parser = cli.ArgumentParser(prog=PROG, description="List the registered models or summarise one.")
    parser.add_argument("--model", metavar="NAME|module:Name", help="the model to describe")
    parser.add_argument("--summary", action="store_true", help="print the Keras summary of --model and exit")
    args = parser.parse_args(argv)
    if args.summary and not args.model:
        parser.error("--summary needs --model NAME")

    def body():
        cli.import_tensorflow()
        from rich.table import Table

        from mnist_core import models
        from mnist_core.reporting import make_console

        console = make_console()
        specs = [models.get(args.model)] if args.model else [models.get(name) for name in models.names()]
        if args.summary:
            model = models.build(specs[0])
            model.summary(print_fn=lambda line, **kwargs: console.print(line, markup=False, highlight=False))
            return 0
        table = Table(title="registered models" if not args.model else None, title_justify="left")
        for column, justify in (("name", "left"), ("parameters", "right"), ("input shape", "left"),
                                ("description", "left")):
            table.add_column(column, justify=justify)
        for spec in specs:
            model = models.build(spec)
            table.add_row(spec.name, f"{model.count_params():,}", str(tuple(spec.input_shape)), spec.description)
        console.print(table)
        return 0

    return cli.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
