"""Service settings: environment variables with the prefix ELASTICACHE_LOCAL_, or CLI flags."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """A per-user state directory, as the platform expects it."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "elasticache-local"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "elasticache-local"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELASTICACHE_LOCAL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8379, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    runtime: Literal["process", "docker"] = "process"
    # loopback: every node its own 127.x address on the engine's standard port, as in AWS.
    # ports: 127.0.0.1 with a port from port_range (macOS without loopback aliases).
    # auto: loopback where this machine allows it, else ports.
    addressing: Literal["auto", "loopback", "ports"] = "auto"
    node_network: str = "127.0.100.0/22"
    endpoint_network: str = "127.0.104.0/22"
    port_range: str = "30000-30999"
    region: str = "us-east-1"
    default_account: str = "123456789012"
    # Refuse an EngineVersion this machine cannot run, instead of running the nearest one.
    strict_engine_versions: bool = False
    health_interval: float = Field(default=0.2, gt=0)
    down_after: float = Field(default=1.0, gt=0)
    # A failover that has not moved the primary endpoint after this many seconds is aborted (and
    # decided again); no automatic failover of a group starts within failover_cooldown seconds of
    # the end of its previous one (TestFailover has AWS's own limit instead).
    failover_timeout: float = Field(default=30.0, gt=0)
    failover_cooldown: float = Field(default=0.5, ge=0)
    # Standalone cache clusters (nothing fails over): probed less often; a crash is seen at once anyway.
    standalone_health_interval: float = Field(default=1.0, gt=0)
    resync_interval: float = Field(default=2.0, gt=0)
    # Cache nodes per account and region: AWS's default quota, raised there on request (the
    # scale benchmark runs 500 nodes on one machine).
    node_quota: int = Field(default=300, ge=1)
    # `clock advance` stops at every window start on its way; at each it waits at most this many
    # seconds for the control loop to go idle (a backup to finish, say) before moving on.
    advance_step_timeout: float = Field(default=120.0, gt=0)
    workers: int = Field(default=4, ge=1, le=64)
    log_level: str = "info"
    # Where to look for node binaries besides PATH (e.g. a valkey build).
    binary_paths: list[Path] = Field(default_factory=list)
    # The L4 proxy behind replication group endpoints that cannot be floating addresses (engines
    # before 7.0, ports addressing). haproxy: HAProxy processes re-pointed through the runtime
    # API; builtin: an asyncio forwarder in the service (slower, nothing to install); auto:
    # haproxy when the binary is found, else builtin.
    l4_proxy: Literal["auto", "haproxy", "builtin"] = "auto"
    # An S3-compatible server (AWS S3, MinIO, moto_server...) for CopySnapshot TargetBucket exports
    # and SnapshotArns restores, reached with boto3's usual credentials. None: a directory per
    # bucket under DATA_DIR/exports.
    s3_endpoint_url: str | None = None
    # Seconds a snapshot's save may take before it counts as failed.
    snapshot_timeout: float = Field(default=3600.0, gt=0)
    # Seconds between two readings of every node's stats for /metrics (a scrape renders the last).
    metrics_interval: float = Field(default=5.0, gt=0)
    # Memcached SASL (controlplane/sasl.py): the file of `user:password` lines (owner-only) whose
    # users the nodes of memcached clusters tagged `elasticache-local:sasl=true` have. None: no
    # cluster can ask for SASL.
    memcached_sasl_file: Path | None = None

    # --- who may call, and from where (README "Strict profile") ---
    # default: the API answers anyone on this machine, as a local emulator does. strict: every
    # Query API request must be SigV4-signed with a key of credentials_file, and the JSON API and
    # the dashboard need admin_token (verify_signatures and the admin guard on).
    profile: Literal["default", "strict"] = "default"
    verify_signatures: bool = False
    # Access keys: JSON (a list of {"AccessKeyId", "SecretAccessKey", "AccountId", "UserName"}) or
    # an INI file like ~/.aws/credentials (a section per user: aws_access_key_id,
    # aws_secret_access_key, aws_account_id). A known key's account is its AccountId.
    credentials_file: Path | None = None
    # IAM policies per user, access key, account or "*" (JSON); set: every Query API request is
    # allowed or refused (AccessDenied) by them, as IAM does.
    policy_file: Path | None = None
    # The token the JSON API (Authorization: Bearer) and the dashboard (HTTP Basic password) need
    # when signatures are verified or when it is set.
    admin_token: SecretStr | None = None
    # Listening on an address other machines can reach (--host 0.0.0.0) must be asked for.
    allow_remote: bool = False

    @model_validator(mode="after")
    def _profile(self) -> Settings:
        if self.profile == "strict":
            self.verify_signatures = True
        return self

    @property
    def guard_admin(self) -> bool:
        """Whether the JSON API and the dashboard need admin_token."""
        return self.verify_signatures or self.admin_token is not None

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    def port_bounds(self) -> tuple[int, int]:
        low, _, high = self.port_range.partition("-")
        return int(low), int(high or low)

    # --- the docker runtime (runtime = "docker") ---
    # The Docker engine: None means DOCKER_HOST, the current docker context, or /var/run/docker.sock.
    docker_host: str | None = None
    # host: nodes share the host's network (own loopback address, standard port, no proxy in the
    # data path; Linux). ports: each node's port published on its address (Docker Desktop).
    docker_network: Literal["host", "ports"] = "host"
    # One image per engine and version; "{version}" is replaced by the version to run.
    docker_image_redis: str = "redis:{version}"
    docker_image_valkey: str = "valkey/valkey:{version}"
    docker_image_memcached: str = "memcached:{version}"
    # Pull a missing image on first use. Off: only images present on the engine run (CI, built by
    # deploy/build-images.sh).
    docker_pull: bool = True
    # Versions offered for pulling (images already present are offered too).
    docker_versions: dict[str, list[str]] = Field(default_factory=lambda: {
        "redis": ["7.0.15", "6.2.14", "6.0.20", "5.0.14", "4.0.14"],
        "valkey": ["8.1.1", "8.0.2", "7.2.8"],
        "memcached": ["1.6.22"],
    })
