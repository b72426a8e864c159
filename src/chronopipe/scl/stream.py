"""``parse_json``: SCL text straight to JSON text, in linear time and memory, with no statement built.

``to_json(parse(text))`` builds every statement as a dict (with a ``Decimal`` per number) before
writing any JSON: about 80 bytes of memory per byte of input, so a 10 MB line needed a gigabyte.
``parse_json`` runs the same PLY lexer and LALR tables with other actions: each statement is written
as JSON the moment the parser reduces it, and a nested statement's ``{"key": ..., "value": ...,
"children": [`` when its ``(`` opens (the empty ``stmts`` reduction after the ``(``). A list of
statements on the parser's stack is a count, not a list. Memory is the JSON text (about 3.7 bytes
per byte of SCL, ASCII: one byte a character) in chunks; nothing grows with the nesting depth but
the parser's stack.

The result, joined, is exactly ``to_json(parse(text))``, and a bad text raises exactly the
``SCLSyntaxError`` that ``parse`` raises (tests/test_scl_stream.py checks both on random input).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii as _encode  # type: ignore[attr-defined]
from typing import Any

from ply import lex

from . import parser as _grammar
from .errors import ParseFailure, error_at
from .lexer import unescape

__all__ = ["CHUNK_STATEMENTS", "parse_json"]

CHUNK_STATEMENTS = 4096  # statements joined into one chunk string (and one progress call)

Progress = Callable[[int], None]


class _Stream:
    """One thread's lexer, parser (the shared tables, the streaming actions) and output buffers."""

    def __init__(self) -> None:
        lexer, tree_parser = _grammar._thread_parser()
        self.lexer = lexer.clone()
        self.parser = copy.copy(tree_parser)
        self.parts: list[str] = []  # the JSON of the statements since the last chunk
        self.chunks: list[str] = []
        self.progress: Progress | None = None
        actions = _actions(self)
        productions = []
        for production in tree_parser.productions:
            production = copy.copy(production)
            if production.func:
                production.callable = actions[production.func]
            productions.append(production)
        self.parser.productions = productions

    def flush(self) -> None:
        """Join the parts into one chunk; report the offset reached."""
        self.chunks.append("".join(self.parts))
        self.parts.clear()
        if self.progress is not None:
            self.progress(min(self.lexer.lexpos, self.lexer.lexlen))


def _actions(stream: _Stream) -> dict[str, Callable[[Any], None]]:
    """The streaming actions, by the name of the tree-building action of the same production."""
    parts, flush = stream.parts, stream.flush
    append = parts.append

    def number(tok: lex.LexToken) -> str:
        return str(_grammar._number(tok))

    def leaf(s: Any, value: str) -> None:
        count = s[1].value
        append(f'{", " if count else ""}{{"key": {_encode(s[2].value)}, "value": {value}}}')
        s[0].value = count + 1
        if len(parts) >= CHUNK_STATEMENTS:
            flush()

    def p_empty(p: Any) -> None:
        p.slice[0].value = 0
        stack = p.stack
        if stack[-1].type != "LPAREN":  # the top level
            return
        # a "(" opens: write its statement's head, ``{"key": K, "value": V, "children": [``
        if stack[-2].type == "EQUALS":
            outer, key, value = stack[-4].value, stack[-3].value, "null"
        else:
            outer, key, tok = stack[-5].value, stack[-4].value, stack[-2]
            if tok.type == "WORD":
                value = _encode(tok.value)
            elif tok.type == "STRING":
                value = _encode(unescape(tok.value[1:-1]))
            else:
                try:
                    value = str(Decimal(tok.value))
                except InvalidOperation:  # raised when the statement is reduced, as ``parse`` does
                    value = "null"
        append(f'{", " if outer else ""}{{"key": {_encode(key)}, "value": {value}, "children": [')
        if len(parts) >= CHUNK_STATEMENTS:
            flush()

    def p_word(p: Any) -> None:
        s = p.slice
        leaf(s, _encode(s[4].value))

    def p_number(p: Any) -> None:
        s = p.slice
        leaf(s, number(s[4]))

    def p_string(p: Any) -> None:
        s = p.slice
        leaf(s, _encode(unescape(s[4].value[1:-1])))

    def close(s: Any, children: int, rparen: lex.LexToken) -> None:
        if not children:
            raise _grammar._empty_parentheses(rparen)
        append("]}")
        s[0].value = s[1].value + 1
        if len(parts) >= CHUNK_STATEMENTS:
            flush()

    def p_word_children(p: Any) -> None:
        s = p.slice
        close(s, s[6].value, s[7])

    def p_number_children(p: Any) -> None:
        s = p.slice
        _grammar._number(s[4])  # out of range: the error ``parse`` gives, at the same point
        close(s, s[6].value, s[7])

    def p_children(p: Any) -> None:
        s = p.slice
        close(s, s[5].value, s[6])

    return {"p_empty": p_empty, "p_word": p_word, "p_number": p_number, "p_string": p_string,
            "p_word_children": p_word_children, "p_number_children": p_number_children,
            "p_string_children": p_word_children, "p_children": p_children}


_local = threading.local()


def _thread_stream() -> _Stream:
    try:
        return _local.stream
    except AttributeError:
        _local.stream = stream = _Stream()
        return stream


def parse_json(text: str, *, first_line: int = 1, progress: Progress | None = None) -> list[str]:
    """The JSON text of SCL ``text``'s statements, as chunks: ``"".join(parse_json(t)) == to_json(parse(t))``.

    Memory and time are linear in ``text`` (no statement is built); ``progress`` (optional) is
    called now and then with the offset in ``text`` parsed so far. ``first_line`` is the line
    number of ``text``'s first line in error messages.

    Raises:
        SCLSyntaxError: ``text`` does not parse (the same error as ``parse``'s).
        TypeError: ``text`` is not a ``str``.

    >>> parse_json('a=1 b=(c="x y")')
    ['[', '{"key": "a", "value": 1}, {"key": "b", "value": null, "children": [{"key": "c", "value": "x y"}]}', ']']
    """
    if not isinstance(text, str):
        raise TypeError(f"SCL text must be a str, not {type(text).__name__}")
    stream = _thread_stream()
    lexer, parser = stream.lexer, stream.parser
    stream.progress = progress
    stream.chunks.append("[")
    try:
        parser.parseopt_notrack(text, lexer)
        stream.flush()
        stream.chunks.append("]")
        return stream.chunks
    except ParseFailure as failure:
        raise error_at(text, failure.pos, failure.message, failure.token, first_line) from None
    except _grammar._Unexpected as unexpected:
        raise _grammar._explain(text, parser, unexpected.tok, first_line) from None
    finally:  # keep neither the text nor the output alive until this thread's next parse
        parser.symstack = parser.statestack = lexer.lexdata = None
        stream.chunks = []
        stream.parts.clear()
        stream.progress = None

