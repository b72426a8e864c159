"""The main job on the bundled sample data: merge the UCI occupancy files chronologically.

    venv/bin/python main.py [--files PATH...] [--key date] [--direction min|max] [--output merged.csv]

The same as ``chronopipe merge-csv``, which takes the files it merges: without ``--files``,
this script gives it the three files bundled in ``examples/data/`` (the library itself reads
no file of the repository). ``--help`` lists the options and the exit statuses.
"""

import os  # loaded with the interpreter: nothing for a Ctrl-C to break before the try below
import sys

#: The bundled sample data, merged when no --files is given.
BUNDLED = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples", "data", name)
           for name in ("datatest.txt", "datatraining.txt", "datatest2.txt")]


def arguments(argv: list[str]) -> list[str]:
    """``chronopipe merge-csv``'s arguments: ``argv``, with the bundled files unless it names files
    (``--files``, ``--files=...`` or an abbreviation of it, as argparse takes it)."""
    names_files = any(a.startswith("--f") and "--files".startswith(a.split("=", 1)[0]) for a in argv)
    return ["merge-csv", *argv] if names_files else ["merge-csv", "--files", *BUNDLED, *argv]


if __name__ == "__main__":
    try:
        from chronopipe.cli import main
    except KeyboardInterrupt:  # Ctrl-C while Python was still importing: no traceback
        print("chronopipe: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main(arguments(sys.argv[1:])))
