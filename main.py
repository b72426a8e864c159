"""The main job on the bundled sample data: merge the UCI occupancy files chronologically.

    venv/bin/python main.py [--files GLOB] [--key date] [--direction min|max] [--output merged.csv]
"""

import sys

from chronopipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["merge", *sys.argv[1:]]))
