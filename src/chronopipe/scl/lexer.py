"""SCL tokens, as a PLY lexer: numbers, words, strings, ``=``, ``(`` and ``)``.

Every rule is a plain regular expression, so PLY's single master regex does all the work and no
Python function runs per token (values are converted by the grammar actions, in parser.py).

* NUMBER: ``[+-]`` digits, an optional fraction, an optional exponent, or a fraction alone:
  ``1``, ``1.2``, ``+1.3``, ``-1.4``, ``.21``, ``+.22``, ``1.``, ``3e1``, ``+3E2``, ``-4.1E+7``.
  A NUMBER is the whole run of word characters, dots and signs or nothing: ``123_hello`` and
  ``1e5x`` are words, and ``1.2.3``, ``1-2``, ``+x`` are errors (neither a number nor a word).
  Digits are ASCII ``0-9``; other Unicode digits are word characters.
* WORD: ``\\w+`` (Unicode word characters) that is not a NUMBER; not followed by ``.``, ``+`` or ``-``.
* STRING: ``"..."`` on one line; a backslash escapes the next character: ``\\n``, ``\\r``, ``\\t``
  are a newline, a carriage return, a tab; any other escaped character stands for itself
  (``\\"``, ``\\\\``, ``\\(``).
* Whitespace (space, tab, CR, LF, FF, VT) between tokens is ignored.

The quantifiers are possessive and the groups atomic (Python 3.11+), so a 1 MB token is lexed in
linear time: no backtracking.
"""

# ruff: noqa: N816 (PLY's naming: t_TOKEN rules)
from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator

from ply import lex

from .errors import ParseFailure, error_at, show_token

__all__ = ["NUMBER_PATTERN", "STRING_PATTERN", "WORD_PATTERN", "base_lexer", "tokenize", "unescape"]

NUMBER_PATTERN = r"[+-]?(?>[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?>[eE][+-]?[0-9]++)?+(?![\w.+\-])"
WORD_PATTERN = r"\w++(?![.+\-])"
STRING_PATTERN = r'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"'

# PLY's names: ``tokens`` and the ``t_`` rules. PLY orders string rules by decreasing regex length,
# which puts NUMBER before WORD, as it must be (tests/test_scl_parse.py checks the order).
tokens = ("NUMBER", "STRING", "WORD", "EQUALS", "LPAREN", "RPAREN")
t_ignore = " \t\r\n\f\v"
t_NUMBER = NUMBER_PATTERN
t_STRING = STRING_PATTERN
t_WORD = WORD_PATTERN
t_EQUALS = r"="
t_LPAREN = r"\("
t_RPAREN = r"\)"

_UNTERMINATED = re.compile(r'"[^\n]*')
_RUN = re.compile(r"[\w.+\-]+")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def t_error(t: lex.LexToken) -> None:
    """No rule matches at ``t.lexpos``: raise a ``ParseFailure`` that names the offending text."""
    text, pos = t.lexer.lexdata, t.lexpos
    if text[pos] == '"':
        token = _UNTERMINATED.match(text, pos).group()  # type: ignore[union-attr]
        raise ParseFailure(pos, token, f"unexpected {show_token(token)}: unterminated string "
                                       '(a string ends with an unescaped " on the same line)')
    run = _RUN.match(text, pos)
    if run:
        token = run.group()
        raise ParseFailure(pos, token, f"unexpected {show_token(token)}: neither a number nor a word")
    raise ParseFailure(pos, text[pos], f"unexpected character {text[pos]!r}")


_base: lex.Lexer | None = None
_lock = threading.Lock()


def base_lexer() -> lex.Lexer:
    """The PLY lexer for SCL, built once per process (nothing logged, no ``lextab.py`` written).

    It is never run itself: each thread lexes with its own ``base_lexer().clone()``.
    """
    global _base
    with _lock:
        if _base is None:
            _base = lex.lex(module=sys.modules[__name__], reflags=0, optimize=False, errorlog=lex.NullLogger())
        return _base


def tokenize(text: str) -> Iterator[tuple[str, str, int]]:
    """``(type, text, offset)`` of each token of ``text``; ``SCLSyntaxError`` at the first bad one.

    >>> list(tokenize('k=123_hello(n=-4.1E+7 s="x")'))  # doctest: +NORMALIZE_WHITESPACE
    [('WORD', 'k', 0), ('EQUALS', '=', 1), ('WORD', '123_hello', 2), ('LPAREN', '(', 11),
     ('WORD', 'n', 12), ('EQUALS', '=', 13), ('NUMBER', '-4.1E+7', 14), ('WORD', 's', 22),
     ('EQUALS', '=', 23), ('STRING', '"x"', 24), ('RPAREN', ')', 27)]
    """
    lexer = base_lexer().clone()
    lexer.input(text)
    while True:
        try:
            tok = lexer.token()
        except ParseFailure as failure:
            raise error_at(text, failure.pos, failure.message, failure.token) from None
        if tok is None:
            return
        yield tok.type, tok.value, tok.lexpos


def unescape(body: str) -> str:
    """The value of a string token whose text between the quotes is ``body``.

    >>> print(unescape(r'string \\(\\"paren quoted\\"\\)'))
    string ("paren quoted")
    >>> unescape(r'tab\\there, a backslash \\\\, n\\n')
    'tab\\there, a backslash \\\\, n\\n'
    """
    if "\\" not in body:
        return body
    return _ESCAPE.sub(_replace, body)


def _replace(match: re.Match[str]) -> str:
    char = match.group(1)
    return _ESCAPES.get(char, char)
