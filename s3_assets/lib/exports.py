"""Writing an export (the listing's CSV) without ever replacing a file or an object the project
did not write there itself: locally under the exports folder (`write_local_export`, a file
manifest), in S3 under the exports area (`write_export`, a mark on each object).

S3 exports go only under one folder of each bucket, `s3-assets-exports/` (EXPORTS_AREA): any
other key is refused, as the server stores it (`server_key`: `\\` is `/`, empty segments
collapse; the area is matched exactly as spelled). No export can know every configuration's
data prefix, so none is trusted to stay out of them by comparison: instead no data prefix or IO
prefix may be, contain or lie in the area (refused when the settings load,
`defs/resources.validate_prefix`), and the project's own other folders (`dagster-io/`,
`.s3-assets-locks/`) lie outside it. So the area holds exports only, and an export can only
ever replace an object inside it.

Inside the area, an export goes to a new key, or over an earlier export that nobody changed
since, and nowhere else. Exports are marked: user metadata `x-amz-meta-s3-assets-export` holds the SHA-256 of the
body written (beside `x-amz-meta-sha256` and S3's own SHA-256 checksum, as every upload of the
project). Before writing, one HEAD (with `ChecksumMode=ENABLED`) decides:

- no object: PUT with `If-None-Match: *` (a writer that got there meanwhile wins; the export
  is refused);
- an object without the mark (written by someone else, or overwritten since by an ordinary
  PUT, which drops user metadata): refused;
- a marked object whose content is no longer the one marked (S3's whole-object checksum, where
  the server keeps one, differs from the mark): refused;
- a marked, unchanged object: PUT with `If-Match: <its ETag>` (changed meanwhile: refused).

Where the server keeps no checksum, the mark is user metadata, which a copy (`copy_object`, a
PUT that copies the metadata) carries along: such a copy counts as an export. That is safe only
because of the area: a marked copy outside it is refused by the area rule before any HEAD, and
inside it only exports write (a person who copies into the area writes into the project's
exports).

A server that refuses conditional writes (501 `NotImplemented`, as LocalStack 4.9.2 on
general-purpose buckets) gets the same PUT without the condition, after the same HEAD; one that
ignores them gives the same. The condition only closes the moment between the HEAD and the PUT;
the HEAD's verdict is the rule, on every server (see docs/RELIABILITY.md, "the listing export").

No lock note is consulted: no configuration's data or outputs can lie in the area, so no run or
cleanup holds a prefix there (a LIST of the notes per export would find none).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from s3_assets.lib.errors import S3_FAILURES, ConfigError, describe_client_error
from s3_assets.lib.server_keys import stored_segments
from s3_assets.lib.text import printable
from s3_assets.lib.uploading import SHA256_METADATA, difference, stored_object_and_metadata

EXPORTS_AREA = "s3-assets-exports/"  # the one folder of a bucket S3 exports go to (no prefix may overlap it)
EXPORT_METADATA = "s3-assets-export"  # x-amz-meta-s3-assets-export: the SHA-256 (hex) of the export's body
MAX_LOCAL_DEPTH = 64  # path parts of a local export's name at most (a deeper one only exhausts the system)
EXPORTS_MANIFEST = ".written.json"  # local exports: path -> sha256 of each file an export wrote there
MAX_SINGLE_PUT = 5 * 1024**3  # S3's limit for one PutObject
_CONDITION_FAILED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"}
_UNSUPPORTED = {"NotImplemented", "501"}


class ExportRefused(ConfigError):
    """The export's target is not the project's to write; the message names it and why."""


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or
               error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def server_key(key: str) -> str:
    """The key an S3-compatible server stores for `key` (`lib.server_keys`). Refused: `.` or
    `..` segments (no one meaning) and a key that names a folder."""
    segments = stored_segments(key)
    if any(segment in (".", "..") for segment in segments):
        raise ConfigError(f"export_csv key {printable(key)!r} has a '.' or '..' segment, which servers "
                          "refuse or read differently: write the key without them")
    if not segments or key.replace("\\", "/").endswith("/"):
        raise ConfigError(f"export_csv key {printable(key)!r} names a folder, not an object")
    return "/".join(segments)


def write_export(client: Any, bucket: str, raw_key: str, body: bytes, *, target: str,
                 extra_args: dict[str, Any] | None = None) -> str:
    """Write `body` at s3://bucket/<raw_key as the server stores it> under the rule above;
    returns the URI written.

    `target` is the export's setting as given (shown, escaped, in refusals). Raises
    ExportRefused (a ConfigError) naming the target and why; S3OperationError for S3 failures."""
    key = server_key(raw_key)
    where = f"export_csv {printable(target)!r} (s3://{bucket}/{printable(key)} as the server stores it)"
    if not key.startswith(EXPORTS_AREA):
        raise ExportRefused(f"{where}: S3 exports go only under s3://{bucket}/{EXPORTS_AREA} (a key like "
                            f"s3://{bucket}/{EXPORTS_AREA}files.csv), the folder no data or stored outputs may "
                            "lie in; nothing was written")
    if len(key.encode()) > 1024:
        raise ExportRefused(f"{where}: the key is longer than S3's 1,024 bytes")
    if len(body) > MAX_SINGLE_PUT:
        raise ExportRefused(f"{where}: the listing is larger than one PutObject carries (5 GiB); export it locally")
    sha256 = hashlib.sha256(body)
    md5 = hashlib.md5(body, usedforsecurity=False)
    try:
        found = stored_object_and_metadata(client, bucket, key)
        condition: dict[str, str]
        if found is None:
            condition = {"IfNoneMatch": "*"}
        else:
            stored, metadata = found
            mark = metadata.get(EXPORT_METADATA, "").lower()
            if not mark:
                raise ExportRefused(f"{where} exists and is not an export the project wrote (it carries no "
                                    f"x-amz-meta-{EXPORT_METADATA}): not replaced; choose a new key")
            if stored.recorded_sha256 != mark or difference(stored, stored.size, mark) is not None:
                raise ExportRefused(f"{where} was written by an export but changed since (its content is not the "
                                    "one the export recorded): not replaced; choose a new key")
            condition = {"IfMatch": f'"{stored.etag.strip(chr(34))}"'}
        extra: dict[str, Any] = dict(extra_args or {})
        arguments = {
            "Bucket": bucket, "Key": key, "Body": body, "ContentType": "text/csv",
            "ContentMD5": base64.b64encode(md5.digest()).decode(),
            "ChecksumSHA256": base64.b64encode(sha256.digest()).decode(),
            **extra,
            "Metadata": {**extra.get("Metadata", {}), SHA256_METADATA: sha256.hexdigest(),
                         EXPORT_METADATA: sha256.hexdigest()},
        }
        try:
            client.put_object(**arguments, **condition)
        except ClientError as error:
            code = _code(error)
            if code in _CONDITION_FAILED:
                raise ExportRefused(
                    f"{where} changed between the check and the write (the server answered {printable(code)} to "
                    f"the conditional PUT): someone else wrote or deleted it; not replaced. Run the export again "
                    f"to see what is there") from None
            if code not in _UNSUPPORTED and _status(error) != 501:
                raise
            client.put_object(**arguments)  # a server without conditional writes: the HEAD's verdict stands
    except S3_FAILURES as error:
        raise describe_client_error(error, bucket=bucket, key=key, endpoint=client.meta.endpoint_url) from None
    return f"s3://{bucket}/{key}"


# -- local exports -----------------------------------------------------------------------------

# Errors that say the name is unusable here, not that the disk or the system failed.
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EINVAL, errno.EILSEQ,
                errno.EEXIST}


def write_local_export(body: bytes, target: str, root: Path) -> str:
    """Write `body` to the file `target` names under the exports folder `root` (relative names
    from there; absolute ones must resolve inside it, symlinked folders included): a new file
    (created exclusively, never through a symlink), or one an earlier export wrote and nobody
    changed since (its hash is in the folder's manifest); never any other file. A target that
    names a folder (ends in `/`, `\\`, `.` or `..`; an existing folder) or whose folder part
    holds a file is refused by name; so is any name the system cannot use here, as a
    ConfigError, never a raw OSError. Returns the path written."""
    parts = re.split(r"[/\\]", target)
    last = parts[-1]
    if last in ("", ".", ".."):
        raise ConfigError(f"export_csv {printable(target)!r} names a folder, not a file: local exports go to a "
                          f"file under {root}/ (a name like `files.csv`)")
    if last.startswith("."):
        raise ConfigError(f"export_csv {printable(target)!r}: a name starting with '.' is the exports folder's own "
                          f"(its manifest {EXPORTS_MANIFEST}, temporary files); choose a name like `files.csv`")
    if len(parts) > MAX_LOCAL_DEPTH:
        raise ConfigError(f"export_csv {printable(target)!r}: more than {MAX_LOCAL_DEPTH} folders deep; choose a "
                          "name like `files.csv`")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    try:
        return _write_local(body, target, root)
    except OSError as error:
        if error.errno not in _PATH_ERRNOS:
            raise
        raise ConfigError(f"export_csv {printable(target)!r}: not a file name this system can write under "
                          f"{root}/ ({error.strerror or type(error).__name__}); choose a short plain name "
                          "like `files.csv`") from None


def _not_a_folder(parent: Path, root: Path) -> Path | None:
    """The first part of `parent` (below `root`) that exists and is not a folder, or None."""
    for folder in (*reversed(parent.relative_to(root).parents), parent.relative_to(root)):
        part = root / folder
        if part != root and (part.exists() or part.is_symlink()) and not part.is_dir():
            return part
    return None


def _write_local(body: bytes, target: str, root: Path) -> str:
    raw = Path(target).expanduser()
    wanted = raw if raw.is_absolute() else root / raw
    parent = wanted.parent.resolve()  # symlinked folders resolved: they must still lead inside
    name = wanted.name
    if not name or name in (".", "..") or name == EXPORTS_MANIFEST or not parent.is_relative_to(root):
        raise ConfigError(f"export_csv {printable(target)!r}: local exports go to a file under {root}/ "
                          "(a name like `files.csv`), nowhere else")
    path = parent / name
    blocking = _not_a_folder(parent, root)
    if blocking is not None:
        raise ConfigError(f"export_csv {printable(target)!r}: {printable(str(blocking))} is a file, not a folder, "
                          "so nothing can be written inside it; choose another name")
    if path.is_dir() and not path.is_symlink():
        raise ConfigError(f"export_csv {printable(target)!r}: {printable(str(path))} is a folder: name a file "
                          "in it (like `files.csv`)")
    parent.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(root)
    relative = str(path.relative_to(root))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        if path.is_symlink() or not path.is_file():
            raise ConfigError(f"export_csv {printable(str(path))!r} is a symlink or not a file: not replaced") from None
        if manifest.get(relative) != hashlib.sha256(path.read_bytes()).hexdigest():
            raise ConfigError(f"export_csv {printable(str(path))!r} exists and is not an export the project "
                              "wrote (or was changed since): not replaced; choose a new name") from None
        temporary = path.with_name(f".{name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        os.replace(temporary, path)
    else:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
    manifest[relative] = hashlib.sha256(body).hexdigest()
    manifest_path = root / EXPORTS_MANIFEST
    temporary = root / f".{EXPORTS_MANIFEST}.{os.getpid()}.tmp"
    temporary.unlink(missing_ok=True)
    temporary.write_text(json.dumps(manifest, sort_keys=True))
    os.replace(temporary, manifest_path)
    return str(path)


def _read_manifest(root: Path) -> dict[str, str]:
    try:
        raw = json.loads((root / EXPORTS_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
