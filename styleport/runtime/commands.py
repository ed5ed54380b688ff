"""CLI verbs of styleport.runtime: `add_parsers(sub, common)` adds them to the `styleport` parser.

`common` carries shared helpers from styleport.cli (e.g. `common.add_loss_net(parser)`).
Each verb's function takes the parsed args and returns an exit code; user errors raise
styleport.errors.StyleportError subclasses (one line, exit code per the contract).
"""


def add_parsers(sub, common) -> None:
    return None
