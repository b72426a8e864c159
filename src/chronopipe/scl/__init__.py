"""SCL: the command syntax of validation runs, parsed exactly (PLY lexer and LALR parser).

``parse(text)`` gives the statements of ``key=value``, ``key=value(children...)`` and
``key=(children...)`` as ``{"key", "value"[, "children"]}`` dicts (numbers as exact ``Decimal``),
``parse_lines`` does it line by line, ``dumps`` writes canonical SCL back
(``parse(dumps(x)) == x``), ``to_json`` / ``from_json`` keep the Decimals exact in JSON, and
``parse_json`` goes from SCL straight to the JSON of ``to_json(parse(text))`` in linear memory.
Bad input raises ``SCLSyntaxError`` (a ``ValueError``) with line, column, token and a caret excerpt.

>>> from chronopipe import scl
>>> stmts = scl.parse('speed=+3E2(unit="m/s" tol=.5)')
>>> scl.to_json(stmts)
'[{"key": "speed", "value": 3E+2, "children": [{"key": "unit", "value": "m/s"}, {"key": "tol", "value": 0.5}]}]'
>>> scl.dumps(stmts)
'speed=3E+2(unit="m/s" tol=0.5)'
"""

from .dump import dumps, from_json, to_json
from .errors import SCLSyntaxError
from .parser import Line, parse, parse_lines
from .stream import parse_json

__all__ = ["Line", "SCLSyntaxError", "dumps", "from_json", "parse", "parse_json", "parse_lines", "to_json"]
