"""Where exported RDB files go (CopySnapshot TargetBucket) and where SnapshotArns restores read
them from (`arn:aws:s3:::bucket/key`): an S3-compatible server when one is configured
(S3_ENDPOINT_URL, through boto3), else a local directory per bucket under the data directory.

Both the handlers (does the bucket or object exist? AWS answers that in the call) and the
reconciler (upload, download) use it, so it sits below both."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine import copy_private, private_dir

# S3's bucket naming rule (3-63 characters: lower-case letters, digits, dots, hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::([^/]+)/(.+)$")
# Buckets named before S3's current rule may hold underscores and capitals (the model's own
# example is arn:aws:s3:::my_bucket/snapshot1.rdb): accepted in ARNs to read from.
_LEGACY_BUCKET = re.compile(r"^[A-Za-z0-9._-]{3,255}$")


class ObjectStoreError(Exception):
    """A bucket or object is missing or unreachable; the message says which and why."""


def valid_bucket(name: str) -> bool:
    return bool(_BUCKET.match(name)) and ".." not in name


def parse_s3_arn(arn: str) -> tuple[str, str] | None:
    """(bucket, key) of `arn:aws:s3:::bucket/key`, or None when it is not such an ARN."""
    match = _ARN.match(arn)
    if match is None:
        return None
    bucket, key = match.group(1), match.group(2)
    if not _LEGACY_BUCKET.match(bucket) or ".." in bucket or key.startswith("/") or ".." in key.split("/"):
        return None
    return bucket, key


class ObjectStore(Protocol):
    kind: str  # "s3" | "local"

    def bucket_exists(self, bucket: str) -> bool: ...

    def object_exists(self, bucket: str, key: str) -> bool: ...

    def upload(self, source: Path, bucket: str, key: str) -> None: ...

    def download(self, bucket: str, key: str, dest: Path) -> None: ...


@dataclass
class LocalObjectStore:
    """Buckets are directories under `root`; a bucket is created by the first export into it."""

    root: Path
    kind: str = "local"

    def path(self, bucket: str, key: str) -> Path:
        """The file of an object, never outside the bucket's directory (keys come from callers)."""
        base = (self.root / bucket).resolve()
        path = (base / key.lstrip("/")).resolve()
        if base not in path.parents:
            raise ObjectStoreError(f"s3://{bucket}/{key} is not a valid object name")
        return path

    def bucket_exists(self, bucket: str) -> bool:
        return True  # made on first use: there is nobody to create it beforehand

    def object_exists(self, bucket: str, key: str) -> bool:
        try:
            return self.path(bucket, key).is_file()
        except ObjectStoreError:
            return False

    def upload(self, source: Path, bucket: str, key: str) -> None:
        dest = self.path(bucket, key)
        private_dir(dest.parent)
        partial = dest.with_name(dest.name + ".partial")
        try:
            copy_private(source, partial)
            partial.replace(dest)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ObjectStoreError(f"cannot write {dest}: {exc}") from exc

    def download(self, bucket: str, key: str, dest: Path) -> None:
        source = self.path(bucket, key)
        try:
            copy_private(source, dest)
        except OSError as exc:
            raise ObjectStoreError(f"cannot read s3://{bucket}/{key} ({source}): {exc}") from exc


class S3ObjectStore:
    """An S3-compatible server (AWS S3, MinIO, moto's server...) through boto3."""

    kind = "s3"

    def __init__(self, endpoint_url: str, region: str) -> None:
        import boto3  # only a service configured with an S3 endpoint needs it loaded

        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self._client.head_bucket(Bucket=bucket)
            return True
        except Exception as exc:
            if _status(exc) in (403, 404):
                return False
            raise ObjectStoreError(f"S3 bucket {bucket}: {exc}") from exc

    def object_exists(self, bucket: str, key: str) -> bool:
        try:
            self._client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            if _status(exc) in (403, 404):
                return False
            raise ObjectStoreError(f"s3://{bucket}/{key}: {exc}") from exc

    def upload(self, source: Path, bucket: str, key: str) -> None:
        try:
            self._client.upload_file(str(source), bucket, key)
        except Exception as exc:
            raise ObjectStoreError(f"upload to s3://{bucket}/{key} failed: {exc}") from exc

    def download(self, bucket: str, key: str, dest: Path) -> None:
        try:
            self._client.download_file(bucket, key, str(dest))
        except Exception as exc:
            raise ObjectStoreError(f"download of s3://{bucket}/{key} failed: {exc}") from exc


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(code) if code is not None else None
    return None


def object_store(endpoint_url: str | None, exports_dir: Path, region: str) -> ObjectStore:
    return S3ObjectStore(endpoint_url, region) if endpoint_url else LocalObjectStore(exports_dir)
