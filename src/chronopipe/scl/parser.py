"""The SCL grammar on PLY's LALR parser, and ``parse`` / ``parse_lines``.

Grammar (whitespace between tokens is ignored; tokens in lexer.py)::

    stmts : stmts WORD EQUALS value                            {"key", "value"}
          | stmts WORD EQUALS value LPAREN stmts RPAREN        {"key", "value", "children"}
          | stmts WORD EQUALS LPAREN stmts RPAREN              {"key", "value": None, "children"}
          | <empty>
    value : WORD | NUMBER | STRING

``value`` is spelt out in each production (seven in all) so that a statement costs one reduction:
PLY's parser is pure Python and its reductions are the expensive part. Lists grow in place.
Empty parentheses (``k=()``, ``k=v()``) are an error: children are one statement or more.

The tables are built once per process (no ``parsetab.py`` or ``parser.out`` written, nothing
logged); PLY parser objects hold the state of the parse in progress, so each thread parses with
its own copy (sharing the tables) and its own lexer clone.
"""

from __future__ import annotations

import copy
import io
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple

from ply import lex, yacc

from .errors import ParseFailure, SCLSyntaxError, error_at, show_token
from .lexer import base_lexer, tokens, unescape  # noqa: F401 (PLY's yacc reads ``tokens`` from this module)

__all__ = ["Line", "build_parser", "parse", "parse_lines"]

Statement = dict[str, Any]


def _rule(grammar: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Give a PLY action its production (PLY reads ``__doc__``; set here, it survives ``python -OO``)."""

    def attach(action: Callable[[Any], None]) -> Callable[[Any], None]:
        action.__doc__ = grammar
        return action

    return attach


# The actions read ``p.slice`` (PLY 3.11's symbols of the production; ply is pinned) rather than
# ``p[i]``, which is a Python method call per access.


@_rule("stmts : ")
def p_empty(p: Any) -> None:
    p.slice[0].value = []


@_rule("stmts : stmts WORD EQUALS WORD")
def p_word(p: Any) -> None:
    s = p.slice
    (stmts := s[1].value).append({"key": s[2].value, "value": s[4].value})
    s[0].value = stmts


@_rule("stmts : stmts WORD EQUALS NUMBER")
def p_number(p: Any) -> None:
    s = p.slice
    (stmts := s[1].value).append({"key": s[2].value, "value": _number(s[4])})
    s[0].value = stmts


@_rule("stmts : stmts WORD EQUALS STRING")
def p_string(p: Any) -> None:
    s = p.slice
    (stmts := s[1].value).append({"key": s[2].value, "value": unescape(s[4].value[1:-1])})
    s[0].value = stmts


@_rule("stmts : stmts WORD EQUALS WORD LPAREN stmts RPAREN")
def p_word_children(p: Any) -> None:
    s = p.slice
    if not (children := s[6].value):
        raise _empty_parentheses(s[7])
    (stmts := s[1].value).append({"key": s[2].value, "value": s[4].value, "children": children})
    s[0].value = stmts


@_rule("stmts : stmts WORD EQUALS NUMBER LPAREN stmts RPAREN")
def p_number_children(p: Any) -> None:
    s = p.slice
    if not (children := s[6].value):
        raise _empty_parentheses(s[7])
    (stmts := s[1].value).append({"key": s[2].value, "value": _number(s[4]), "children": children})
    s[0].value = stmts


@_rule("stmts : stmts WORD EQUALS STRING LPAREN stmts RPAREN")
def p_string_children(p: Any) -> None:
    s = p.slice
    if not (children := s[6].value):
        raise _empty_parentheses(s[7])
    (stmts := s[1].value).append({"key": s[2].value, "value": unescape(s[4].value[1:-1]), "children": children})
    s[0].value = stmts


@_rule("stmts : stmts WORD EQUALS LPAREN stmts RPAREN")
def p_children(p: Any) -> None:
    s = p.slice
    if not (children := s[5].value):
        raise _empty_parentheses(s[6])
    (stmts := s[1].value).append({"key": s[2].value, "value": None, "children": children})
    s[0].value = stmts


def p_error(tok: lex.LexToken | None) -> None:
    """PLY calls this on a syntax error: stop (``parse`` explains), never recover and lose statements."""
    raise _Unexpected(tok)


class _Unexpected(Exception):  # noqa: N818 (internal: parse turns it into an SCLSyntaxError)
    def __init__(self, tok: lex.LexToken | None) -> None:
        super().__init__(tok)
        self.tok = tok


def _number(tok: lex.LexToken) -> Decimal:
    try:
        return Decimal(tok.value)
    except InvalidOperation:  # an exponent beyond what decimal can hold
        raise ParseFailure(tok.lexpos, tok.value, f"unexpected number {show_token(tok.value)}: out of range") from None


def _empty_parentheses(rparen: lex.LexToken) -> ParseFailure:
    return ParseFailure(rparen.lexpos, ")", "unexpected ')', expected a key: empty parentheses")


def build_parser(errorlog: Any = None) -> yacc.LRParser:
    """A new PLY LALR parser for SCL: no table or debug file written; ``errorlog`` (default: none)
    gets PLY's warnings. ``parse`` builds one per process; tests use this to check for conflicts."""
    return yacc.yacc(module=sys.modules[__name__], start="stmts", debug=False, write_tables=False, optimize=False,
                     errorlog=errorlog or yacc.NullLogger())


_built: yacc.LRParser | None = None
_build_lock = threading.Lock()
_local = threading.local()


def _thread_parser() -> tuple[lex.Lexer, yacc.LRParser]:
    """This thread's lexer and parser: copies of the ones built once per process."""
    try:
        return _local.pair
    except AttributeError:
        pass
    global _built
    with _build_lock:
        if _built is None:
            _built = build_parser()
    _local.pair = pair = (base_lexer().clone(), copy.copy(_built))
    return pair


def parse(text: str) -> list[Statement]:
    """The statements of SCL ``text``: ``{"key", "value"}`` dicts, plus ``"children"`` when nested.

    Values are ``str`` (words and strings), ``decimal.Decimal`` (numbers, exact), or ``None`` for
    ``key=(...)``. Newlines are whitespace here (``parse_lines`` parses line by line). Raises
    ``SCLSyntaxError`` (line, column, token, caret excerpt) on bad input; prints nothing.

    >>> parse('key=value(key1=value1 key2=value2 key3="string \\\\(\\\\"paren quoted\\\\"\\\\)")')
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'key': 'key', 'value': 'value', 'children': [{'key': 'key1', 'value': 'value1'},
     {'key': 'key2', 'value': 'value2'}, {'key': 'key3', 'value': 'string ("paren quoted")'}]}]
    >>> parse("n = -4.1E+7  group=(w=123_hello)")  # doctest: +NORMALIZE_WHITESPACE
    [{'key': 'n', 'value': Decimal('-4.1E+7')},
     {'key': 'group', 'value': None, 'children': [{'key': 'w', 'value': '123_hello'}]}]
    """
    return _parse(text, 1)


def _parse(text: str, first_line: int) -> list[Statement]:
    if not isinstance(text, str):
        raise TypeError(f"SCL text must be a str, not {type(text).__name__}")
    lexer, parser = _thread_parser()
    try:
        return parser.parseopt_notrack(text, lexer)
    except ParseFailure as failure:
        raise error_at(text, failure.pos, failure.message, failure.token, first_line) from None
    except _Unexpected as unexpected:
        raise _explain(text, parser, unexpected.tok, first_line) from None
    finally:  # keep neither the text nor the result alive until this thread's next parse
        parser.symstack = parser.statestack = lexer.lexdata = None


def _explain(text: str, parser: yacc.LRParser, tok: lex.LexToken | None, first_line: int) -> SCLSyntaxError:
    """What was found and what the parser state accepts there, as an ``SCLSyntaxError``."""
    opened = [sym for sym in parser.symstack if sym.type == "LPAREN"]
    expected = set(parser.action[parser.state])
    expected.discard("$end" if opened else "RPAREN")  # LALR merges the top level and nested states
    stack = parser.symstack
    empty = getattr(stack[-1], "value", None) in ([], 0)  # no statement yet (a count in stream.py's parser)
    if stack[-1].type == "LPAREN" or (empty and stack[-2].type == "LPAREN"):
        expected.discard("RPAREN")  # the grammar takes "()" and its action rejects it: ask for a statement
    names = ["a value"] if "NUMBER" in expected else ["a key"] if "WORD" in expected else []
    names += [name for kind, name in _EXPECTED if kind in expected]
    if tok is None:
        pos, token, found = len(text.rstrip()), "", "end of input"
    else:
        pos, token, found = tok.lexpos, tok.value, _KINDS[tok.type] + show_token(tok.value)
    message = f"unexpected {found}"
    if names:
        message += ", expected " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])
    if tok is None and opened:
        where = error_at(text, opened[-1].lexpos, "", "(", first_line)
        message += f" (the '(' at line {where.line}, column {where.column} is not closed)"
    elif tok is not None and tok.type == "RPAREN" and not opened:
        message += " (no '(' is open)"
    return error_at(text, pos, message, token, first_line)


