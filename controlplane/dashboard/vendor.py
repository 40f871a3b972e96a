"""The dashboard's front-end libraries, fetched from the npm registry: the only writer of
controlplane/dashboard/static/vendor/ (`make vendor`, or `python -m controlplane.dashboard.vendor`).

Each library is pinned by version and by the sha512 integrity the registry publishes for its
tarball; a tarball that does not match is refused. Only the files the pages load are kept, with
the licence files beside them, and MANIFEST.json records every kept file's sha256, so a test can
tell a hand edit (or a partial fetch) from what this script wrote. Users need no build step: the
fetched files are committed."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
MANIFEST = VENDOR_DIR / "MANIFEST.json"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Pin:
    package: str  # the npm name
    version: str
    integrity: str  # "sha512-<base64>", as the registry's dist.integrity says
    files: tuple[str, ...]  # paths inside the tarball's package/ directory, licences included
    directory: str  # under static/vendor/

    @property
    def tarball_url(self) -> str:
        base = self.package.rsplit("/", 1)[-1]
        return f"{REGISTRY}/{self.package}/-/{base}-{self.version}.tgz"


PINS: tuple[Pin, ...] = (
    Pin("htmx.org", "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        ("LICENSE", "dist/htmx.min.js"), "htmx"),
    Pin("htmx-ext-sse", "2.2.4",
        "sha512-LJmxVhykyflBWgh5PvbRidcyuqMHlgfajmmzumvKctv9puvsufeH6OaejSMZTNTnEI8O2wXXn4ZZtBdpEMqmEQ==",
        ("LICENSE", "dist/sse.min.js"), "htmx-ext-sse"),
    # Live fragments are morphed into the page (only what changed is touched), not replaced: a
    # 100-row table replaced whole cost the browser ~100 ms of layout on every change.
    Pin("idiomorph", "0.8.0",
        "sha512-R47JBL+6jHDQvcnbppIUtXXcxi5h6+wuCEEZXnRhUltsgzPFKzThL5PuHppP9ypJuy+7WawcY1TsSBD/iQbMhw==",
        ("LICENSE", "dist/idiomorph-ext.min.js"), "idiomorph"),
    Pin("uplot", "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        ("LICENSE", "dist/uPlot.iife.min.js", "dist/uPlot.min.css"), "uplot"),
    Pin("swagger-ui-dist", "5.35.0",
        "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
        ("LICENSE", "NOTICE", "swagger-ui-bundle.js", "swagger-ui-bundle.js.LICENSE.txt", "swagger-ui.css",
         "favicon-32x32.png"), "swagger-ui-dist"),
)


class IntegrityError(Exception):
    pass


def verify(pin: Pin, tarball: bytes) -> None:
    algorithm, _, expected = pin.integrity.partition("-")
    if algorithm != "sha512":
        raise IntegrityError(f"{pin.package}: only sha512 integrity is accepted, not {algorithm}")
    actual = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if actual != expected:
        raise IntegrityError(f"{pin.package}@{pin.version}: tarball sha512 {actual} is not the pinned {expected}")


def extract(pin: Pin, tarball: bytes, into: Path) -> dict[str, str]:
    """The pinned files of a verified tarball, written flat under `into`; name -> sha256."""
    written: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for path in pin.files:
            member = tar.getmember(f"package/{path}")
            source = tar.extractfile(member)
            if source is None:
                raise IntegrityError(f"{pin.package}: {path} is not a file")
            data = source.read()
            name = Path(path).name
            (into / name).write_bytes(data)
            written[name] = hashlib.sha256(data).hexdigest()
    return written


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
        return data


def main() -> int:
    manifest: dict[str, dict[str, object]] = {}
    staging = VENDOR_DIR.with_name("vendor.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for pin in PINS:
        print(f"vendor: {pin.package}@{pin.version}", file=sys.stderr)
        tarball = fetch(pin.tarball_url)
        verify(pin, tarball)
        into = staging / pin.directory
        into.mkdir()
        files = extract(pin, tarball, into)
        manifest[pin.directory] = {"package": pin.package, "version": pin.version, "integrity": pin.integrity,
                                   "files": files}
    (staging / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    # Replaced whole, so no file of an older pin stays behind.
    shutil.rmtree(VENDOR_DIR, ignore_errors=True)
    staging.rename(VENDOR_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
