"""Without an optional dependency, `chronopipe run` / `lint` say which extra to install, in one line."""

import subprocess
import sys

import pytest

# The interpreter runs the command with imports of `missing` failing as they do where it is not installed.
HIDE = """
import builtins, sys
real = builtins.__import__
def hidden(name, *args, **kwargs):
    if name.partition(".")[0] == {missing!r}:
        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    return real(name, *args, **kwargs)
builtins.__import__ = hidden
from chronopipe.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize(("missing", "extra"), [("pydantic", "runs"), ("yaml", "runs")])
@pytest.mark.parametrize("command", ["run", "lint"])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, missing, extra, command):
    config = tmp_path / "pipeline.yml"
    config.write_text("runners: []\n")
    code = HIDE.format(missing=missing, argv=[command, str(config)])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"chronopipe {command}: needs {missing}: pip install 'chronopipe[{extra}]'\n"
