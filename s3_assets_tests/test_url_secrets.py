"""Credentials in configured URLs are never shown (issue 19, attack item 6): a user part in the
UCI source URL or in the S3 endpoint (botocore's `AWS_ENDPOINT_URL_S3`; `S3_ASSETS_ENDPOINT_URL`
refuses one: S3 does not use it) reaches no definition metadata, no resource's configured values
(the UI's Resources page), no stored event, no CLI output and no error message;
`s3_assets.lib.text.shown_url` is the one place that strips it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import traceback
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import urllib3
from dagster import DagsterInstance

from s3_assets.definitions import build_definitions
from s3_assets.lib.errors import ConfigError, S3AssetsError
from s3_assets.lib.text import shown_url, user_part_problem, without_url_secrets
from s3_assets.settings import build_resources
from s3_assets_tests.test_cli_and_sensor import DAGSTER, ROOT
from s3_assets_tests.test_uci_source import Server

SOURCE_USER, SOURCE_PASSWORD = "srcuser", "srcpass999"
ENDPOINT_USER, ENDPOINT_PASSWORD = "AKIAUSER", "supersecret123"
SECRETS = (SOURCE_PASSWORD, ENDPOINT_PASSWORD, ENDPOINT_USER)


def with_user(url: str, user: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{password}@{rest}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_hidden(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown in {where}: ...{text[max(0, text.find(secret) - 300):][:600]}"


def files_text(folder: Path) -> str:
    """Every file under `folder` (the instance's sqlite event log, run storage, compute logs) as text."""
    return "\n".join(path.read_bytes().decode("utf-8", "replace") for path in folder.rglob("*") if path.is_file())


def error_chain(error: BaseException) -> str:
    """What Dagster stores of an error: its message, its traceback and every cause's."""
    return "".join(traceback.format_exception(error))


@pytest.fixture
def secret_env(s3_server, bucket, uci_dir, tmp_path):
    source = Server(uci_dir)
    creds = s3_server.server.credentials()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("S3_ASSETS_", "AWS_"))}
    env.update({
        "S3_ASSETS_TARGET": "custom", "S3_ASSETS_REGION": "us-east-1", "S3_ASSETS_BUCKET": bucket,
        "AWS_ENDPOINT_URL_S3": with_user(s3_server.state.endpoint_url, ENDPOINT_USER, ENDPOINT_PASSWORD),
        "S3_ASSETS_ACCESS_KEY_ID": creds.access_key_id, "S3_ASSETS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "S3_ASSETS_SOURCE": with_user(source.url, SOURCE_USER, SOURCE_PASSWORD), "S3_ASSETS_OFFLINE_SOURCE": "",
        "S3_ASSETS_CACHE_DIR": str(tmp_path / "cache"), "S3_ASSETS_MAX_ATTEMPTS": "1",
    })
    yield env
    source.close()


