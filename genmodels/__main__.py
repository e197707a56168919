"""`python -m genmodels` and the `genmodels` command.

Importing torch, Optuna and TensorBoard takes seconds; Ctrl-C during them ends with one line and
exit code 130, like Ctrl-C at any other moment, not with a traceback of the import machinery.
"""

import sys


def main() -> int:
    try:
        from genmodels.cli import main as run  # the one import inside a function: see the docstring
    except KeyboardInterrupt:
        print("genmodels: interrupted while starting", file=sys.stderr)
        return 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
