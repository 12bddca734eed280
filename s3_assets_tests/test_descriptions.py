"""What the Dagster UI renders as markdown says what it means: no description of any definition
(asset, check, job, op, schedule, sensor, resource, config field) holds an HTML-like `<word>`
outside a code span (the renderer would drop it as a tag: `s3://<bucket>/...` showed as
`s3:////...`), and the S3 copies show their real URI before any run."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from dagster import Definitions

from s3_assets.definitions import build_definitions

# A tag, a closing tag or a comment/declaration, as CommonMark's raw-HTML rule sees one.
HTML_LIKE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<[!?]")
# A code span (or fence): a run of backticks, closed by a run of the same length.
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)


# A line indented by 4 spaces after a blank line: markdown shows it as a code block.
INDENTED_BLOCK = re.compile(r"\n[ \t]*\n(?: {4,}|\t)\S")


def html_outside_code(text: str) -> list[str]:
    return HTML_LIKE.findall(CODE_SPAN.sub("", text or ""))


def renders_wrongly(text: str) -> list[str]:
    """What the markdown renderer would drop or misshow: HTML-like words, indented blocks."""
    found = html_outside_code(text)
    if INDENTED_BLOCK.search(CODE_SPAN.sub("", text or "")):
        found.append("an indented paragraph (shown as code: a class docstring?)")
    return found


@pytest.mark.parametrize(("text", "found"), [
    ("s3://<bucket>/<prefix>/raw/train.csv", ["<bucket>", "<prefix>"]),
    ("`s3://<bucket>/raw` and <b>bold</b>", ["<b>", "</b>"]),
    ("``a`b <x>`` then <!-- c -->", ["<!"]),
    ("```text\n<bucket>\n```", []),
    ("`s3://<bucket>/<prefix>/raw/train.csv`: the table", []),
    ("values 0 < x and y > 1; L0-L4", []),
    ("Summary.\n\n    Indented docstring paragraph.", ["an indented paragraph (shown as code: a class docstring?)"]),
    ("Summary over\n    a continued line.", []),
])
def test_the_checker_finds_what_markdown_misrenders(text, found):
    assert renders_wrongly(text) == found


def config_descriptions(config_type, where: str) -> Iterator[tuple[str, str]]:
    """Every field description of a config type, recursively (shapes, arrays, maps, selectors)."""
    fields = getattr(config_type, "fields", None) or {}
    for name, field in fields.items():
        yield f"{where}.{name}", field.description or ""
        yield from config_descriptions(field.config_type, f"{where}.{name}")
    for inner in ("inner_type", "key_type"):
        if getattr(config_type, inner, None) is not None:
            yield from config_descriptions(getattr(config_type, inner), where)


def all_descriptions(defs: Definitions) -> Iterator[tuple[str, str]]:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    for key in graph.get_all_asset_keys():
        yield f"asset {key.to_user_string()}", graph.get(key).description or ""
    for check_key in graph.asset_check_keys:
        yield f"check {check_key.to_user_string()}", graph.get_check_spec(check_key).description or ""
    for job in repo.get_all_jobs():
        yield f"job {job.name}", job.description or ""
        for op in job.graph.iterate_op_defs():
            yield f"op {op.name}", op.description or ""
            if op.config_schema is not None:
                yield from config_descriptions(op.config_schema.config_type, f"op {op.name} config")
    for schedule in repo.schedule_defs:
        yield f"schedule {schedule.name}", schedule.description or ""
    for sensor in repo.sensor_defs:
        yield f"sensor {sensor.name}", sensor.description or ""
    for name, resource in repo.get_top_level_resources().items():
        yield f"resource {name}", resource.description or ""
        if resource.config_schema is not None:
            yield from config_descriptions(resource.config_schema.config_type, f"resource {name} config")


@pytest.mark.parametrize("env", [
    {},
    {"S3_ASSETS_TARGET": "aws", "S3_ASSETS_REGION": "eu-west-1"},  # bucket left to the SageMaker rule
    {"S3_ASSETS_BUCKET": "my-bucket", "S3_ASSETS_PREFIX": "a`b/<script>x</script>"},  # keys may hold both
], ids=["defaults", "aws-sagemaker-bucket", "prefix-with-backtick-and-tags"])
def test_no_description_holds_html_outside_code_spans(env):
    described = list(all_descriptions(build_definitions(env)))
    # The walk reaches every kind of definition, so a new one cannot slip past unseen.
    kinds = {where.split()[0] for where, _ in described}
    assert kinds >= {"asset", "check", "job", "op", "schedule", "sensor", "resource"}
    assert any(".dry_run" in where for where, _ in described)  # config fields are walked too
    offending = {where: found for where, text in described if (found := renders_wrongly(text))}
    assert not offending, f"descriptions that markdown would misrender: {offending}"


def test_s3_copies_show_their_real_uri_before_any_run():
    defs = build_definitions({"S3_ASSETS_BUCKET": "my-bucket", "S3_ASSETS_PREFIX": "/team/ins/"})
    node = defs.resolve_asset_graph().get(_key("train_csv"))
    assert "`s3://my-bucket/team/ins/raw/train.csv`" in node.description
    assert node.metadata["dagster/uri"] == "s3://my-bucket/team/ins/raw/train.csv"
    dictionary = defs.resolve_asset_graph().get(_key("col_info_csv"))
    assert dictionary.metadata["dagster/uri"] == "s3://my-bucket/team/ins/raw/metadata/col_info.csv"


def test_sagemaker_bucket_is_shown_as_the_rule_not_as_a_uri():
    defs = build_definitions({"S3_ASSETS_TARGET": "aws", "S3_ASSETS_REGION": "eu-west-1"})
    node = defs.resolve_asset_graph().get(_key("train_csv"))
    assert "`s3://sagemaker-eu-west-1-{account_id}/ins_dataset/raw/train.csv`" in node.description
    assert "dagster/uri" not in node.metadata  # not known before the account is


def test_raw_tables_show_where_they_come_from_and_their_expected_shape(tmp_path):
    defs = build_definitions({"S3_ASSETS_SOURCE": str(tmp_path)})
    node = defs.resolve_asset_graph().get(_key("train"))
    assert node.metadata["source"] == str(tmp_path / "ticdata2000.txt")
    assert node.metadata["expected_columns"] == 86 and node.metadata["expected_rows"] == 5822


def test_assets_have_owners_tags_and_source_code_references():
    graph = build_definitions({}).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners and node.tags.get("dataset") == "coil2000", key
        references = node.metadata["dagster/code_references"].code_references
        assert references and references[0].file_path.endswith(".py") and references[0].line_number > 0, key


def _key(name: str):
    from dagster import AssetKey

    return AssetKey(name)
