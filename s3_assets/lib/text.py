"""Text from outside (object keys, file contents) shown as data: control characters escaped,
so that no key can move a terminal's cursor, colour a log or break a line it is shown on."""

from __future__ import annotations

import re
from urllib.parse import unquote

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


# -- URLs from the configuration (endpoints, sources, brokers) ----------------------------------

_USERINFO_IN_TEXT = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@'\"<>]*@")


def shown_url(url: str) -> str:
    """A configured URL (or path) as it may be shown anywhere (metadata, logs, errors): without
    its user part (user, password, access key) and without query and fragment (tokens,
    signatures), controls escaped. A password may hold an unencoded `/`, so an `@` after the
    host still ends a user part: what comes before it is shown as `***`."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:  # a path, or host:port with a user part before it ("user:secret@host:9000")
        at_user_part = "@" in text and not text.startswith(("/", "~", "."))
        return printable("***@" + text.rpartition("@")[2] if at_user_part else text)
    authority, slash, path = rest.partition("/")
    authority = re.split(r"[?#]", authority.rpartition("@")[2], maxsplit=1)[0]
    path = re.split(r"[?#]", path, maxsplit=1)[0]
    if "@" in path:  # "user:pa/ss@host/...": the user part ends at the last '@'
        return printable(f"{scheme}://***@{path.rpartition('@')[2]}")
    return printable(f"{scheme}://{authority}{slash}{path}")


def user_part_problem(url: str) -> str | None:
    """Why a URL's user part cannot be parsed as given, or None. A `/`, `?` or `#` left
    unencoded in a password ends the authority for every URL parser (requests, kombu), which
    then reads part of the password as a host or port and repeats it in its error: such a URL
    is refused when the settings load, naming the variable and never the value."""
    _, sep, rest = url.strip().partition("://")
    if not sep:
        return None
    if "\\" in re.split(r"[/?#]", rest, maxsplit=1)[0]:
        # WHATWG parsers (urllib3, requests) end the host at a `\`, urlsplit does not: the two
        # would read another host (and urllib3 quotes part of a password as one)
        return ("its host or user part holds a '\\', which ends the host for some URL parsers and not for "
                "others: percent-encode it in a password (%5C)")
    if "@" not in rest:
        return None
    if any(character in rest.rpartition("@")[0] for character in "/?#"):
        return ("its user part holds an unencoded '/', '?' or '#', which ends the host for every URL parser: "
                "percent-encode them (%2F, %3F, %23)")
    return None


def without_url_secrets(text: str, *urls: str | None) -> str:
    """`text` (a library's message) with the user part of every URL in it removed, and the user
    part, password and query of each configured URL in `urls` blanked wherever they occur
    (percent-decoded too). Not escaped: `printable` it to show it."""
    for url in urls:
        if not url or not url.strip():
            continue
        _, sep, rest = url.strip().partition("://")
        rest = rest if sep else url.strip()
        secrets = []
        if "@" in rest:
            user_part = rest.rpartition("@")[0]
            # and its pieces: a parser that stopped at a '/', '?' or '#' quotes a piece of it
            secrets += [user_part, *re.split(r"[:/?#]", user_part)]
        if "?" in rest:
            secrets.append(rest.partition("?")[2].partition("#")[0])
        for secret in sorted({form for s in secrets for form in (s, unquote(s)) if len(form) >= 3},
                             key=len, reverse=True):
            text = text.replace(secret, "***")
    return _USERINFO_IN_TEXT.sub(r"\1", text)
