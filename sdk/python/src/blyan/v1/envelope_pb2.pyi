from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignedCommand(_message.Message):
    __slots__ = ("body", "signer", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signer: bytes
    signature: bytes
    def __init__(self, body: _Optional[bytes] = ..., signer: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class EventRecord(_message.Message):
    __slots__ = ("seq", "prev_hash", "time_ms", "body", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    prev_hash: bytes
    time_ms: int
    body: bytes
    hash: bytes
    def __init__(self, seq: _Optional[int] = ..., prev_hash: _Optional[bytes] = ..., time_ms: _Optional[int] = ..., body: _Optional[bytes] = ..., hash: _Optional[bytes] = ...) -> None: ...

class EventRecordPage(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[EventRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[EventRecord, _Mapping]]] = ...) -> None: ...
