"""``chronopipe`` (the console script) and ``python -m chronopipe``: the command line.

This module imports nothing but ``sys`` before its ``try``, so a Ctrl-C while the command is still
starting up (importing) is exit status 130 with one line, never a traceback.
"""

import sys


def main() -> int:
    """Import the command line and run it; the exit status."""
    try:
        from chronopipe.cli import main as run
    except KeyboardInterrupt:
        print("chronopipe: interrupted", file=sys.stderr)
        return 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
