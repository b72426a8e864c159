"""The main job on the bundled sample data: `venv/bin/python main.py [CSV files...]`."""

import sys

from chronopipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
