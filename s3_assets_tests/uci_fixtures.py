"""Small UCI-format files that the tests generate (the real ones are never copied here).

Same layout as the originals: tab-separated, CRLF, no header; the dictionary as cp1252 with
en dashes, a features table of 86 rows and value tables L0-L4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coil2000"
REAL_FILES = ("ticdata2000.txt", "ticeval2000.txt", "tictgts2000.txt", "dictionary.txt")


def real_data_dir() -> Path | None:
    return REAL_DATA if all((REAL_DATA / name).is_file() for name in REAL_FILES) else None


def feature_rows() -> list[tuple[str, str, str, int, int]]:
    """(name, description, domain text, low, high) for 86 features."""
    rows = [("MOSTYPE", "Customer Subtype", "see L0", 1, 41),
            ("MAANTHUI", "Number of houses", "1 \u2013 10", 1, 10),
            ("MGEMOMV", "Avg size household", "1 \u2013 6", 1, 6),
            ("MGEMLEEF", "Avg age", "see L1", 1, 6),
            ("MOSHOOFD", "Customer main type", "see L2", 1, 10)]
    rows += [(f"MFEAT{i:02d}", f"Percentage feature {i}", "see L3" if i == 6 else ("..." if i == 7 else ""), 0, 9)
             for i in range(6, 44)]
    rows += [(f"PCONTR{i:02d}", f"Contribution policy {i}", "see L4" if i == 44 else "", 0, 9) for i in range(44, 65)]
    rows += [(f"ANUMBER{i:02d}", f"Number of policy {i}", "1 - 12" if i == 65 else "...", 0, 12) for i in range(65, 86)]
    rows.append(("CARAVAN", "Number of mobile home policies", "0 - 1", 0, 1))
    return rows


def dictionary_text() -> str:
    lines = ["DATA DICTIONARY", "", "Nr Name Description Domain"]
    for nr, (name, description, domain, _, _) in enumerate(feature_rows(), start=1):
        lines.append(f"{nr} {name} {description} {domain}".rstrip())
    lines += ["", "", "L0:", "", "Value Label"]
    lines += [f"{v} Subtype {v}, with comma" for v in range(1, 42)]
    lines += ["", "", "L1:", ""] + [f"{v} {10 + 10 * v}-{20 + 10 * v} years" for v in range(1, 7)]
    lines += ["", "", "L2:", ""] + [f"{v} Main type {v}" for v in range(1, 11)]
    lines += ["", "", "L3:", ""] + [f"{v} {v * 10}%" for v in range(0, 10)]
    lines += ["", "", "L4:", ""] + [f"{v} f {v * 100} \u2013 {v * 100 + 99}" for v in range(0, 10)]
    return "\n".join(lines) + "\n"


# UCI's documented sizes: a source with other row counts is refused (s3_assets.lib.source.UCI_TABLES),
# so the generated files have them too.
TRAIN_ROWS, TEST_ROWS = 5822, 4000


def tables(rows: int = TRAIN_ROWS, seed: int = 7, test_rows: int = TEST_ROWS) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    bounds = [(low, high) for *_, low, high in feature_rows()]

    def draw(n: int, columns: list[tuple[int, int]]) -> pd.DataFrame:
        return pd.DataFrame({i: rng.integers(low, high + 1, n) for i, (low, high) in enumerate(columns)})

    return {
        "ticdata2000.txt": draw(rows, bounds),
        "ticeval2000.txt": draw(test_rows, bounds[:85]),
        "tictgts2000.txt": draw(test_rows, bounds[85:]),
    }


def write_uci_files(folder: Path, rows: int = TRAIN_ROWS, test_rows: int = TEST_ROWS) -> Path:
    """Write the four files in UCI format into folder; returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables(rows, test_rows=test_rows).items():
        (folder / name).write_bytes(frame.to_csv(sep="\t", header=False, index=False, lineterminator="\r\n").encode("ascii"))
    (folder / "dictionary.txt").write_bytes(dictionary_text().encode("cp1252"))
    return folder
