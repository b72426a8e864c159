"""The JSON Schema of the run configuration format, generated from the models of config.py.

docs/runs.schema.json is this schema, committed for editors and other tools; a test checks it
equals what the models generate, so it cannot drift. Regenerate it with::

    python -m chronopipe.runs.schema > docs/runs.schema.json

The schema checks the shape of a file; :func:`chronopipe.runs.config.load_config` checks more
(unique runner names, depends_on naming consumers, each variety's options).
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["json_schema", "main", "render"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"

DESCRIPTION = (
    "A chronopipe run: consumers read sources into stage folders in batches, producers load the "
    "batches of the consumers they depend on into sinks. Keys of a runner beside the common ones "
    "are options of its variety."
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a run configuration file."""
    from .config import RunConfig  # pydantic: imported when a schema is asked for

    schema = RunConfig.model_json_schema()
    schema["description"] = DESCRIPTION  # the model's docstring speaks to programmers
    return {"$schema": DIALECT, **schema}


def render() -> str:
    """The schema as the text of docs/runs.schema.json: indented JSON and a final newline."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """Write the schema to standard output."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
