from blyan.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PluginKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_KIND_UNSPECIFIED: _ClassVar[PluginKind]
    PLUGIN_KIND_SHARDING: _ClassVar[PluginKind]
    PLUGIN_KIND_SCORING: _ClassVar[PluginKind]
    PLUGIN_KIND_REWARD: _ClassVar[PluginKind]
PLUGIN_KIND_UNSPECIFIED: PluginKind
PLUGIN_KIND_SHARDING: PluginKind
PLUGIN_KIND_SCORING: PluginKind
PLUGIN_KIND_REWARD: PluginKind

class PolicyInput(_message.Message):
    __slots__ = ("sharding", "scoring", "reward")
    SHARDING_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    sharding: ShardingInput
    scoring: ScoringInput
    reward: RewardInput
    def __init__(self, sharding: _Optional[_Union[ShardingInput, _Mapping]] = ..., scoring: _Optional[_Union[ScoringInput, _Mapping]] = ..., reward: _Optional[_Union[RewardInput, _Mapping]] = ...) -> None: ...

class PolicyOutput(_message.Message):
    __slots__ = ("sharding", "scoring", "reward")
    SHARDING_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    sharding: ShardingOutput
    scoring: ScoringOutput
    reward: RewardOutput
    def __init__(self, sharding: _Optional[_Union[ShardingOutput, _Mapping]] = ..., scoring: _Optional[_Union[ScoringOutput, _Mapping]] = ..., reward: _Optional[_Union[RewardOutput, _Mapping]] = ...) -> None: ...

class ShardingInput(_message.Message):
    __slots__ = ("round", "seed", "item_count", "node_keys", "capabilities")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    NODE_KEYS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    round: int
    seed: bytes
    item_count: int
    node_keys: bytes
    capabilities: bytes
    def __init__(self, round: _Optional[int] = ..., seed: _Optional[bytes] = ..., item_count: _Optional[int] = ..., node_keys: _Optional[bytes] = ..., capabilities: _Optional[bytes] = ...) -> None: ...

class ShardingOutput(_message.Message):
    __slots__ = ("node_indexes", "starts", "counts")
    NODE_INDEXES_FIELD_NUMBER: _ClassVar[int]
    STARTS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    node_indexes: bytes
    starts: bytes
    counts: bytes
    def __init__(self, node_indexes: _Optional[bytes] = ..., starts: _Optional[bytes] = ..., counts: _Optional[bytes] = ...) -> None: ...

class ScoringInput(_message.Message):
    __slots__ = ("round", "quorum", "max_score", "measurement_counts", "measurements")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    MAX_SCORE_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_COUNTS_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    round: int
    quorum: int
    max_score: int
    measurement_counts: bytes
    measurements: bytes
    def __init__(self, round: _Optional[int] = ..., quorum: _Optional[int] = ..., max_score: _Optional[int] = ..., measurement_counts: _Optional[bytes] = ..., measurements: _Optional[bytes] = ...) -> None: ...

class ScoringOutput(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: bytes
    def __init__(self, scores: _Optional[bytes] = ...) -> None: ...

class RewardInput(_message.Message):
    __slots__ = ("round", "pool", "node_keys", "scores")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    NODE_KEYS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    round: int
    pool: _types_pb2.U128
    node_keys: bytes
    scores: bytes
    def __init__(self, round: _Optional[int] = ..., pool: _Optional[_Union[_types_pb2.U128, _Mapping]] = ..., node_keys: _Optional[bytes] = ..., scores: _Optional[bytes] = ...) -> None: ...

class RewardOutput(_message.Message):
    __slots__ = ("amounts_hi", "amounts_lo")
    AMOUNTS_HI_FIELD_NUMBER: _ClassVar[int]
    AMOUNTS_LO_FIELD_NUMBER: _ClassVar[int]
    amounts_hi: bytes
    amounts_lo: bytes
    def __init__(self, amounts_hi: _Optional[bytes] = ..., amounts_lo: _Optional[bytes] = ...) -> None: ...
