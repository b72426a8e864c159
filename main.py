"""The main job on the bundled sample data: merge the UCI occupancy files chronologically.

    venv/bin/python main.py [--files PATH...] [--key date] [--direction min|max] [--output merged.csv]

The same as ``chronopipe merge-csv``; ``--help`` lists the options and the exit statuses.
"""

import sys

if __name__ == "__main__":
    try:
        from chronopipe.cli import main
    except KeyboardInterrupt:  # Ctrl-C while Python was still importing: no traceback
        print("chronopipe: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main(["merge-csv", *sys.argv[1:]]))
