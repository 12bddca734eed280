"""The package is described in pyproject.toml; this file only gives a checkout its own Dagster
instance, so that README's command 1, `dg dev`, `dagster dev` and the CLI record runs in one
place (docs/INSTANCE.md).

pip runs this file from the project folder at every install (`pip install -e .`). It writes
`.dagster_home/dagster.yaml` (a copy of config/dagster.yaml) and one line in `.env`:

    DAGSTER_HOME="${DAGSTER_HOME:-/absolute/path/to/the/project/.dagster_home}"

`dg` and the classic `dagster` commands load `.env` from the folder they run in before they
choose an instance, and the `${DAGSTER_HOME:-...}` form keeps a DAGSTER_HOME you set yourself.
It is written at install time because Dagster needs an absolute DAGSTER_HOME, which a committed
`.env` cannot hold, and the code location loads only after the CLI has chosen its instance.
Both files are git-ignored. Standard library only: this runs in pip's build environment.
"""

from __future__ import annotations

import os
from pathlib import Path

MARK = "# s3-assets: the project's own Dagster instance (written by pip install; a DAGSTER_HOME you set wins)"
HEADER = "# Copied from config/dagster.yaml at install: edit that file (or delete this line to keep your edits here).\n"
# Characters that the .env line (a double-quoted, interpolated python-dotenv value) cannot carry.
UNSAFE = ('"', "\\", "$", "{", "}", "\n", "\r")


def write_project_instance(root: Path) -> Path | None:
    """Create `<root>/.dagster_home` and point `<root>/.env` at it; the home, or None where this
    is not a checkout of the project (an sdist built elsewhere) or the path cannot be written
    into `.env` (then Dagster keeps its usual temporary instance)."""
    template = root / "config" / "dagster.yaml"
    if not template.is_file() or not (root / "s3_assets").is_dir():
        return None
    home = root.resolve() / ".dagster_home"
    if any(char in str(home) for char in UNSAFE):
        return None
    home.mkdir(exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text().startswith(HEADER):
        config.write_text(HEADER + template.read_text())
    _set_env_line(root / ".env", f'DAGSTER_HOME="${{DAGSTER_HOME:-{home}}}"')
    return home


def _set_env_line(env: Path, line: str) -> None:
    """Replace the line this file wrote before (the project may have moved); leave a DAGSTER_HOME
    of the user's own alone; keep every other line."""
    old = env.read_text().splitlines() if env.exists() else []
    kept: list[str] = []
    skip_next = False
    for current in old:
        if skip_next:
            skip_next = False
            if current.startswith("DAGSTER_HOME="):
                continue
        if current == MARK:
            skip_next = True
            continue
        kept.append(current)
    if any(current.strip().removeprefix("export ").startswith("DAGSTER_HOME=") for current in kept):
        return
    text = "\n".join([*kept, MARK, line]) + "\n"
    if env.exists():
        env.write_text(text)
    else:  # owner-only: .env is also where people put credentials
        descriptor = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    write_project_instance(Path(__file__).resolve().parent)

    from setuptools import setup

    setup()