def test_no_password_of_a_configured_url_in_metadata_events_output_or_errors(secret_env, tmp_path, s3, bucket,
                                                                             monkeypatch):
    # The definitions (what the UI shows before any run), loaded as `dg dev` loads them.
    for name in ("S3_ASSETS_SOURCE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.setenv(name, secret_env[name])
    for name, resource in build_resources(secret_env).items():  # the Resources page's configured values
        assert_hidden(resource.get_resource_definition().config_schema.default_value_as_json_str, name)
    definitions = build_definitions(secret_env)
    shown = [str(dict(spec.metadata)) + str(spec.description)
             for spec in definitions.resolve_all_asset_specs()]
    assert any(f"127.0.0.1:{secret_env['S3_ASSETS_SOURCE'].rsplit(':', 1)[1]}" in text for text in shown)
    assert_hidden("\n".join(shown), "the definitions' metadata")

    # A whole-graph run through the CLI, into a persistent instance.
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "config" / "dagster.yaml", home / "dagster.yaml")
    env = {**secret_env, "DAGSTER_HOME": str(home)}
    done = subprocess.run([DAGSTER, "job", "execute", "-m", "s3_assets.definitions", "-j", "refresh_all"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Your data:" in done.stdout + done.stderr
    assert_hidden(done.stdout + done.stderr, "the CLI's output")
    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.is_success
    assert f"{bucket}" in files_text(home)  # the scan reads the stored events
    assert_hidden(files_text(home), "the instance's stored runs and events")

    # A run whose endpoint cannot be reached: its error, stored, names the endpoint without the user part.
    unreachable = with_user(f"http://127.0.0.1:{closed_port()}", ENDPOINT_USER, ENDPOINT_PASSWORD)
    failed = subprocess.run([DAGSTER, "asset", "materialize", "-m", "s3_assets.definitions", "--select", "train_csv"],
                            cwd=ROOT, env={**env, "AWS_ENDPOINT_URL_S3": unreachable},
                            capture_output=True, text=True, timeout=900)
    assert failed.returncode != 0 and "cannot connect to the S3 endpoint at http://127.0.0.1:" in failed.stderr
    assert_hidden(failed.stdout + failed.stderr, "a failed run's output")
    assert_hidden(files_text(home), "a failed run's stored events")

    # The same errors raised in process, with their causes.
    keys = {name: secret_env.pop(f"S3_ASSETS_{name}") for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY")}
    for name, value in keys.items():  # outside a run: botocore's chain, not the resources' EnvVars
        monkeypatch.setenv(f"AWS_{name}", value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", unreachable)
    with pytest.raises(S3AssetsError) as raised:
        build_resources(secret_env)["s3_prefix"].connect()
    assert "127.0.0.1" in str(raised.value)
    assert_hidden(error_chain(raised.value), "the unreachable endpoint's error")
    for malformed in ("htp://AKIAUSER:supersecret123@127.0.0.1:9000", "AKIAUSER:supersecret123@127.0.0.1:9000",
                      "http:/AKIAUSER:supersecret123@127.0.0.1:9000", unreachable,
                      with_user("http://127.0.0.1:9000/p?X-Amz-Credential=AKIAUSER", "u", ENDPOINT_PASSWORD)):
        with pytest.raises(ConfigError, match="S3_ASSETS_ENDPOINT_URL") as raised:
            build_resources({**secret_env, "S3_ASSETS_ENDPOINT_URL": malformed})
        assert_hidden(error_chain(raised.value), f"the error for {malformed!r}")


@pytest.mark.parametrize(("url", "shown"), [
    ("http://AKIAUSER:supersecret123@127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("https://user:pw@s3.example.com:9000/base?X-Amz-Signature=s#f", "https://s3.example.com:9000/base"),
    ("http://u:p%40ss@host/tic-mld/", "http://host/tic-mld/"),
    ("http://u:pa/ss@host:9/x", "http://***@host:9/x"),  # an unencoded '/' in the password
    ("http://u:pa?ss@host/x", "http://***@…"),  # every parser ends the host at '?': none reads 'host'
    ("http://host/x?a=b@c", "http://***@…"),  # an '@' after a '?': refused at load; no host claimed
    ("redis://admin:Kx9q2Lw/Zp7#frag@host:6379/0", "redis://***@…"),  # '/' then '#' in a password
    ("redis://admin:Kx9q2Lw/Zp7?x@host:6379/0", "redis://***@…"),  # '/' then '?' in a password
    ("htp://AKIAUSER:supersecret123@h", "htp://h"),
    ("AKIAUSER:supersecret123@127.0.0.1:9000", "***@127.0.0.1:9000"),
    ("redis://:brokerpass@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("http://[::1]:8333", "http://[::1]:8333"),
    ("/data/coil2000", "/data/coil2000"),
])
def test_shown_url_drops_every_user_part_query_and_fragment(url, shown):
    assert shown_url(url) == shown


def test_a_library_message_loses_the_configured_urls_secrets():
    url = "http://AKIAUSER:super%2Fsecret@127.0.0.1:9000"
    message = ('Could not connect to the endpoint URL: "http://AKIAUSER:super%2Fsecret@127.0.0.1:9000/b?list-type=2" '
               "(user AKIAUSER, password super/secret); broker redis://:other@h:1/0")
    text = without_url_secrets(message, url)
    assert "AKIAUSER" not in text and "super" not in text and "other" not in text and "127.0.0.1:9000" in text


@pytest.mark.parametrize("password", ["Kx9q2Lw/Zp7Rt+4s", "Tops3cret#pw", "Tops3cret?pw"])
def test_a_password_no_url_parser_reads_is_refused_by_name_and_never_quoted(password):
    """A '/', '?' or '#' left unencoded in a password ends the host for requests and kombu,
    which then quote a piece of it in their errors ("Failed to parse: 'user:Kx9q2Lw'", "Port
    could not be cast to integer value as 'Tops3cret'"): refused when the settings load, naming
    the variable; no piece of the password is in the message."""
    from s3_assets.settings import load_cluster_settings

    pieces = [piece for piece in password.replace("/", " ").replace("#", " ").replace("?", " ").split() if len(piece) >= 3]
    cases = [
        (lambda: build_resources({"S3_ASSETS_SOURCE": f"http://srcuser:{password}@127.0.0.1:1/"}), "S3_ASSETS_SOURCE"),
        (lambda: load_cluster_settings({"S3_ASSETS_CELERY_BROKER_URL": f"redis://:{password}@127.0.0.1:1/0"}),
         "S3_ASSETS_CELERY_BROKER_URL"),
    ]
    for build, variable in cases:
        with pytest.raises(ConfigError) as refused:
            build()
        text = error_chain(refused.value)
        assert variable in str(refused.value) and "percent-encode" in str(refused.value)
        for piece in pieces:
            assert piece not in text, f"{piece!r} of the password shown: {text}"
    # the same URL percent-encoded is accepted
    encoded = password.replace("/", "%2F").replace("#", "%23").replace("?", "%3F")
    assert load_cluster_settings({"S3_ASSETS_CELERY_BROKER_URL": f"redis://:{encoded}@127.0.0.1:1/0"})


def test_a_piece_of_a_password_that_a_parser_quotes_is_blanked():
    url = "http://srcuser:Kx9q2Lw/Zp7Rt+4s@127.0.0.1:23410/"
    message = "InvalidURL: Failed to parse: 'srcuser:Kx9q2Lw' is not a valid host or port; then Zp7Rt+4s@127.0.0.1"
    text = without_url_secrets(message, url)
    assert "Kx9q2Lw" not in text and "Zp7Rt" not in text and "srcuser" not in text, text


# -- a '\\', '?' or '#' in the user part: parsers disagree on the host, or none reads the one after '@'


def _parsers_hosts(url: str) -> set[str | None]:
    """The host urlsplit (kombu, botocore) and urllib3 (requests, a WHATWG-style parser) read."""
    hosts: set[str | None] = {urlsplit(url).hostname}
    try:
        hosts.add(urllib3.util.parse_url(url).host)
    except urllib3.exceptions.LocationParseError:
        hosts.add(None)
    return hosts


@pytest.mark.parametrize("url", [
    "http://h:1\\@x/", "http://127.0.0.1:18480\\@x/", "http://alice:Zq9xK\\w7@host/", "http://u:pa?ss@host/x",
    "http://u:pa#ss/x@host/", "http://127.0.0.1:18480\\x/", "redis://:Tops3cret#pw@127.0.0.1:6379/0",
    "http://u:pa?ss@h?q=1@x/", "redis://admin:Kx9q2Lw/Zp7#frag@host:6379/0", "redis://admin:Kx9q2Lw/Zp7?x@host:6379/0",
])
def test_shown_url_claims_no_host_that_a_parser_would_not_use(url):
    """`http://h:1\\@x/` was shown as `http://x/`, while requests contacts `h`: where parsers
    disagree on the host (or none reads the host after the `@`), no host is shown, the user part
    never, and the URL is one `user_part_problem` refuses."""
    shown = shown_url(url)
    assert shown in ("http://***@…", "http://…", "redis://***@…") or _parsers_hosts(url) == {urlsplit(shown).hostname}, (
        f"{url!r} shown as {shown!r}, parsers read {_parsers_hosts(url)}")
    assert user_part_problem(url) is not None
    for piece in ("Zq9xK", "pa", "Tops3cret", "alice", "admin", "Kx9q2Lw", "Zp7"):
        assert piece not in shown.replace("http", "")


SEPARATORS = ["\\", ";", "%", "@", "&", " ", "!", "$", "=", ",", "+", "*", "'", "~", "-", "_", ".", "|"]


@pytest.mark.parametrize("separator", SEPARATORS)
@pytest.mark.parametrize("encoded", [False, True], ids=["as-given", "percent-encoded"])
def test_no_fragment_of_a_password_cut_at_any_separator_survives(separator, encoded):
    """A library may cut a password at any non-alphanumeric character and quote one piece, or a
    run of pieces (`'***:Zq9xK'` from `Zq9xK\\w7`): each such fragment of 3 characters or more
    is blanked, as given and percent-decoded; the host stays readable."""
    pieces = ["Kx9q2Lw", "Zp7Rt4s", "Mn8Vb", "Qe6"]
    password = separator.join(pieces)
    url = f"http://srcuser:{quote(password, safe='') if encoded else password}@127.0.0.1:23410/"
    quoted = [*pieces, separator.join(pieces[1:3]), separator.join(pieces[:2]), password, quote(password, safe="")]
    message = "; ".join(f"InvalidURL: Failed to parse: 'srcuser:{fragment}' is not a valid host" for fragment in quoted)
    text = without_url_secrets(message + " at 127.0.0.1:23410", url)
    for fragment in (*quoted, "srcuser"):
        assert fragment not in text, f"{fragment!r} of {password!r} shown: {text}"
    assert "127.0.0.1:23410" in text and "InvalidURL: Failed to parse" in text
