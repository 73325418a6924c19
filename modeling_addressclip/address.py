"""Human-readable addresses of the semantic address partition (paper §3).

An address is a main street, the one or two streets that cross it at the ends of the
sub-street, and the neighborhood. It has one canonical text::

    Forbes Avenue between Craig Street and Morewood Avenue, Oakland
    Forbes Avenue near Craig Street, Oakland

and ``Address.parse`` also reads the AddressCLIP release form
``"Forbes Avenue, Oakland (Craig Street, Morewood Avenue)"``.

Names may contain anything printable; the few places where a name would read like the
separators (``,``, ``(``, ``)``, ``\\`` and a space before the words ``between``/``and``/
``near``) are backslash-escaped, so ``Address.parse(a.format()) == a`` always holds.
Unparseable text raises ``ValueError`` naming the text; nothing is returned blank.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_BETWEEN, _AND, _NEAR, _COMMA = " between ", " and ", " near ", ", "
_ALWAYS_ESCAPED = "\\,()"
_KEYWORD_SPACE = re.compile(r" (?=(?:between|and|near)(?: |$))")
_RELEASE_CROSS_SEPARATOR = re.compile(r"\s*(?:,|&|/|;|\band\b)\s*")


def _check_name(name: str, field: str) -> str:
    """Return ``name`` if it is a usable street/neighborhood name, else raise."""
    if not isinstance(name, str):
        raise TypeError(f"Address.{field} must be a string, got {type(name).__name__}: {name!r}")
    if not name or name != name.strip():
        raise ValueError(f"Address.{field} must be non-empty without outer whitespace: {name!r}")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ValueError(f"Address.{field} contains a control/unprintable character: {name!r}")
    return name


def _escape(name: str) -> str:
    escaped = "".join("\\" + ch if ch in _ALWAYS_ESCAPED else ch for ch in name)
    return _KEYWORD_SPACE.sub("\\\\ ", escaped)


def _unescape(chars: list[tuple[str, bool]]) -> str:
    return "".join(ch for ch, _ in chars)


def _scan(text: str) -> list[tuple[str, bool]]:
    """Split ``text`` into (character, was_escaped) pairs."""
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            if i + 1 == len(text):
                raise ValueError(f"unparseable address {text!r}: dangling backslash at the end")
            out.append((text[i + 1], True))
            i += 2
        else:
            out.append((text[i], False))
            i += 1
    return out


def _split_once(chars: list[tuple[str, bool]], sep: str, last: bool = False):
    """Split at the first (or last) unescaped occurrence of ``sep``; None if absent."""
    n = len(sep)
    starts = range(len(chars) - n, -1, -1) if last else range(len(chars) - n + 1)
    for i in starts:
        window = chars[i : i + n]
        if all(not esc for _, esc in window) and "".join(ch for ch, _ in window) == sep:
            return chars[:i], chars[i + n :]
    return None


def _check_unambiguous(chars: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Refuse a name part holding an unescaped separator word: the text has more than one reading."""
    plain = "".join(ch if not esc else "\0" for ch, esc in chars)
    match = _KEYWORD_SPACE.search(plain)
    if match:
        raise ValueError(f"ambiguous separator word in {_unescape(chars)!r} (escape it as '\\ ')")
    return chars


def _has_unescaped(chars: list[tuple[str, bool]], symbols: str) -> bool:
    return any(ch in symbols and not esc for ch, esc in chars)


