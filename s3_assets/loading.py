"""Loading the mapped CSV files from S3 into DataFrames: concurrent GETs (the work is I/O
bound), pyarrow's CSV reader (parses commas correctly, unlike the notebook's `read_table`),
and the smallest integer types that hold the values."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from s3_assets.errors import describe_client_error


class LoadError(RuntimeError):
    """A file could not be loaded; the message names its key."""


def parse_csv(body: bytes, key: str) -> pd.DataFrame:
    try:
        table = pa_csv.read_csv(io.BytesIO(body))
    except (pa.ArrowInvalid, pa.ArrowException) as error:
        raise LoadError(f"s3 object {key!r} is not a valid CSV: {error}") from None
    return compact_integers(table.to_pandas())


def compact_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Each integer column in the smallest integer type that holds its values."""
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_integer_dtype(series) and len(series):
            kind = "unsigned" if series.min() >= 0 else "integer"
            frame[column] = pd.to_numeric(series, downcast=kind)
    return frame


def load_frames(
    client: Any,
    bucket: str,
    file_map: dict[str, str],
    sizes: dict[str, int],
    *,
    max_workers: int = 8,
    max_bytes: int = 2 * 1024**3,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, pd.DataFrame]:
    """name -> DataFrame for every file in the map, or an error naming the key that failed.

    Nothing half-loaded is returned: the first failure cancels the rest and is raised.
    """
    too_big = {key: sizes[key] for key in file_map.values() if sizes.get(key, 0) > max_bytes}
    if too_big:
        key, size = next(iter(too_big.items()))
        raise LoadError(
            f"s3 object {key!r} is {size:,} bytes, over the in-memory limit of {max_bytes:,} "
            f"(max_bytes); {len(too_big)} file(s) over it. Raise the limit or exclude the file"
        )
    total = len(file_map)
    done = 0
    loaded_bytes = 0
    lock = threading.Lock()

    def load_one(name: str, key: str) -> tuple[str, pd.DataFrame]:
        nonlocal done, loaded_bytes
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as error:
            raise LoadError(str(describe_client_error(error, bucket=bucket, key=key, endpoint=client.meta.endpoint_url))) from None
        frame = parse_csv(body, key)
        with lock:
            done += 1
            loaded_bytes += len(body)
            progress(f"{done}/{total} files, {loaded_bytes / 1e6:.1f} MB")
        return name, frame

    frames: dict[str, pd.DataFrame] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, total or 1))) as pool:
        futures = [pool.submit(load_one, name, key) for name, key in file_map.items()]
        finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception():
                raise future.exception()
        for future in futures:
            name, frame = future.result()
            frames[name] = frame
    return dict(sorted(frames.items()))
