"""The generated types (controlplane/model) are what the installed botocore model gives, and the
generated error classes say what the wire says."""

from __future__ import annotations

from controlplane.model import generate
from controlplane.model.errors import ERRORS, CacheClusterNotFoundFault
from controlplane.model.operations import Handlers
from controlplane.protocol.errors import ServiceError
from controlplane.protocol.model import ApiModel
from controlplane.protocol.serializer import serialize_error


def test_generated_files_are_current() -> None:
    assert list(generate.stale()) == [], "the botocore model changed: run `make types` and commit controlplane/model"


def test_every_error_shape_has_its_class_and_the_wire_agrees() -> None:
    api = ApiModel()
    assert sorted(ERRORS) == sorted(api.error_shape_names)
    for name, cls in ERRORS.items():
        err = cls("m")
        assert isinstance(err, ServiceError) and err.name == name
        code, status, side = err.resolve(api)
        assert (code, status, side == "Sender") == (cls.code, cls.http_status, cls.sender_fault)


def test_a_generated_error_is_written_like_the_named_one() -> None:
    api = ApiModel()
    assert serialize_error(api, CacheClusterNotFoundFault("gone"), "r") == serialize_error(
        api, ServiceError("CacheClusterNotFoundFault", "gone"), "r")
    assert CacheClusterNotFoundFault.http_status == 404


def test_every_operation_has_a_handler_type() -> None:
    assert set(Handlers.__annotations__) == set(ApiModel().operation_names)


def test_the_service_layer_raises_only_generated_errors() -> None:
    # An error by name is checked only when it is written; a generated class, by mypy.
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "controlplane"
    for path in [*(root / "handlers").rglob("*.py"), *(root / "admin").rglob("*.py"), root / "query.py"]:
        assert 'ServiceError("' not in path.read_text(), path
