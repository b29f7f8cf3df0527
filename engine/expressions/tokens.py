"""The lexer shared by every expression kind, and the syntax-error text DynamoDB gives.

The lexer never fails: a character no token can start with becomes an ``error`` token, so
the parser reports it like any other unexpected token, with DynamoDB's wording::

    Invalid ConditionExpression: Syntax error; token: "+", near: "a+:delta"

Names start with a letter (``_a`` and ``1a`` need a ``#placeholder``); a list index is
``0`` or a number without leading zeros.

``near`` is the source text from the token before the offending one to the token after it
(as DynamoDB prints it: ``a+:delta<b`` gives ``near: "a+:delta"``, ``attribute_type()``
gives ``token: ")", near: "()"``, and an expression that stops early gives
``token: "<EOF>"`` near its last token).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Token", "tokenize", "syntax_error_message", "MAX_EXPRESSION_BYTES"]

#: Developer Guide, "Expression parameters": "The maximum length of any expression string is
#: 4 KB" (DynamoDB counts the UTF-8 bytes).
MAX_EXPRESSION_BYTES = 4096

_TOKEN_RE = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<hashname>\#[A-Za-z0-9_]+)
  | (?P<value>:[A-Za-z0-9_]+)
  | (?P<name>[A-Za-z][A-Za-z0-9_]*)
  | (?P<number>0|[1-9][0-9]*)
  | (?P<op><>|<=|>=|=|<|>|\+|-)
  | (?P<punct>[(),.\[\]])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token. ``kind`` is one of ``name`` (an identifier or keyword),
    ``hashname`` (``#placeholder``), ``value`` (``:placeholder``), ``number`` (a list
    index), ``op`` (comparator or ``+``/``-``), ``punct`` (``( ) , . [ ]``), ``error`` (a
    character that starts no token) and ``eof`` (always last)."""

    kind: str
    text: str
    start: int  # offset of the first character in the expression
    end: int  # offset after the last character

    def is_punct(self, text: str) -> bool:
        return self.kind == "punct" and self.text == text

    def is_word(self, upper: str) -> bool:
        """A keyword test: keywords (AND, OR, NOT, BETWEEN, IN, SET, ...) are
        case-insensitive in DynamoDB."""
        return self.kind == "name" and self.text.upper() == upper


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, whitespace dropped, an ``eof`` token last."""
    tokens: list[Token] = []
    position = 0
    length = len(text)
    while position < length:
        match = _TOKEN_RE.match(text, position)
        if match is None:
            tokens.append(Token("error", text[position], position, position + 1))
            position += 1
            continue
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(Token(kind, match.group(), position, match.end()))
        position = match.end()
    end = tokens[-1].end if tokens else 0
    tokens.append(Token("eof", "<EOF>", end, end))
    return tokens


def syntax_error_message(kind: str, text: str, tokens: list[Token], index: int) -> str:
    """DynamoDB's message for an unexpected ``tokens[index]``."""
    token = tokens[index]
    first = tokens[index - 1] if index > 0 else token
    last = token
    if token.kind != "eof" and index + 1 < len(tokens) and tokens[index + 1].kind != "eof":
        last = tokens[index + 1]
    near = text[first.start:last.end]
    return f'Invalid {kind}: Syntax error; token: "{token.text}", near: "{near}"'
