"""The UCI data dictionary as data: the features table and the value-label tables L0-L4.

`dictionary.txt` is cp1252 text: a features table ("Nr Name Description Domain") and value
tables headed "L0:" ... "L4:". A domain is "see Lk", a range "1 – 10", or left out / "..."
(meaning: as the feature above). Anything that does not parse fails with the line at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from s3_assets.lib.errors import S3AssetsError
from s3_assets.lib.loading import smallest_integer_dtype

FEATURE_LINE = re.compile(r"^(\d+)\s+([A-Z][A-Z0-9]*)\s*(.*)$")
DOMAIN_AT_END = re.compile(r"\s*(see\s+(L\d+)|(\d+)\s*[\u2013\u2014-]\s*(\d+)|\.\.\.)\s*$")
TABLE_HEADING = re.compile(r"^(L\d+):\s*$")
VALUE_LINE = re.compile(r"^(\d+)\s+(.+?)\s*$")


class DictionaryError(S3AssetsError, ValueError):
    """dictionary.txt does not parse; the message names the line."""


# What the COIL 2000 dictionary holds: 86 features and the value tables L0-L4 with these many
# labels. A dictionary with less is not usable (the tables' columns are named and bounded by it).
UCI_FEATURES = 86
VALUE_TABLE_SIZES = {"L0": 41, "L1": 6, "L2": 10, "L3": 10, "L4": 10}


@dataclass(frozen=True)
class DataDictionary:
    features: pd.DataFrame  # nr, name, description, domain, value_table, min, max
    value_tables: dict[str, pd.DataFrame]  # "L0" -> value, label

    @property
    def names(self) -> list[str]:
        return self.features["name"].tolist()

    def descriptions(self) -> dict[str, str]:
        return dict(zip(self.features["name"], self.features["description"], strict=True))

    def allowed_values(self, name: str) -> tuple[int, int]:
        """Inclusive (low, high) the column may take."""
        row = self.features.loc[self.features["name"] == name].iloc[0]
        return int(row["min"]), int(row["max"])

    def labels(self, name: str) -> dict[int, str] | None:
        table = self.features.loc[self.features["name"] == name, "value_table"].iloc[0]
        if not table:
            return None
        frame = self.value_tables[table]
        return dict(zip(frame["value"], frame["label"], strict=True))


def decode_dictionary(content: bytes) -> str:
    """cp1252, as the file is written (en dashes in the domains)."""
    return content.decode("cp1252", errors="strict")


def parse_dictionary(text: str) -> DataDictionary:
    lines = text.splitlines()
    features: list[dict] = []
    tables: dict[str, list[tuple[int, str]]] = {}
    section = "preamble"
    previous: dict | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        heading = TABLE_HEADING.match(line)
        if heading:
            section = heading.group(1)
            tables[section] = []
            continue
        if section == "preamble":
            if line.lower().startswith("nr name"):
                section = "features"
            continue
        if section == "features":
            match = FEATURE_LINE.match(line)
            if not match:
                raise DictionaryError(f"dictionary line {number}: not a feature row ('Nr Name Description Domain'): {raw!r}")
            features.append(_feature(match, previous, number, raw))
            previous = features[-1]
            continue
        if line.lower() == "value label":
            continue
        match = VALUE_LINE.match(line)
        if not match:
            raise DictionaryError(f"dictionary line {number}: not a 'value label' row of {section}: {raw!r}")
        tables[section].append((int(match.group(1)), match.group(2)))
    if not features:
        raise DictionaryError("dictionary: no features table found (a line 'Nr Name Description Domain' and rows below it)")
    frame = pd.DataFrame(features)
    expected = list(range(1, len(frame) + 1))
    if frame["nr"].tolist() != expected:
        raise DictionaryError(f"dictionary: feature numbers are not 1..{len(frame)} in order")
    value_tables = {
        name: pd.DataFrame(rows, columns=["value", "label"]) for name, rows in tables.items()
    }
    for row in frame.itertuples():
        if row.value_table and row.value_table not in value_tables:
            raise DictionaryError(f"dictionary: feature {row.name} refers to {row.value_table}, which is not defined")
    bounds = frame.apply(lambda r: _bounds(r, value_tables), axis=1, result_type="expand")
    frame["min"], frame["max"] = bounds[0].astype("int64"), bounds[1].astype("int64")
    return DataDictionary(frame, value_tables)


def uci_dictionary_problems(dictionary: DataDictionary) -> list[str]:
    """What makes a parsed dictionary unfit for COIL 2000: other than 86 features, or value
    tables L0-L4 with other than 41/6/10/10/10 labels."""
    sizes = {name: len(frame) for name, frame in dictionary.value_tables.items()}
    problems = []
    if len(dictionary.features) != UCI_FEATURES:
        problems.append(f"{len(dictionary.features)} features, expected {UCI_FEATURES}")
    problems += [f"{name} has {sizes.get(name, 0)} labels, expected {n}" for name, n in VALUE_TABLE_SIZES.items()
                 if sizes.get(name) != n]
    return problems


def usable_dictionary(text: str, origin: str) -> DataDictionary:
    """The dictionary, or a DictionaryError naming `origin` for anything a later step would
    refuse (it does not parse, or `uci_dictionary_problems`): checked before any copy is written,
    so a bad dictionary source never replaces the good S3 copy."""
    try:
        dictionary = parse_dictionary(text)
    except DictionaryError as error:
        raise DictionaryError(f"{origin} is not a usable data dictionary: {error}") from None
    problems = uci_dictionary_problems(dictionary)
    if problems:
        raise DictionaryError(f"{origin} is not a usable data dictionary: {'; '.join(problems)}")
    return dictionary


def _feature(match: re.Match, previous: dict | None, number: int, raw: str) -> dict:
    rest = match.group(3)
    domain_match = DOMAIN_AT_END.search(rest)
    description = rest[: domain_match.start()].strip() if domain_match else rest.strip()
    if domain_match and domain_match.group(1) != "...":
        domain = domain_match.group(1).replace("\u2013", "-").replace("\u2014", "-")
        domain = re.sub(r"\s*-\s*", " - ", domain)
        table = domain_match.group(2) or ""
    elif previous is not None:  # "..." or nothing: as the feature above
        domain, table = previous["domain"], previous["value_table"]
    else:
        raise DictionaryError(f"dictionary line {number}: the first feature has no domain: {raw!r}")
    return {"nr": int(match.group(1)), "name": match.group(2), "description": description,
            "domain": domain, "value_table": table}


def _bounds(row: pd.Series, value_tables: dict[str, pd.DataFrame]) -> tuple[int, int]:
    if row["value_table"]:
        values = value_tables[row["value_table"]]["value"]
        return int(values.min()), int(values.max())
    low, high = (int(part) for part in row["domain"].split(" - "))
    # Policy counts ("Number of ...", 1 - 12) use 0 for "no policy" in the data itself.
    if row["name"].startswith("A") and row["description"].startswith("Number of"):
        low = min(low, 0)
    return low, high


def type_by_domain(frame: pd.DataFrame, dictionary: DataDictionary) -> pd.DataFrame:
    """Cast each dictionary column to the smallest integer type holding its domain.

    A column with values outside its domain keeps its type (a cast would wrap them silently);
    the domain check reports it instead.
    """
    for name in frame.columns:
        if name not in dictionary.names or not pd.api.types.is_integer_dtype(frame[name]):
            continue
        low, high = dictionary.allowed_values(name)
        column = frame[name]
        if len(column) and (column.min() < low or column.max() > high):
            continue
        frame[name] = column.astype(smallest_integer_dtype(low, high))
    return frame


def labelled(frame: pd.DataFrame, dictionary: DataDictionary) -> pd.DataFrame:
    """A copy with coded columns (those with a value table, e.g. MOSTYPE) as labelled categoricals."""
    out = frame.copy()
    for name in frame.columns:
        labels = dictionary.labels(name) if name in dictionary.names else None
        if labels:
            out[name] = pd.Categorical(frame[name].map(labels), categories=list(dict.fromkeys(labels.values())))
    return out
