"""Every clientcomm error survives pickling (task queues such as Celery, Dramatiq
and procrastinate pickle exceptions) and keeps its str() and repr()."""

from __future__ import annotations

import copy
import inspect
import pickle
from typing import Any

import pytest

from clientcomm import errors
from clientcomm.errors import (
    ClientCommError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)

# Representative arguments by parameter name; a new error class whose __init__
# takes a parameter not listed here fails test_every_class_is_constructible.
ARGUMENTS: dict[str, Any] = {
    "message": "something went wrong",
    "filename": "brief.pdf",
    "reason": "encrypted",
    "detail": "the document is encrypted",
    "kind": "client",
    "id": "c1",
    "field": "email",
    "value": "bad@",
    "actor": "staff:s1",
    "action": "message.send",
    "offending_ids": ["b", "a"],
}
CONTEXT = {"firm_id": "f1", "count": 3, "ids": ("x", "y")}

CLASSES = [getattr(errors, name) for name in errors.__all__]


def build(cls: type[ClientCommError]) -> ClientCommError:
    """One instance of ``cls`` with every parameter given (and log context where
    the class takes ``**context``)."""
    kwargs: dict[str, Any] = {}
    takes_context = False
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            takes_context = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if name not in ARGUMENTS:
            raise AssertionError(f"{cls.__name__}: add a representative {name!r} to ARGUMENTS")
        kwargs[name] = ARGUMENTS[name]
    if takes_context:
        kwargs.update(CONTEXT)
    return cls(**kwargs)


def same(a: BaseException, b: BaseException) -> None:
    assert type(a) is type(b)
    assert str(a) == str(b) and repr(a) == repr(b) and a.args == b.args
    assert isinstance(a, ClientCommError) and isinstance(b, ClientCommError)
    assert a.message == b.message and dict(a.context) == dict(b.context)
    assert vars(a) == vars(b)  # every attribute: kind, id, field, value, actor, ...


def test_all_lists_every_error_class() -> None:
    defined = {
        name
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, ClientCommError)
    }
    assert defined == set(errors.__all__)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_class_is_constructible(cls: type[ClientCommError]) -> None:
    err = build(cls)
    assert isinstance(err, cls) and err.message and str(err) == err.message


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_survives_pickle(cls: type[ClientCommError], protocol: int) -> None:
    err = build(cls)
    back = pickle.loads(pickle.dumps(err, protocol=protocol))
    same(err, back)
    assert back.__class__.__module__ == "clientcomm.errors"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_survives_copy(cls: type[ClientCommError]) -> None:
    err = build(cls)
    same(err, copy.copy(err))
    same(err, copy.deepcopy(err))


def test_class_specific_fields_after_pickle() -> None:
    nf = pickle.loads(pickle.dumps(NotFoundError("client", "c1")))
    assert (nf.kind, nf.id, nf.context) == ("client", "c1", {"kind": "client", "id": "c1"})
    assert isinstance(nf, LookupError)
    bad = pickle.loads(pickle.dumps(InvalidInputError("email", "invalid", value="x@")))
    assert (bad.field, bad.value, str(bad)) == ("email", "x@", "email: invalid")
    assert isinstance(bad, ValueError)
    denied = pickle.loads(
        pickle.dumps(PermissionDeniedError("no", actor="s1", action="read", offending_ids="ba"))
    )
    assert (denied.actor, denied.action, denied.offending_ids) == ("s1", "read", ("a", "b"))
    assert isinstance(denied, PermissionError)
    storage = pickle.loads(pickle.dumps(StorageError("newer", current=3, supported=2)))
    assert storage.context == {"current": 3, "supported": 2}


def test_notes_and_later_attributes_survive_pickle() -> None:
    err = NotFoundError("client", "c1")
    err.add_note("while sending mailing m1")
    err.retry_after = 5  # type: ignore[attr-defined]
    back = pickle.loads(pickle.dumps(err))
    assert back.__notes__ == ["while sending mailing m1"]
    assert back.retry_after == 5


def test_a_subclass_with_its_own_signature_survives_pickle() -> None:
    back = pickle.loads(pickle.dumps(_HostError(42, retry=True)))
    assert isinstance(back, _HostError) and str(back) == "host error 42"
    assert (back.code, back.retry, back.context) == (42, True, {"code": 42})


class _HostError(ClientCommError):
    """An integrator's own subclass whose __init__ does not take ``message``."""

    def __init__(self, code: int, *, retry: bool) -> None:
        super().__init__(f"host error {code}", code=code)
        self.code = code
        self.retry = retry


def test_str_and_repr_are_unchanged() -> None:
    assert str(NotFoundError("client", "c1")) == "client 'c1' not found"
    assert repr(NotFoundError("client", "c1")) == "NotFoundError(\"client 'c1' not found\")"
    assert str(NotFoundError("client", "c1", "gone")) == "gone"
    bad = InvalidInputError("email", "invalid", value="x@")
    assert (str(bad), repr(bad)) == ("email: invalid", "InvalidInputError('email: invalid')")
    denied = PermissionDeniedError("not yours", offending_ids=["b"])
    assert (str(denied), repr(denied)) == ("not yours", "PermissionDeniedError('not yours')")
    assert repr(StorageError("down", sqlstate="08006")) == "StorageError('down')"
    assert str(ClientCommError("plain")) == "plain"
