"""The IO manager: step outputs as Parquet and JSON under `S3Prefix.outputs_root()`.

Dagster's own `UPathIOManager` decides the paths (`<asset key>[/<partition>]` for assets,
`storage/<run id>/<step>/<output>` for op outputs) and handles partitions; each path is a
folder written by `s3_assets.lib.stored_values` (no pickles: nothing read back executes).
Every step process reaches it through S3, so multiprocess and Celery executors work.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext
from dagster._core.storage.upath_io_manager import UPathIOManager
from upath import UPath

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib import stored_values


class _ParquetStore(UPathIOManager):
    def __init__(self, s3_prefix: S3Prefix):
        self.s3_prefix = s3_prefix
        self.bucket = s3_prefix.resolved_bucket()
        self.client = s3_prefix.connect()
        super().__init__(base_path=UPath(s3_prefix.outputs_root().rstrip("/")))

    @staticmethod
    def _folder(path: UPath) -> str:
        return path.as_posix().rstrip("/") + "/"

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        manifest = stored_values.write_value(self.client, self.bucket, self._folder(path), obj,
                                             extra_args=self.s3_prefix.write_args())
        context.add_output_metadata({
            "stored_output": MetadataValue.text(f"s3://{self.bucket}/{self._folder(path)}{stored_values.MANIFEST}"),
            "stored_output_files": manifest["files"],
            "stored_output_size_bytes": manifest["bytes"],
        })

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        return stored_values.read_value(self.client, self.bucket, self._folder(path))

    def path_exists(self, path: UPath) -> bool:
        return stored_values.exists(self.client, self.bucket, self._folder(path))

    def unlink(self, path: UPath) -> None:
        stored_values.delete_value(self.client, self.bucket, self._folder(path))

    def make_directory(self, path: UPath) -> None:
        return None  # S3 has no directories

    def get_op_output_relative_path(self, context: InputContext | OutputContext) -> UPath:
        return UPath("storage", *super().get_op_output_relative_path(context).parts)

    def get_loading_input_log_message(self, path: UPath) -> str:
        return f"Loading the stored output s3://{self.bucket}/{self._folder(path)}"

    def get_writing_output_log_message(self, path: UPath) -> str:
        return f"Storing the output as s3://{self.bucket}/{self._folder(path)}"

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        # Like UPathIOManager's, without its "path" metadata: a bare relative key next to the
        # S3 copies' `dagster/uri` would read as a location of the data (dump_to_path adds
        # `stored_output` instead).
        if context.has_asset_partitions:
            paths = self._get_paths_for_partitions(context)
            if len(paths) != 1:
                raise stored_values.StoredValueError(
                    "one output for several partitions cannot be stored: launch the backfill as one run per partition"
                )
            path = next(iter(paths.values()))
        else:
            path = self._get_path(context)
        context.log.debug(self.get_writing_output_log_message(path))
        self.dump_to_path(context=context, obj=obj, path=path)


class S3ParquetIOManager(ConfigurableIOManager):
    """Stores step outputs in the data bucket under `<io_prefix>/<prefix>/` as Parquet (frames,
    one file per frame of a dict) and JSON (small values), each with a `manifest.json`."""

    s3_prefix: S3Prefix

    def _store(self) -> _ParquetStore:
        return _ParquetStore(self.s3_prefix)

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        self._store().handle_output(context, obj)

    def load_input(self, context: InputContext) -> Any:
        return self._store().load_input(context)
