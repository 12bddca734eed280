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
    host still ends a user part: what comes before it is shown as `***`. Where URL parsers
    disagree on the host, or none reads the host that follows the `@` (a `\\` before the path,
    a `?` or `#` in the user part: what `user_part_problem` refuses), no host is shown:
    `scheme://***@…` (`scheme://…` without an `@`)."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:  # a path, or host:port with a user part before it ("user:secret@host:9000")
        at_user_part = "@" in text and not text.startswith(("/", "~", "."))
        return printable("***@" + text.rpartition("@")[2] if at_user_part else text)
    if _host_unclear(rest):
        return printable(f"{scheme}://***@…" if "@" in rest else f"{scheme}://…")
    authority, slash, path = rest.partition("/")
    authority = re.split(r"[?#]", authority.rpartition("@")[2], maxsplit=1)[0]
    path = re.split(r"[?#]", path, maxsplit=1)[0]
    if "@" in path:  # "user:pa/ss@host/...": the user part ends at the last '@'
        return printable(f"{scheme}://***@{path.rpartition('@')[2]}")
    return printable(f"{scheme}://{authority}{slash}{path}")


def _host_unclear(rest: str) -> bool:
    """Whether the host of `scheme://` + `rest` is one URL parsers disagree on, or one none
    reads: a `\\` before the first `/`, `?` or `#` (WHATWG parsers such as urllib3 end the
    host there, urlsplit does not), or a `\\`, `?` or `#` in the user part as `shown_url`
    finds it (every parser ends the authority at `?` or `#`, so none reads the host after the
    `@`). `user_part_problem` refuses every such URL."""
    if "\\" in re.split(r"[/?#]", rest, maxsplit=1)[0]:
        return True
    # the user part as `shown_url` would cut it: up to the last '@', which may follow a '/' of a
    # password and then a '?' or '#' of it (`u:pa/ss#x@host`)
    authority, _, path = rest.partition("/")
    user_part = (f"{authority}/{path.rpartition('@')[0]}" if "@" in path
                 else authority.rpartition("@")[0] if "@" in authority else "")
    return any(character in user_part for character in "\\?#")


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


# A user part with more separators than this (no real password has) is blanked piece by piece
# and whole, not in every run of adjacent pieces (their number grows with its square).
_MAX_CUTS_FOR_RUNS = 64


def _secret_fragments(secret: str) -> set[str]:
    """Every part of `secret` that a library may quote when it cuts it at separators: each run
    of adjacent pieces between two non-alphanumeric characters (or an end), the whole included,
    each as given and percent-decoded."""
    fragments: set[str] = set()
    for form in {secret, unquote(secret)}:
        cuts = [-1, *(i for i, char in enumerate(form) if not char.isalnum()), len(form)]
        if len(cuts) > _MAX_CUTS_FOR_RUNS:
            pairs = [(cuts[0], cuts[-1]), *zip(cuts, cuts[1:], strict=False)]
        else:
            pairs = [(start, end) for n, start in enumerate(cuts) for end in cuts[n + 1:]]
        fragments |= {form[start + 1:end] for start, end in pairs}
    return {form for fragment in fragments for form in (fragment, unquote(fragment))}


def without_url_secrets(text: str, *urls: str | None) -> str:
    """`text` (a library's message) with the user part of every URL in it removed, and the user
    part, password and query of each configured URL in `urls` blanked wherever they occur,
    as given and percent-decoded. A library may quote a piece of a password cut at any
    separator (`Failed to parse: 'user:Kx9q2Lw'` of `Kx9q2Lw/Zp7`): every run of its pieces
    between non-alphanumeric characters (`:`, `/`, `\\`, `;`, `%`, `@`, `&`, a space, ...) is
    blanked too, longest first, so no such fragment of 3 characters or more survives. Limits:
    a fragment of 1 or 2 characters is left (blanking it would blank ordinary words), and so is
    a piece a library cuts inside a run of letters and digits (not done by the URL parsers the
    project uses). A piece that is also ordinary text of the message (a port in
    `pw-6379-x`) is blanked there too: over-blanking, never a leak. Not escaped: `printable` it to show it."""
    text = _USERINFO_IN_TEXT.sub(r"\1", text)
    for url in urls:
        if not url or not url.strip():
            continue
        _, sep, rest = url.strip().partition("://")
        rest = rest if sep else url.strip()
        secrets: set[str] = set()
        if "@" in rest:
            secrets |= _secret_fragments(rest.rpartition("@")[0])
        if "?" in rest:
            query = rest.partition("?")[2].partition("#")[0]
            secrets |= {query, unquote(query)}
        for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
            text = text.replace(secret, "***")
    return text
