"""Dagster resources: the S3 connection, the bucket+prefix the project owns, the UCI source,
and the IO manager.

`S3Connection` is dagster-aws's `S3Resource` plus the choice of target (embedded SeaweedFS,
AWS, or any S3-compatible endpoint), timeouts and the retry mode. `S3Prefix` is the resource
the assets use: one bucket and one prefix in it. Every key, URI and prefix rule lives in
`S3Prefix`, nowhere else.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from dagster import ConfigurableIOManager, ConfigurableResource, InitResourceContext, InputContext, OutputContext
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.io_manager import PickledObjectS3IOManager
from pydantic import Field, PrivateAttr

from s3_assets.lib.errors import ConfigError, describe_client_error
from s3_assets.lib.source import UCI_BASE_URL, Fetched, SourceFetcher

if TYPE_CHECKING:
    from s3_assets.local_s3.server import ServerState

BUCKET_NAME = re.compile(r"^(?!xn--)(?!sthree-)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def validate_bucket_name(bucket: str) -> str:
    if not BUCKET_NAME.match(bucket):
        raise ConfigError(
            f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit (S3_ASSETS_BUCKET)"
        )
    return bucket


def normalise_prefix(prefix: str) -> str:
    """'ins_dataset', '/ins_dataset/' -> 'ins_dataset/'; '' or '/' -> '' (the bucket root)."""
    stripped = prefix.strip().strip("/")
    return f"{stripped}/" if stripped else ""


class S3Connection(S3Resource):
    """How to reach S3: the embedded server (`local`), AWS (`aws`) or an endpoint (`custom`)."""

    target: Literal["local", "aws", "custom"] = Field(
        default="local", description="local: embedded SeaweedFS; aws: AWS S3; custom: endpoint_url"
    )
    local_dir: str = Field(default=".s3-assets/local-s3", description="embedded S3's directory (local)")
    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(default="standard")
    connect_timeout: float = Field(default=5.0, description="seconds to connect")
    read_timeout: float = Field(default=60.0, description="seconds to wait for a response")
    max_pool_connections: int = Field(default=32, description="HTTP connections per client")

    def local_server(self) -> ServerState:
        """Start (or reuse) the embedded S3 of local_dir; only for target=local."""
        from s3_assets.local_s3.server import EmbeddedS3

        return EmbeddedS3(self.local_dir).ensure_running()

    def endpoint(self) -> str | None:
        if self.target == "local":
            return self.local_server().endpoint_url
        if self.target == "custom" and not self.endpoint_url:
            raise ConfigError("target 'custom' needs an endpoint_url (S3_ASSETS_ENDPOINT_URL)")
        return self.endpoint_url or None

    def get_client(self) -> Any:
        config = Config(
            # total_max_attempts counts the first call; botocore's max_attempts would not.
            retries={"total_max_attempts": self.max_attempts, "mode": self.retry_mode},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_pool_connections=self.max_pool_connections,
            # S3-compatible servers on loopback have no virtual-host DNS names.
            s3={"addressing_style": "path"} if self.target != "aws" else None,
        )
        if self.target == "local":
            from s3_assets.local_s3.server import EmbeddedS3

            server = EmbeddedS3(self.local_dir)
            state = server.ensure_running()
            creds = server.credentials()
            session = boto3.session.Session(
                aws_access_key_id=creds.access_key_id,
                aws_secret_access_key=creds.secret_access_key,
                region_name=self.region_name or "us-east-1",
            )
            return session.client("s3", endpoint_url=state.endpoint_url, config=config)
        return self.aws_session().client(
            "s3", endpoint_url=self.endpoint(), use_ssl=self.use_ssl, verify=self.verify, config=config
        )

    def aws_session(self) -> boto3.session.Session:
        """The credentials chain for aws/custom: profile, explicit keys, or boto3's default."""
        return boto3.session.Session(
            profile_name=self.profile_name,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            region_name=self.region_name,
        )


