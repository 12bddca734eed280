"""The plain library under the Dagster definitions: listing, loading, uploading, cleanup, the
UCI source, the data dictionary and errors. No Dagster imports here, so benchmarks, tests and
notebooks can call it directly."""
