from blyan.v1 import plugin_pb2 as _plugin_pb2
from blyan.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Command(_message.Message):
    __slots__ = ("idempotency_key", "register_node", "heartbeat", "record_burn", "propose_plugin", "propose_parameters", "approve_proposal", "register_pool", "commit_delta", "reveal_delta", "submit_measurements", "propose_validator")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REGISTER_NODE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RECORD_BURN_FIELD_NUMBER: _ClassVar[int]
    PROPOSE_PLUGIN_FIELD_NUMBER: _ClassVar[int]
    PROPOSE_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    APPROVE_PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    REGISTER_POOL_FIELD_NUMBER: _ClassVar[int]
    COMMIT_DELTA_FIELD_NUMBER: _ClassVar[int]
    REVEAL_DELTA_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    PROPOSE_VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: bytes
    register_node: RegisterNode
    heartbeat: Heartbeat
    record_burn: RecordBurn
    propose_plugin: ProposePlugin
    propose_parameters: ProposeParameters
    approve_proposal: ApproveProposal
    register_pool: RegisterPool
    commit_delta: CommitDelta
    reveal_delta: RevealDelta
    submit_measurements: SubmitMeasurements
    propose_validator: ProposeValidator
    def __init__(self, idempotency_key: _Optional[bytes] = ..., register_node: _Optional[_Union[RegisterNode, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., record_burn: _Optional[_Union[RecordBurn, _Mapping]] = ..., propose_plugin: _Optional[_Union[ProposePlugin, _Mapping]] = ..., propose_parameters: _Optional[_Union[ProposeParameters, _Mapping]] = ..., approve_proposal: _Optional[_Union[ApproveProposal, _Mapping]] = ..., register_pool: _Optional[_Union[RegisterPool, _Mapping]] = ..., commit_delta: _Optional[_Union[CommitDelta, _Mapping]] = ..., reveal_delta: _Optional[_Union[RevealDelta, _Mapping]] = ..., submit_measurements: _Optional[_Union[SubmitMeasurements, _Mapping]] = ..., propose_validator: _Optional[_Union[ProposeValidator, _Mapping]] = ...) -> None: ...

class RegisterNode(_message.Message):
    __slots__ = ("capabilities",)
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    capabilities: _types_pb2.NodeCapabilities
    def __init__(self, capabilities: _Optional[_Union[_types_pb2.NodeCapabilities, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("window",)
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    window: int
    def __init__(self, window: _Optional[int] = ...) -> None: ...

class RecordBurn(_message.Message):
    __slots__ = ("chain_tx_id", "burner", "amount")
    CHAIN_TX_ID_FIELD_NUMBER: _ClassVar[int]
    BURNER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    chain_tx_id: str
    burner: str
    amount: _types_pb2.U128
    def __init__(self, chain_tx_id: _Optional[str] = ..., burner: _Optional[str] = ..., amount: _Optional[_Union[_types_pb2.U128, _Mapping]] = ...) -> None: ...

class ProposePlugin(_message.Message):
    __slots__ = ("kind", "wasm", "activation_round")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WASM_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    kind: _plugin_pb2.PluginKind
    wasm: bytes
    activation_round: int
    def __init__(self, kind: _Optional[_Union[_plugin_pb2.PluginKind, str]] = ..., wasm: _Optional[bytes] = ..., activation_round: _Optional[int] = ...) -> None: ...

class ProposeParameters(_message.Message):
    __slots__ = ("parameters", "activation_round")
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    parameters: _types_pb2.Parameters
    activation_round: int
    def __init__(self, parameters: _Optional[_Union[_types_pb2.Parameters, _Mapping]] = ..., activation_round: _Optional[int] = ...) -> None: ...

class ApproveProposal(_message.Message):
    __slots__ = ("proposal_id", "proposal_hash")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_HASH_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    proposal_hash: bytes
    def __init__(self, proposal_id: _Optional[int] = ..., proposal_hash: _Optional[bytes] = ...) -> None: ...

class RegisterPool(_message.Message):
    __slots__ = ("name", "items")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    items: _containers.RepeatedCompositeFieldContainer[_types_pb2.PoolItem]
    def __init__(self, name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_types_pb2.PoolItem, _Mapping]]] = ...) -> None: ...

class CommitDelta(_message.Message):
    __slots__ = ("round", "commitment")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    round: int
    commitment: bytes
    def __init__(self, round: _Optional[int] = ..., commitment: _Optional[bytes] = ...) -> None: ...

class RevealDelta(_message.Message):
    __slots__ = ("round", "delta_hash", "salt", "delta_bytes")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DELTA_HASH_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    DELTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    round: int
    delta_hash: bytes
    salt: bytes
    delta_bytes: int
    def __init__(self, round: _Optional[int] = ..., delta_hash: _Optional[bytes] = ..., salt: _Optional[bytes] = ..., delta_bytes: _Optional[int] = ...) -> None: ...

class SubmitMeasurements(_message.Message):
    __slots__ = ("round", "values")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    round: int
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, round: _Optional[int] = ..., values: _Optional[_Iterable[int]] = ...) -> None: ...

class ProposeValidator(_message.Message):
    __slots__ = ("validator", "admit", "activation_round")
    VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    ADMIT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    validator: bytes
    admit: bool
    activation_round: int
    def __init__(self, validator: _Optional[bytes] = ..., admit: _Optional[bool] = ..., activation_round: _Optional[int] = ...) -> None: ...
