"""SCLSyntaxError: where SCL text went wrong, as line, column, the offending token and a caret excerpt."""

from __future__ import annotations

__all__ = ["ParseFailure", "SCLSyntaxError", "error_at", "show_token"]

EXCERPT_WIDTH = 80  # characters of the offending line shown around the column
TOKEN_WIDTH = 40  # characters of the offending token shown in the message


class SCLSyntaxError(ValueError):
    """SCL text that does not parse.

    ``message`` says what was found (``unexpected ...``) and, where it helps, what was expected;
    ``line`` and ``column`` are 1-based (columns count characters); ``token`` is the offending
    text (``""`` at the end of the input); ``excerpt`` is the offending line (or a window of it)
    with a caret under the column. ``str()`` gives ``line L, column C: message`` and the excerpt.

    >>> err = SCLSyntaxError("unexpected ')'", 1, 4, ")", "a=1)\\n   ^")
    >>> print(err)
    line 1, column 4: unexpected ')'
    a=1)
       ^
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, message: str, line: int, column: int, token: str, excerpt: str) -> None:
        super().__init__(message, line, column, token, excerpt)  # args: so that it pickles
        self.message = message
        self.line = line
        self.column = column
        self.token = token
        self.excerpt = excerpt

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}\n{self.excerpt}"


class ParseFailure(Exception):  # noqa: N818 (internal: never escapes chronopipe.scl)
    """Raised inside the lexer and parser, which do not know the line offset; ``parse`` turns it into
    an ``SCLSyntaxError``. ``pos`` is the offset in the text parsed."""

    def __init__(self, pos: int, token: str, message: str) -> None:
        super().__init__(pos, token, message)
        self.pos = pos
        self.token = token
        self.message = message


def show_token(text: str) -> str:
    """``text`` quoted for a message, cut to ``TOKEN_WIDTH`` characters.

    >>> show_token("=")
    "'='"
    >>> show_token("x" * 100)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' (100 characters)"
    """
    if len(text) <= TOKEN_WIDTH:
        return repr(text)
    return f"{text[:TOKEN_WIDTH] + '...'!r} ({len(text):,} characters)"


def error_at(text: str, pos: int, message: str, token: str, first_line: int = 1) -> SCLSyntaxError:
    """An ``SCLSyntaxError`` for offset ``pos`` of ``text``, whose first line is line ``first_line``.

    >>> print(error_at("a=1\\nb=(", 6, "unexpected end of input", ""))
    line 2, column 3: unexpected end of input
    b=(
      ^
    """
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start:] if end < 0 else text[start:end]
    if line.endswith("\r"):
        line = line[:-1]
    column = pos - start
    return SCLSyntaxError(message, first_line + text.count("\n", 0, start), column + 1, token,
                          _excerpt(line, column))


def _excerpt(line: str, column: int) -> str:
    """``line`` (a window of ``EXCERPT_WIDTH`` characters around ``column`` if longer) and a caret line."""
    start = 0
    if len(line) > EXCERPT_WIDTH:
        start = max(0, min(column - EXCERPT_WIDTH // 2, len(line) - EXCERPT_WIDTH))
    shown = "".join(c if c.isprintable() or c == "\t" else "?" for c in line[start:start + EXCERPT_WIDTH])
    before = "..." if start else ""
    after = "..." if start + EXCERPT_WIDTH < len(line) else ""
    pad = "".join("\t" if c == "\t" else " " for c in shown[:column - start])
    return f"{before}{shown}{after}\n{' ' * len(before)}{pad}^"