@dataclass(frozen=True)
class Address:
    """A sub-street address: ``main_street`` between ``cross_streets`` in ``neighborhood``.

    ``cross_streets`` holds one or two names, kept sorted so that "A between B and C" and
    "A between C and B" are the same sub-street (the paper's S^c is a set).
    """

    main_street: str
    cross_streets: tuple[str, ...]
    neighborhood: str

    def __post_init__(self) -> None:
        _check_name(self.main_street, "main_street")
        _check_name(self.neighborhood, "neighborhood")
        crosses = self.cross_streets
        if isinstance(crosses, str):
            raise TypeError(f"Address.cross_streets must be a list of names, got the string {crosses!r}")
        crosses = tuple(_check_name(c, "cross_streets") for c in crosses)
        if not 1 <= len(crosses) <= 2:
            raise ValueError(f"Address needs 1 or 2 cross streets, got {len(crosses)}: {crosses!r}")
        if len(set(crosses)) != len(crosses):
            raise ValueError(f"Address cross streets repeat a name: {crosses!r}")
        object.__setattr__(self, "cross_streets", tuple(sorted(crosses)))

    @property
    def street_key(self) -> tuple[str, str]:
        """(main_street, neighborhood): what street-level accuracy (SA) compares."""
        return (self.main_street, self.neighborhood)

    def format(self) -> str:
        """The canonical text; ``Address.parse(a.format()) == a``."""
        crosses = [_escape(c) for c in self.cross_streets]
        where = f"{_NEAR.strip()} {crosses[0]}" if len(crosses) == 1 else f"between {crosses[0]} and {crosses[1]}"
        return f"{_escape(self.main_street)} {where}, {_escape(self.neighborhood)}"

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, text: str) -> Address:
        """Read the canonical form or the AddressCLIP release form; raise ``ValueError`` otherwise."""
        if not isinstance(text, str):
            raise TypeError(f"address text must be a string, got {type(text).__name__}: {text!r}")
        try:
            if text.rstrip().endswith(")") and "\\" not in text:
                return cls._parse_release(text)
            return cls._parse_canonical(text)
        except ValueError as err:
            if repr(text) in str(err):
                raise
            raise ValueError(f"unparseable address {text!r}: {err}") from None

    @classmethod
    def _parse_canonical(cls, text: str) -> Address:
        chars = _scan(text)
        if _has_unescaped(chars, "()"):
            raise ValueError("unescaped parenthesis outside the release form")
        split = _split_once(chars, _COMMA, last=True)
        if split is None:
            raise ValueError("no ', <neighborhood>' part")
        street_part, neighborhood = split
        if _has_unescaped(street_part, ","):
            raise ValueError("more than one unescaped comma")
        between = _split_once(street_part, _BETWEEN)
        pair = None if between is None else _split_once(between[1], _AND)
        if pair is not None:
            main, crosses = between[0], [pair[0], pair[1]]
        else:
            # Not the between form: "M near between X, N" (a cross street named "between X") reads as near.
            near = _split_once(street_part, _NEAR)
            if near is None:
                problem = "'between' without 'and'" if between else "neither 'between <A> and <B>' nor 'near <A>'"
                raise ValueError(problem)
            main, crosses = near[0], [near[1]]
        parts = [_check_unambiguous(p) for p in (main, *crosses, neighborhood)]
        return cls(_unescape(parts[0]), tuple(_unescape(c) for c in parts[1:-1]), _unescape(parts[-1]))

    @classmethod
    def _parse_release(cls, text: str) -> Address:
        head, sep, tail = text.strip()[:-1].rpartition("(")
        if not sep:
            raise ValueError("release form needs '{main}, {neighborhood} ({cross streets})'")
        main, comma, neighborhood = head.strip().rpartition(",")
        if not comma:
            raise ValueError("release form has no ', <neighborhood>' before the parenthesis")
        crosses = tuple(c for c in _RELEASE_CROSS_SEPARATOR.split(tail.strip()) if c)
        return cls(main.strip(), crosses, neighborhood.strip())


def parse_address(text: str) -> Address:
    """Shorthand for ``Address.parse``."""
    return Address.parse(text)


_CLAIMS_ADDRESS = re.compile(r"\s(between|near)\s|\)\s*$")


def parse_candidate(text: str) -> Address | None:
    """The parts of a candidate text, or None for free text ("Broadway, Manhattan", "Mannerheimintie").

    A text that claims the address forms (it has a ``between``/``near`` clause or ends in the release form's
    ``(cross streets)``) must parse, and raises ``ValueError`` naming it if it does not; other texts are ranked
    as they are, without parts.
    """
    try:
        return Address.parse(text)
    except ValueError:
        if _CLAIMS_ADDRESS.search(text):
            raise
        return None