_KINDS = {"NUMBER": "number ", "WORD": "word ", "STRING": "string ", "EQUALS": "", "LPAREN": "", "RPAREN": ""}
_EXPECTED = (("EQUALS", "'='"), ("LPAREN", "'('"), ("RPAREN", "')'"), ("$end", "the end of the input"))


class Line(NamedTuple):
    """One line of ``parse_lines``: its 1-based ``number``, and its ``statements`` or its ``error``."""

    number: int
    statements: list[Statement] | None
    error: SCLSyntaxError | None = None


def parse_lines(source: str | Iterable[str], *, errors: Literal["raise", "yield"] = "raise") -> Iterator[Line]:
    """Parse SCL line by line: a ``Line`` for every line of ``source`` (blank lines give ``[]``).

    ``source`` is SCL text (a ``str``, split at ``\\n``) or an iterable of lines such as an open text
    file. A statement cannot span lines. ``errors="raise"`` raises the first ``SCLSyntaxError``
    (its ``line`` is the line number in ``source``) after yielding the lines before it;
    ``errors="yield"`` yields ``Line(number, None, error)`` for a bad line and goes on.

    >>> for line in parse_lines("a=1\\n\\nb=(c=x)\\nd=(", errors="yield"):
    ...     print(line.number, line.statements, line.error and line.error.message)
    1 [{'key': 'a', 'value': Decimal('1')}] None
    2 [] None
    3 [{'key': 'b', 'value': None, 'children': [{'key': 'c', 'value': 'x'}]}] None
    4 None unexpected end of input, expected a key (the '(' at line 4, column 3 is not closed)
    """
    if errors not in ("raise", "yield"):
        raise ValueError(f"errors must be 'raise' or 'yield', not {errors!r}")
    lines = io.StringIO(source, newline="\n") if isinstance(source, str) else source
    for number, line in enumerate(lines, 1):
        try:
            result = Line(number, _parse(line.rstrip("\r\n"), number))
        except SCLSyntaxError as exc:
            if errors == "raise":
                raise
            result = Line(number, None, exc)
        yield result
