"""``edgedeploy zoo``: list the model zoo; import trained weights into a zoo model.

``edgedeploy zoo`` lists the models (their MODEL spec for ``edgedeploy convert``);
``edgedeploy zoo weights NAME SOURCE --out FILE.pt`` loads Keras .h5 / SavedModel / .tflite
weights into the PyTorch port and writes a state_dict for ``edgedeploy convert --weights``.
"""

from __future__ import annotations

import argparse

from rich.table import Table

from toolchain.cli import ui


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="model zoo: list models, import trained weights")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    zsub.add_parser("list", help="list the zoo's models (the default)")
    w = zsub.add_parser("weights", help="Keras .h5 / SavedModel / .tflite → state_dict .pt")
    w.add_argument("name", help="zoo model name (see `edgedeploy zoo`)")
    w.add_argument("source", help="Keras .h5 file, SavedModel folder or .tflite with weights")
    w.add_argument("--out", required=True, metavar="FILE.pt", help="state_dict to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toolchain import zoo  # torch is imported only when weights are converted

    if getattr(args, "zoo_command", None) == "weights":
        path = zoo.save_weights(args.name, args.source, args.out)
        ui.console.print(
            f"wrote {path} — use: edgedeploy convert {zoo.get(args.name).spec} --weights {path}"
        )
        return 0
    table = Table(title="edgedeploy model zoo")
    for col in ("name", "MODEL spec", "task", "input", "params", "trained weights"):
        table.add_column(col, no_wrap=col != "trained weights")
    for m in zoo.ZOO:
        shape = "×".join(str(d) for d in m.input_shape)
        table.add_row(m.name, m.spec, m.task, shape, f"{m.params:,}", m.weights)
    ui.console.print(table)
    return 0
