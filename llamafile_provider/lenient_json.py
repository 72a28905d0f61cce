"""Lenient JSON found anywhere in a text, in ONE linear pass. Pure, no I/O.

Small models write JSON with trailing commas, bare keys, single quotes or Python literals
(``True``/``None``), inside prose, fences and tags. Trying a parser at every ``{`` costs O(n²)
(6,000 ``{`` took seconds, on the event loop); instead ``scan`` reads the text once, left to
right, with an explicit stack of open brackets, and builds the value of every bracket pair as
it closes. A pair whose contents are not a value is kept as a failed node, with the reason,
and its children stay usable: ``[I'll add them]: {"name": ...}`` still yields the object.

Rules that keep the pass linear and independent of where a candidate starts:

* outside brackets, only ``{`` and ``[`` matter (quotes in prose open no string);
* inside brackets, a quote opens a string only where a key or value may start (after
  ``[ { , :``), so the apostrophe in ``[I'll`` is prose; a string that never closes runs to the end;
* a closer that does not match the innermost bracket closes the nearest bracket it does match,
  and the brackets in between are unbalanced; a closer nothing matches is a stray character;
* values nested deeper than ``MAX_DEPTH`` are refused (they would overflow the validators).
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 100  # levels of brackets in one value; tool arguments never come close

_OPENER = re.compile(r"[\[{]")
_TOKEN = re.compile(r"""\s*(?:(?P<punct>[\[\]{},:])|(?P<quote>["'])|"""
                    r"""(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])|(?P<word>[^\W\d]\w*)|(?P<other>\S))""")
_STRINGS = {'"': re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S), "'": re.compile(r"'[^'\\]*(?:\\.[^'\\]*)*'", re.S)}
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_CLOSER = {"{": "}", "[": "]"}
_VALUE_STARTS = "[{,:"
_CALL_KEYS = frozenset({"name", "tool_calls", "function", "arguments"})
_ABSENT = object()


@dataclass
class Node:
    """One bracket pair of the text: its span and value, or why it is not a value."""

    start: int
    end: int
    value: Any = None
    error: str | None = None          # None: ``value`` is the pair's JSON value
    callish: bool = False             # a ``name:``/``arguments:``-like key appears inside
    unfinished: bool = False          # never closed before the end of the text
    children: list[Node] = field(default_factory=list)


@dataclass
class _Frame:
    """A bracket still open during the scan, with the state of the value it is building."""

    start: int
    closer: str
    value: dict[str, Any] | list[Any]
    expect: str                       # "key", "colon", "value" or "comma"
    prev: str                         # last significant character inside the frame
    key: str = ""
    error: str | None = None
    callish: bool = False
    height: int = 1
    children: list[Node] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.error = self.error or why

    def take(self, value: Any, is_key_like: bool, at: int) -> None:
        """A scalar, string or closed child arrives: advance the key/value state machine."""
        if self.error:
            return
        if self.expect == "key" and is_key_like:
            self.key, self.expect = value, "colon"
        elif self.expect == "value" and value is not _ABSENT:
            if isinstance(self.value, dict):
                self.value[self.key] = value
            else:
                self.value.append(value)
            self.expect = "comma"
        else:
            self.fail(f"unexpected {'value' if value is not _ABSENT else 'word'} at character {at - self.start}")

    def closable(self) -> bool:
        """Whether the closer may come now (a trailing comma is forgiven)."""
        return self.expect in (("key", "comma") if isinstance(self.value, dict) else ("value", "comma"))

    def punct(self, char: str, at: int) -> None:
        if self.error:
            return
        is_dict = isinstance(self.value, dict)
        if char == ":" and self.expect == "colon":
            self.expect = "value"
        elif char == "," and self.expect == "comma":
            self.expect = "key" if is_dict else "value"
        else:
            self.fail(f"unexpected {char!r} at character {at - self.start}")


def scan(text: str) -> list[Node]:
    """Every outermost bracket pair of ``text``, in reading order, each with its nested pairs."""
    roots: list[Node] = []
    stack: list[_Frame] = []
    open_count = {"}": 0, "]": 0}
    pos, size = 0, len(text)

    def open_at(at: int) -> None:
        char = text[at]
        stack.append(_Frame(at, _CLOSER[char], {} if char == "{" else [], "key" if char == "{" else "value", char))
        open_count[_CLOSER[char]] += 1

    def close(end: int, error: str | None = None, unfinished: bool = False) -> None:
        frame = stack.pop()
        open_count[frame.closer] -= 1
        error = error or frame.error or (None if frame.closable() else f"it ends too early at character "
                                                                        f"{end - 1 - frame.start}")
        if error is None and frame.height > MAX_DEPTH:
            error = f"it is nested more than {MAX_DEPTH} levels deep"
        node = Node(frame.start, end, None if error else frame.value, error, frame.callish, unfinished,
                    frame.children)
        if not stack:
            roots.append(node)
            return
        parent = stack[-1]
        parent.children.append(node)
        parent.callish = parent.callish or node.callish
        parent.height = max(parent.height, frame.height + 1)
        parent.prev = text[end - 1]
        if error:
            parent.fail(f"it holds something unreadable at character {frame.start - parent.start}")
        else:
            parent.take(node.value, False, frame.start)

    while pos < size:
        if not stack:
            opener = _OPENER.search(text, pos)
            if opener is None:
                break
            open_at(opener.start())
            pos = opener.end()
            continue
        token = _TOKEN.match(text, pos)
        if token is None:  # only whitespace is left
            break
        frame, kind = stack[-1], token.lastgroup or ""
        at, pos, lexeme = token.start(kind), token.end(), token[kind]
        if kind == "punct":
            if lexeme in _CLOSER:
                open_at(at)
            elif lexeme in "}]":
                if lexeme == frame.closer:
                    close(pos)
                elif open_count[lexeme]:  # close the bracket it matches; those in between are unbalanced
                    while stack[-1].closer != lexeme:
                        close(at, "it is unbalanced")
                    stack[-1].fail(f"unbalanced brackets at character {at - stack[-1].start}")
                    close(pos)
                else:
                    frame.fail(f"stray {lexeme!r} at character {at - frame.start}")
                    frame.prev = lexeme
            else:
                frame.punct(lexeme, at)
                frame.prev = lexeme
        elif kind == "quote" and frame.prev in _VALUE_STARTS:
            string = _STRINGS[lexeme].match(text, at)
            if string is None:  # it never closes: the rest of the text is inside it
                pos = size
                break
            pos, raw = string.end(), string.group()
            frame.prev = lexeme
            _word(frame, text, pos, raw[1:-1], raw, at)
        elif kind in ("number", "word"):
            frame.prev = lexeme[-1]
            if kind == "number":
                frame.take(_number(lexeme), False, at)
            else:
                _word(frame, text, pos, lexeme, None, at)
        else:  # a quote where no string can start, or any other character
            frame.fail(f"unexpected {lexeme!r} at character {at - frame.start}")
            frame.prev = lexeme
    while stack:
        close(size, "it is unfinished or unbalanced", unfinished=True)
    return roots


def _word(frame: _Frame, text: str, end: int, word: str, raw: str | None, at: int) -> None:
    """A string (``raw`` is its source) or a bare word: a key, a literal, or a string value."""
    following = _TOKEN.match(text, end)
    is_key = following is not None and following.group("punct") == ":"
    if is_key and word in _CALL_KEYS:
        frame.callish = True
    if frame.error:
        return
    if raw is None:  # a bare key, or a literal
        frame.take(word if frame.expect == "key" else _LITERALS.get(word, _ABSENT), True, at)
        return
    decoded = _string(raw)
    if decoded is None:
        frame.fail(f"a string it cannot read at character {at - frame.start}")
    else:
        frame.take(decoded, True, at)


def _string(raw: str) -> str | None:
    """A quoted string, JSON or Python spelling (``\\'``, ``\\x41``, raw newlines included)."""
    if raw[0] == '"':
        try:
            return str(json.loads(raw, strict=False))
        except ValueError:
            pass
    for source in (raw, raw.replace("\r", "\\r").replace("\n", "\\n")):
        try:
            with warnings.catch_warnings():  # '\\{' is an invalid escape to Python: no warning per reply
                warnings.simplefilter("ignore")
                value = ast.literal_eval(source)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        return value if isinstance(value, str) else None
    return None


def _number(lexeme: str) -> int | float:
    return float(lexeme) if any(c in lexeme for c in ".eE") else int(lexeme)


def loads_lenient(text: str) -> tuple[Any, str | None]:
    """(value, None) for JSON, JSON with trailing commas or bare keys, or Python-literal JSON;
    else (None, why)."""
    try:
        value = json.loads(text, strict=False)
    except (ValueError, RecursionError) as exc:
        first_error = str(exc)
    else:  # json's own depth limit follows sys.getrecursionlimit(), which others may raise
        if _depth(value) <= MAX_DEPTH:
            return value, None
        return None, f"it is nested more than {MAX_DEPTH} levels deep"
    stripped = text.strip()
    roots = scan(stripped)
    if len(roots) == 1 and roots[0].start == 0 and roots[0].end == len(stripped) and roots[0].error is None:
        return roots[0].value, None
    return None, first_error


def _depth(value: Any) -> int:
    """How many levels of lists and objects ``value`` nests (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


__all__ = ["MAX_DEPTH", "Node", "loads_lenient", "scan"]
