"""SCL commands: parse them, read the keys Conditions match on, write them back, and see a bad one explained.

    venv/bin/python examples/scl.py
"""

from pathlib import Path

from chronopipe import scl

COMMANDS = Path(__file__).resolve().parent / "data" / "commands.scl"

# The seed's example: nested statements as dicts, in key, value, children order.
stmts = scl.parse(r'key=value(key1=value1 key2=value2 key3="string \(\"paren quoted\"\)")')
print(scl.to_json(stmts))

# A file, line by line: numbers are exact Decimals, children nest.
with COMMANDS.open(encoding="utf-8") as f:
    for line in scl.parse_lines(f):
        for stmt in line.statements:
            children = ", ".join(f"{c['key']}={c['value']!r}" for c in stmt.get("children", []))
            print(f"line {line.number}: {stmt['key']}={stmt['value']!r} ({children})")

# Canonical SCL back: parse(dumps(x)) == x.
move = scl.parse("move = axis( x = +1.25  speed = 3e1 )")
print(scl.dumps(move))
assert scl.parse(scl.dumps(move)) == move

# Bad input: an SCLSyntaxError (a ValueError) that says where and what; parse() raises it,
# parse_lines(..., errors="yield") hands each bad line's error over and goes on.
for line in scl.parse_lines('move=axis(x=1 y=2\nlog=(message="unterminated)\nmode=manual', errors="yield"):
    print(line.error or line.statements)