class S3Prefix(ConfigurableResource):
    """One bucket and one prefix in it: where the data goes, what is listed and cleaned up."""

    s3: S3Connection
    bucket: str = Field(default="", description="bucket; empty on aws: sagemaker-{region}-{account_id}")
    prefix: str = Field(default="ins_dataset", description="prefix of everything the project writes")
    create_bucket: bool = Field(default=False, description="create the bucket if missing (always on local)")
    server_side_encryption: Literal["", "AES256", "aws:kms"] = Field(default="", description="SSE on every write")
    sse_kms_key_id: str = Field(default="", description="KMS key id for aws:kms")
    expected_bucket_owner: str = Field(default="", description="account id sent as ExpectedBucketOwner on every request")

    _client: Any = PrivateAttr(default=None)
    _bucket: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._client = None
        self._bucket = None

    # -- naming -------------------------------------------------------------------------
    @property
    def root(self) -> str:
        """The prefix as used for keys, listing and deleting: '' or ending in '/'."""
        return normalise_prefix(self.prefix)

    def key(self, relative: str) -> str:
        return self.root + relative.lstrip("/")

    def uri(self, key: str = "") -> str:
        return f"s3://{self.resolved_bucket()}/{key}"

    def key_from_uri(self, uri: str) -> str:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or bucket != self.resolved_bucket():
            raise ValueError(f"{uri!r} is not in bucket {self.resolved_bucket()!r}")
        return key

    def write_args(self) -> dict[str, str]:
        """Extra arguments for every PutObject/upload: server-side encryption when configured."""
        args: dict[str, str] = {}
        if self.server_side_encryption:
            args["ServerSideEncryption"] = self.server_side_encryption
        if self.server_side_encryption == "aws:kms" and self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    def destructive_root(self) -> str:
        """The prefix for deleting; refuses the bucket root."""
        if not self.root:
            raise ConfigError(
                f"refusing to delete with an empty or root prefix ({self.prefix!r}): "
                "set S3_ASSETS_PREFIX to the folder to clean up"
            )
        return self.root

    def browse_url(self, key: str) -> str:
        """Where a person can look at the object: AWS console, or the embedded filer's browser."""
        bucket = self.resolved_bucket()
        folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        if self.s3.target == "aws":
            region = self.s3.region_name or "us-east-1"
            return (
                f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}"
                f"?region={region}&prefix={quote(folder)}&showversions=false"
            )
        if self.s3.target == "local":
            filer = self.s3.local_server().browser_url
            return f"{filer}{quote(bucket)}/{quote(folder)}"
        return f"{self.s3.endpoint_url.rstrip('/')}/{quote(bucket)}/{quote(key)}"

    # -- client and bucket ----------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            client = self.s3.get_client()
            if self.expected_bucket_owner:
                client.meta.events.register("before-parameter-build.s3", self._add_expected_owner)
            self._ensure_bucket(client)
            self._client = client
        return self._client

    def _add_expected_owner(self, params: dict, model: Any, **kwargs: Any) -> None:
        """Every operation that takes ExpectedBucketOwner gets it: S3 then refuses a bucket
        that changed hands instead of writing our data into it."""
        if "ExpectedBucketOwner" in model.input_shape.members:
            params.setdefault("ExpectedBucketOwner", self.expected_bucket_owner)

    def resolved_bucket(self) -> str:
        if self._bucket is None:
            if self.bucket:
                self._bucket = validate_bucket_name(self.bucket)
            elif self.s3.target == "aws":
                self._bucket = self._sagemaker_default_bucket()
            else:
                raise ConfigError("no bucket configured: set S3_ASSETS_BUCKET")
        return self._bucket

    def _sagemaker_default_bucket(self, sts_client: Any = None) -> str:
        """The notebook's `sagemaker.Session().default_bucket()`: sagemaker-{region}-{account}."""
        session = self.s3.aws_session()
        region = self.s3.region_name or session.region_name or "us-east-1"
        try:
            account = (sts_client or session.client("sts", region_name=region)).get_caller_identity()["Account"]
        except Exception as error:
            raise ConfigError(
                "no S3_ASSETS_BUCKET set and the AWS account could not be read to name the "
                f"SageMaker default bucket: {type(error).__name__}. Set S3_ASSETS_BUCKET"
            ) from None
        return f"sagemaker-{region}-{account}"

    def _ensure_bucket(self, client: Any) -> None:
        """Check the bucket with a ListObjectsV2 under the prefix: unlike HeadBucket, it is
        allowed by a least-privilege policy (ListBucket with a prefix condition)."""
        bucket = self.resolved_bucket()
        endpoint = client.meta.endpoint_url
        try:
            client.list_objects_v2(Bucket=bucket, Prefix=self.root, MaxKeys=1)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise describe_client_error(error, bucket=bucket, endpoint=endpoint) from None
        except Exception as error:
            raise describe_client_error(error, bucket=bucket, endpoint=endpoint) from None
        if not (self.create_bucket or self.s3.target == "local"):
            raise ConfigError(
                f"bucket {bucket!r} does not exist at {endpoint}: create it, or set "
                "S3_ASSETS_CREATE_BUCKET=true to let the project create it"
            )
        kwargs: dict[str, Any] = {"Bucket": bucket}
        region = self.s3.region_name
        if self.s3.target == "aws" and region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(**kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise describe_client_error(error, bucket=bucket, endpoint=endpoint) from None


class S3PickleIOManager(ConfigurableIOManager):
    """dagster-aws's pickle IO manager, in the data bucket but under its own prefix.

    The prefix must not overlap the data prefix, so listing and cleanup never see Dagster's
    own step outputs. Every step process can reach it, so the multiprocess executor (and
    k8s/celery executors) work.
    """

    s3_prefix: S3Prefix
    io_prefix: str = Field(default="dagster-io", description="prefix for step outputs")

    _inner: PickledObjectS3IOManager | None = PrivateAttr(default=None)

    def _manager(self) -> PickledObjectS3IOManager:
        if self._inner is None:
            io_root = normalise_prefix(self.io_prefix)
            data_root = self.s3_prefix.root
            if not io_root or io_root.startswith(data_root) or data_root.startswith(io_root):
                raise ConfigError(
                    f"S3_ASSETS_IO_PREFIX {self.io_prefix!r} overlaps the data prefix "
                    f"{self.s3_prefix.prefix!r}: choose a prefix outside it"
                )
            self._inner = PickledObjectS3IOManager(
                s3_bucket=self.s3_prefix.resolved_bucket(),
                s3_session=self.s3_prefix.client,
                s3_prefix=io_root.rstrip("/"),
            )
        return self._inner

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        self._manager().handle_output(context, obj)

    def load_input(self, context: InputContext) -> Any:
        return self._manager().load_input(context)


class UciSource(ConfigurableResource):
    """Where the UCI files come from: a base URL (default: UCI) or a local directory."""

    base: str = Field(default=UCI_BASE_URL, description="base URL or local directory of the UCI files")
    offline_dir: str = Field(default="", description="local copy tried when the base URL is unreachable")
    cache_dir: str = Field(default=".s3-assets/cache", description="conditional-download cache")
    timeout: float = Field(default=30.0, description="seconds per HTTP connect/read")
    retries: int = Field(default=3, description="HTTP retries on connection errors and 5xx")

    def fetcher(self) -> SourceFetcher:
        return SourceFetcher(base=self.base, offline_dir=self.offline_dir, cache_dir=self.cache_dir,
                             timeout=self.timeout, retries=self.retries)

    def fetch(self, filename: str) -> Fetched:
        return self.fetcher().fetch(filename)
