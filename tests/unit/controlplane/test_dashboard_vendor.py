"""The front-end libraries under controlplane/dashboard/static/vendor are exactly what the pinned
script (controlplane.dashboard.vendor) wrote: every file's sha256 as its manifest says, each
library with its licence, the manifest's pins the script's, and nothing else in the directory."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest

from controlplane.dashboard import vendor


def test_the_committed_files_are_the_pinned_ones() -> None:
    manifest = json.loads(vendor.MANIFEST.read_text())
    assert set(manifest) == {p.directory for p in vendor.PINS}
    on_disk = {str(p.relative_to(vendor.VENDOR_DIR)) for p in vendor.VENDOR_DIR.rglob("*") if p.is_file()}
    listed = {f"{d}/{name}" for d, entry in manifest.items() for name in entry["files"]}
    assert on_disk == listed | {"MANIFEST.json"}
    for pin in vendor.PINS:
        entry = manifest[pin.directory]
        assert (entry["package"], entry["version"], entry["integrity"]) == (pin.package, pin.version, pin.integrity)
        assert "LICENSE" in entry["files"], f"{pin.package} ships without its licence"
        for name, digest in entry["files"].items():
            data = (vendor.VENDOR_DIR / pin.directory / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest, f"{pin.directory}/{name} was edited by hand"


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path: object) -> None:
    tarball = _tarball({"LICENSE": b"licence", "dist/lib.js": b"code"})
    good = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    pin = vendor.Pin("lib", "1.0.0", good, ("LICENSE", "dist/lib.js"), "lib")
    vendor.verify(pin, tarball)
    with pytest.raises(vendor.IntegrityError):
        vendor.verify(pin, tarball + b"\0")
    with pytest.raises(vendor.IntegrityError):
        vendor.verify(vendor.Pin("lib", "1.0.0", "sha1-" + good[7:], pin.files, "lib"), tarball)
