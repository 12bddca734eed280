"""Text from outside (object keys, file contents) shown as data: control characters escaped,
so that no key can move a terminal's cursor, colour a log or break a line it is shown on."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi controls that
# reorder or split what a reader sees.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every unsafe character as a visible escape (`\\n`, `\\x1b`, `\\u202e`)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char in "\n\r\t":
            return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    # A backslash is escaped too, so an escape seen in the output always means a real control.
    return _UNSAFE.sub(escape, text.replace("\\", "\\\\"))
