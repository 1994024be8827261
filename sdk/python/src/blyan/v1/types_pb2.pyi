from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_ASSIGNING: _ClassVar[Phase]
    PHASE_COMMIT: _ClassVar[Phase]
    PHASE_REVEAL: _ClassVar[Phase]
    PHASE_VALIDATE: _ClassVar[Phase]
    PHASE_SCORING: _ClassVar[Phase]
    PHASE_REWARDING: _ClassVar[Phase]
    PHASE_FINALIZED: _ClassVar[Phase]
    PHASE_ABORTED: _ClassVar[Phase]
PHASE_UNSPECIFIED: Phase
PHASE_ASSIGNING: Phase
PHASE_COMMIT: Phase
PHASE_REVEAL: Phase
PHASE_VALIDATE: Phase
PHASE_SCORING: Phase
PHASE_REWARDING: Phase
PHASE_FINALIZED: Phase
PHASE_ABORTED: Phase

class U128(_message.Message):
    __slots__ = ("hi", "lo")
    HI_FIELD_NUMBER: _ClassVar[int]
    LO_FIELD_NUMBER: _ClassVar[int]
    hi: int
    lo: int
    def __init__(self, hi: _Optional[int] = ..., lo: _Optional[int] = ...) -> None: ...

class NodeCapabilities(_message.Message):
    __slots__ = ("gpu_model", "vram_mib", "experts", "endpoint")
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    VRAM_MIB_FIELD_NUMBER: _ClassVar[int]
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    gpu_model: str
    vram_mib: int
    experts: _containers.RepeatedScalarFieldContainer[int]
    endpoint: str
    def __init__(self, gpu_model: _Optional[str] = ..., vram_mib: _Optional[int] = ..., experts: _Optional[_Iterable[int]] = ..., endpoint: _Optional[str] = ...) -> None: ...

class Parameters(_message.Message):
    __slots__ = ("heartbeat_timeout_ms", "round_burn_threshold", "checkpoint_interval_events", "validator_quorum", "commit_deadline_ms", "reveal_deadline_ms", "reward_share_bps", "max_score", "model_experts", "liveness_window_ms", "nodes_per_round_min", "validators_per_round", "validators_per_delta", "scored_deltas_min", "validator_reward_bps", "validate_deadline_ms", "delta_bytes_max")
    HEARTBEAT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ROUND_BURN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_INTERVAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_QUORUM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    REVEAL_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    REWARD_SHARE_BPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SCORE_FIELD_NUMBER: _ClassVar[int]
    MODEL_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    NODES_PER_ROUND_MIN_FIELD_NUMBER: _ClassVar[int]
    VALIDATORS_PER_ROUND_FIELD_NUMBER: _ClassVar[int]
    VALIDATORS_PER_DELTA_FIELD_NUMBER: _ClassVar[int]
    SCORED_DELTAS_MIN_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_REWARD_BPS_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    DELTA_BYTES_MAX_FIELD_NUMBER: _ClassVar[int]
    heartbeat_timeout_ms: int
    round_burn_threshold: U128
    checkpoint_interval_events: int
    validator_quorum: int
    commit_deadline_ms: int
    reveal_deadline_ms: int
    reward_share_bps: int
    max_score: int
    model_experts: int
    liveness_window_ms: int
    nodes_per_round_min: int
    validators_per_round: int
    validators_per_delta: int
    scored_deltas_min: int
    validator_reward_bps: int
    validate_deadline_ms: int
    delta_bytes_max: int
    def __init__(self, heartbeat_timeout_ms: _Optional[int] = ..., round_burn_threshold: _Optional[_Union[U128, _Mapping]] = ..., checkpoint_interval_events: _Optional[int] = ..., validator_quorum: _Optional[int] = ..., commit_deadline_ms: _Optional[int] = ..., reveal_deadline_ms: _Optional[int] = ..., reward_share_bps: _Optional[int] = ..., max_score: _Optional[int] = ..., model_experts: _Optional[int] = ..., liveness_window_ms: _Optional[int] = ..., nodes_per_round_min: _Optional[int] = ..., validators_per_round: _Optional[int] = ..., validators_per_delta: _Optional[int] = ..., scored_deltas_min: _Optional[int] = ..., validator_reward_bps: _Optional[int] = ..., validate_deadline_ms: _Optional[int] = ..., delta_bytes_max: _Optional[int] = ...) -> None: ...

class PoolItem(_message.Message):
    __slots__ = ("bytes", "checksum", "held_out")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    checksum: bytes
    held_out: bool
    def __init__(self, bytes: _Optional[int] = ..., checksum: _Optional[bytes] = ..., held_out: _Optional[bool] = ...) -> None: ...
