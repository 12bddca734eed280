"""The `s3-assets-local` console script: start, inspect and stop the embedded S3."""

from __future__ import annotations

import argparse
import sys

from s3_assets.lib.errors import ConfigError
from s3_assets.local_s3.server import CREDENTIALS_FILE, LOG_DIR, EmbeddedS3Error


def main(argv: list[str] | None = None) -> int:
    """`s3-assets-local start|status|stop`: manage the embedded S3 (never prints credentials)."""
    parser = argparse.ArgumentParser(prog="s3-assets-local", description=main.__doc__)
    parser.add_argument("command", choices=["start", "status", "stop"], nargs="?", default="status")
    args = parser.parse_args(argv)
    try:
        from s3_assets.settings import load_connection  # reads S3_ASSETS_* like the definitions

        server = load_connection().embedded_server()
        if args.command == "stop":
            print("stopped" if server.stop() else "not running", f"({server.data_dir})")
            return 0
        state = server.ensure_running() if args.command == "start" else server.status()
    except (EmbeddedS3Error, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not state:
        print(f"not running ({server.data_dir}); `s3-assets-local start` starts it")
        return 3
    print(f"running   pid {state.pid}")
    print(f"S3 URL    {state.endpoint_url}")
    print(f"data dir  {state.data_dir}")
    print(f"credentials file  {server.data_dir / CREDENTIALS_FILE} (owner-only)")
    print("other ports  master, volume, filer, admin and gRPC: mTLS or JWT only, no file browser")
    tmp = "tmp/ in the data dir (private /tmp)" if state.private_tmp else "/tmp, owner-only (no private /tmp here)"
    print(f"weed logs    {server.data_dir / LOG_DIR}; gRPC sockets in {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
