from blyan.v1 import envelope_pb2 as _envelope_pb2
from blyan.v1 import plugin_pb2 as _plugin_pb2
from blyan.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("cause", "server_input", "genesis_created", "node_registered", "heartbeat_recorded", "burn_recorded", "checkpoint_created", "plugin_proposed", "parameters_proposed", "proposal_approved", "plugin_activated", "parameters_activated", "round_opened", "plugin_fallback", "pool_registered", "validator_proposed", "validator_changed", "assignments_made", "delta_committed", "delta_revealed", "phase_started", "measurements_submitted", "scores_recorded", "round_finalized", "round_aborted", "expert_updated", "liveness_window_closed")
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    SERVER_INPUT_FIELD_NUMBER: _ClassVar[int]
    GENESIS_CREATED_FIELD_NUMBER: _ClassVar[int]
    NODE_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_RECORDED_FIELD_NUMBER: _ClassVar[int]
    BURN_RECORDED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_CREATED_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_PROPOSED_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_PROPOSED_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_APPROVED_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    ROUND_OPENED_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    POOL_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_PROPOSED_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_MADE_FIELD_NUMBER: _ClassVar[int]
    DELTA_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    DELTA_REVEALED_FIELD_NUMBER: _ClassVar[int]
    PHASE_STARTED_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    SCORES_RECORDED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FINALIZED_FIELD_NUMBER: _ClassVar[int]
    ROUND_ABORTED_FIELD_NUMBER: _ClassVar[int]
    EXPERT_UPDATED_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_WINDOW_CLOSED_FIELD_NUMBER: _ClassVar[int]
    cause: _envelope_pb2.SignedCommand
    server_input: ServerInput
    genesis_created: GenesisCreatedV1
    node_registered: NodeRegisteredV1
    heartbeat_recorded: HeartbeatRecordedV1
    burn_recorded: BurnRecordedV1
    checkpoint_created: CheckpointCreatedV1
    plugin_proposed: PluginProposedV1
    parameters_proposed: ParametersProposedV1
    proposal_approved: ProposalApprovedV1
    plugin_activated: PluginActivatedV1
    parameters_activated: ParametersActivatedV1
    round_opened: RoundOpenedV1
    plugin_fallback: PluginFallbackV1
    pool_registered: PoolRegisteredV1
    validator_proposed: ValidatorProposedV1
    validator_changed: ValidatorChangedV1
    assignments_made: AssignmentsMadeV1
    delta_committed: DeltaCommittedV1
    delta_revealed: DeltaRevealedV1
    phase_started: PhaseStartedV1
    measurements_submitted: MeasurementsSubmittedV1
    scores_recorded: ScoresRecordedV1
    round_finalized: RoundFinalizedV1
    round_aborted: RoundAbortedV1
    expert_updated: ExpertUpdatedV1
    liveness_window_closed: LivenessWindowClosedV1
    def __init__(self, cause: _Optional[_Union[_envelope_pb2.SignedCommand, _Mapping]] = ..., server_input: _Optional[_Union[ServerInput, _Mapping]] = ..., genesis_created: _Optional[_Union[GenesisCreatedV1, _Mapping]] = ..., node_registered: _Optional[_Union[NodeRegisteredV1, _Mapping]] = ..., heartbeat_recorded: _Optional[_Union[HeartbeatRecordedV1, _Mapping]] = ..., burn_recorded: _Optional[_Union[BurnRecordedV1, _Mapping]] = ..., checkpoint_created: _Optional[_Union[CheckpointCreatedV1, _Mapping]] = ..., plugin_proposed: _Optional[_Union[PluginProposedV1, _Mapping]] = ..., parameters_proposed: _Optional[_Union[ParametersProposedV1, _Mapping]] = ..., proposal_approved: _Optional[_Union[ProposalApprovedV1, _Mapping]] = ..., plugin_activated: _Optional[_Union[PluginActivatedV1, _Mapping]] = ..., parameters_activated: _Optional[_Union[ParametersActivatedV1, _Mapping]] = ..., round_opened: _Optional[_Union[RoundOpenedV1, _Mapping]] = ..., plugin_fallback: _Optional[_Union[PluginFallbackV1, _Mapping]] = ..., pool_registered: _Optional[_Union[PoolRegisteredV1, _Mapping]] = ..., validator_proposed: _Optional[_Union[ValidatorProposedV1, _Mapping]] = ..., validator_changed: _Optional[_Union[ValidatorChangedV1, _Mapping]] = ..., assignments_made: _Optional[_Union[AssignmentsMadeV1, _Mapping]] = ..., delta_committed: _Optional[_Union[DeltaCommittedV1, _Mapping]] = ..., delta_revealed: _Optional[_Union[DeltaRevealedV1, _Mapping]] = ..., phase_started: _Optional[_Union[PhaseStartedV1, _Mapping]] = ..., measurements_submitted: _Optional[_Union[MeasurementsSubmittedV1, _Mapping]] = ..., scores_recorded: _Optional[_Union[ScoresRecordedV1, _Mapping]] = ..., round_finalized: _Optional[_Union[RoundFinalizedV1, _Mapping]] = ..., round_aborted: _Optional[_Union[RoundAbortedV1, _Mapping]] = ..., expert_updated: _Optional[_Union[ExpertUpdatedV1, _Mapping]] = ..., liveness_window_closed: _Optional[_Union[LivenessWindowClosedV1, _Mapping]] = ...) -> None: ...

class ServerInput(_message.Message):
    __slots__ = ("genesis", "checkpoint", "tick", "open_round", "policy_result", "expert_update", "liveness_window")
    GENESIS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    OPEN_ROUND_FIELD_NUMBER: _ClassVar[int]
    POLICY_RESULT_FIELD_NUMBER: _ClassVar[int]
    EXPERT_UPDATE_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_WINDOW_FIELD_NUMBER: _ClassVar[int]
    genesis: GenesisInput
    checkpoint: CheckpointInput
    tick: TickInput
    open_round: OpenRoundInput
    policy_result: PolicyResultInput
    expert_update: ExpertUpdateInput
    liveness_window: LivenessWindowInput
    def __init__(self, genesis: _Optional[_Union[GenesisInput, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointInput, _Mapping]] = ..., tick: _Optional[_Union[TickInput, _Mapping]] = ..., open_round: _Optional[_Union[OpenRoundInput, _Mapping]] = ..., policy_result: _Optional[_Union[PolicyResultInput, _Mapping]] = ..., expert_update: _Optional[_Union[ExpertUpdateInput, _Mapping]] = ..., liveness_window: _Optional[_Union[LivenessWindowInput, _Mapping]] = ...) -> None: ...

class GenesisInput(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExpertUpdateInput(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LivenessWindowInput(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckpointInput(_message.Message):
    __slots__ = ("merkle_root", "signature")
    MERKLE_ROOT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    merkle_root: bytes
    signature: bytes
    def __init__(self, merkle_root: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class TickInput(_message.Message):
    __slots__ = ("time_ms",)
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    def __init__(self, time_ms: _Optional[int] = ...) -> None: ...

class OpenRoundInput(_message.Message):
    __slots__ = ("round",)
    ROUND_FIELD_NUMBER: _ClassVar[int]
    round: int
    def __init__(self, round: _Optional[int] = ...) -> None: ...

class PolicyResultInput(_message.Message):
    __slots__ = ("round", "kind", "module_hash", "output", "failures", "unstored_wasm")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODULE_HASH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    UNSTORED_WASM_FIELD_NUMBER: _ClassVar[int]
    round: int
    kind: _plugin_pb2.PluginKind
    module_hash: bytes
    output: bytes
    failures: _containers.RepeatedCompositeFieldContainer[PolicyFailure]
    unstored_wasm: bytes
    def __init__(self, round: _Optional[int] = ..., kind: _Optional[_Union[_plugin_pb2.PluginKind, str]] = ..., module_hash: _Optional[bytes] = ..., output: _Optional[bytes] = ..., failures: _Optional[_Iterable[_Union[PolicyFailure, _Mapping]]] = ..., unstored_wasm: _Optional[bytes] = ...) -> None: ...

class PolicyFailure(_message.Message):
    __slots__ = ("hash", "reason_code", "reason")
    HASH_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    reason_code: str
    reason: str
    def __init__(self, hash: _Optional[bytes] = ..., reason_code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GenesisCreatedV1(_message.Message):
    __slots__ = ("network_id", "operator_key", "burn_oracle_key", "governance_keys", "governance_threshold", "parameters", "plugins", "curator_keys", "model")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_KEY_FIELD_NUMBER: _ClassVar[int]
    BURN_ORACLE_KEY_FIELD_NUMBER: _ClassVar[int]
    GOVERNANCE_KEYS_FIELD_NUMBER: _ClassVar[int]
    GOVERNANCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    CURATOR_KEYS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    operator_key: bytes
    burn_oracle_key: bytes
    governance_keys: _containers.RepeatedScalarFieldContainer[bytes]
    governance_threshold: int
    parameters: _types_pb2.Parameters
    plugins: _containers.RepeatedCompositeFieldContainer[PluginModule]
    curator_keys: _containers.RepeatedScalarFieldContainer[bytes]
    model: ModelSpec
    def __init__(self, network_id: _Optional[str] = ..., operator_key: _Optional[bytes] = ..., burn_oracle_key: _Optional[bytes] = ..., governance_keys: _Optional[_Iterable[bytes]] = ..., governance_threshold: _Optional[int] = ..., parameters: _Optional[_Union[_types_pb2.Parameters, _Mapping]] = ..., plugins: _Optional[_Iterable[_Union[PluginModule, _Mapping]]] = ..., curator_keys: _Optional[_Iterable[bytes]] = ..., model: _Optional[_Union[ModelSpec, _Mapping]] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("inputs", "hidden", "outputs", "experts", "seed", "shared_hash", "expert_hashes")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SHARED_HASH_FIELD_NUMBER: _ClassVar[int]
    EXPERT_HASHES_FIELD_NUMBER: _ClassVar[int]
    inputs: int
    hidden: int
    outputs: int
    experts: int
    seed: int
    shared_hash: bytes
    expert_hashes: bytes
    def __init__(self, inputs: _Optional[int] = ..., hidden: _Optional[int] = ..., outputs: _Optional[int] = ..., experts: _Optional[int] = ..., seed: _Optional[int] = ..., shared_hash: _Optional[bytes] = ..., expert_hashes: _Optional[bytes] = ...) -> None: ...

class PluginModule(_message.Message):
    __slots__ = ("kind", "wasm")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WASM_FIELD_NUMBER: _ClassVar[int]
    kind: _plugin_pb2.PluginKind
    wasm: bytes
    def __init__(self, kind: _Optional[_Union[_plugin_pb2.PluginKind, str]] = ..., wasm: _Optional[bytes] = ...) -> None: ...

class NodeRegisteredV1(_message.Message):
    __slots__ = ("node", "capabilities", "time_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    node: bytes
    capabilities: _types_pb2.NodeCapabilities
    time_ms: int
    def __init__(self, node: _Optional[bytes] = ..., capabilities: _Optional[_Union[_types_pb2.NodeCapabilities, _Mapping]] = ..., time_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRecordedV1(_message.Message):
    __slots__ = ("node", "time_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    node: bytes
    time_ms: int
    def __init__(self, node: _Optional[bytes] = ..., time_ms: _Optional[int] = ...) -> None: ...

class BurnRecordedV1(_message.Message):
    __slots__ = ("chain_tx_id", "burner", "amount", "time_ms")
    CHAIN_TX_ID_FIELD_NUMBER: _ClassVar[int]
    BURNER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    chain_tx_id: str
    burner: str
    amount: _types_pb2.U128
    time_ms: int
    def __init__(self, chain_tx_id: _Optional[str] = ..., burner: _Optional[str] = ..., amount: _Optional[_Union[_types_pb2.U128, _Mapping]] = ..., time_ms: _Optional[int] = ...) -> None: ...

class CheckpointCreatedV1(_message.Message):
    __slots__ = ("tree_size", "merkle_root", "signature")
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MERKLE_ROOT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    merkle_root: bytes
    signature: bytes
    def __init__(self, tree_size: _Optional[int] = ..., merkle_root: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PluginProposedV1(_message.Message):
    __slots__ = ("proposal_id", "proposer", "kind", "wasm_hash", "activation_round")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WASM_HASH_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    proposer: bytes
    kind: _plugin_pb2.PluginKind
    wasm_hash: bytes
    activation_round: int
    def __init__(self, proposal_id: _Optional[int] = ..., proposer: _Optional[bytes] = ..., kind: _Optional[_Union[_plugin_pb2.PluginKind, str]] = ..., wasm_hash: _Optional[bytes] = ..., activation_round: _Optional[int] = ...) -> None: ...

class ParametersProposedV1(_message.Message):
    __slots__ = ("proposal_id", "proposer", "parameters", "activation_round")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSER_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    proposer: bytes
    parameters: _types_pb2.Parameters
    activation_round: int
    def __init__(self, proposal_id: _Optional[int] = ..., proposer: _Optional[bytes] = ..., parameters: _Optional[_Union[_types_pb2.Parameters, _Mapping]] = ..., activation_round: _Optional[int] = ...) -> None: ...

class ProposalApprovedV1(_message.Message):
    __slots__ = ("proposal_id", "approver", "approvals")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    approver: bytes
    approvals: int
    def __init__(self, proposal_id: _Optional[int] = ..., approver: _Optional[bytes] = ..., approvals: _Optional[int] = ...) -> None: ...

class PluginActivatedV1(_message.Message):
    __slots__ = ("proposal_id", "kind", "wasm_hash", "activation_round")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WASM_HASH_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    kind: _plugin_pb2.PluginKind
    wasm_hash: bytes
    activation_round: int
    def __init__(self, proposal_id: _Optional[int] = ..., kind: _Optional[_Union[_plugin_pb2.PluginKind, str]] = ..., wasm_hash: _Optional[bytes] = ..., activation_round: _Optional[int] = ...) -> None: ...

class ParametersActivatedV1(_message.Message):
    __slots__ = ("proposal_id", "parameters", "activation_round")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    parameters: _types_pb2.Parameters
    activation_round: int
    def __init__(self, proposal_id: _Optional[int] = ..., parameters: _Optional[_Union[_types_pb2.Parameters, _Mapping]] = ..., activation_round: _Optional[int] = ...) -> None: ...

class RoundOpenedV1(_message.Message):
    __slots__ = ("round", "plugins", "parameters", "plan")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    round: int
    plugins: _containers.RepeatedCompositeFieldContainer[PinnedPlugin]
    parameters: _types_pb2.Parameters
    plan: RoundPlan
    def __init__(self, round: _Optional[int] = ..., plugins: _Optional[_Iterable[_Union[PinnedPlugin, _Mapping]]] = ..., parameters: _Optional[_Union[_types_pb2.Parameters, _Mapping]] = ..., plan: _Optional[_Union[RoundPlan, _Mapping]] = ...) -> None: ...

class PinnedPlugin(_message.Message):
    __slots__ = ("kind", "wasm_hash")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WASM_HASH_FIELD_NUMBER: _ClassVar[int]
    kind: _plugin_pb2.PluginKind
    wasm_hash: bytes
    def __init__(self, kind: _Optional[_Union[_plugin_pb2.PluginKind, str]] = ..., wasm_hash: _Optional[bytes] = ...) -> None: ...

class PluginFallbackV1(_message.Message):
    __slots__ = ("round", "kind", "failed_hash", "reason_code", "reason", "used_hash", "used_wasm")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FAILED_HASH_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USED_HASH_FIELD_NUMBER: _ClassVar[int]
    USED_WASM_FIELD_NUMBER: _ClassVar[int]
    round: int
    kind: _plugin_pb2.PluginKind
    failed_hash: bytes
    reason_code: str
    reason: str
    used_hash: bytes
    used_wasm: bytes
    def __init__(self, round: _Optional[int] = ..., kind: _Optional[_Union[_plugin_pb2.PluginKind, str]] = ..., failed_hash: _Optional[bytes] = ..., reason_code: _Optional[str] = ..., reason: _Optional[str] = ..., used_hash: _Optional[bytes] = ..., used_wasm: _Optional[bytes] = ...) -> None: ...

class RoundPlan(_message.Message):
    __slots__ = ("expert", "pool_id", "seed", "nodes", "committee", "burns", "reward_pool", "model_versions")
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    COMMITTEE_FIELD_NUMBER: _ClassVar[int]
    BURNS_FIELD_NUMBER: _ClassVar[int]
    REWARD_POOL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    expert: int
    pool_id: int
    seed: bytes
    nodes: bytes
    committee: bytes
    burns: _types_pb2.U128
    reward_pool: _types_pb2.U128
    model_versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, expert: _Optional[int] = ..., pool_id: _Optional[int] = ..., seed: _Optional[bytes] = ..., nodes: _Optional[bytes] = ..., committee: _Optional[bytes] = ..., burns: _Optional[_Union[_types_pb2.U128, _Mapping]] = ..., reward_pool: _Optional[_Union[_types_pb2.U128, _Mapping]] = ..., model_versions: _Optional[_Iterable[int]] = ...) -> None: ...

class PoolRegisteredV1(_message.Message):
    __slots__ = ("pool_id", "curator", "name", "item_count", "merkle_root")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    CURATOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    MERKLE_ROOT_FIELD_NUMBER: _ClassVar[int]
    pool_id: int
    curator: bytes
    name: str
    item_count: int
    merkle_root: bytes
    def __init__(self, pool_id: _Optional[int] = ..., curator: _Optional[bytes] = ..., name: _Optional[str] = ..., item_count: _Optional[int] = ..., merkle_root: _Optional[bytes] = ...) -> None: ...

class ValidatorProposedV1(_message.Message):
    __slots__ = ("proposal_id", "proposer", "validator", "admit", "activation_round")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSER_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    ADMIT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    proposer: bytes
    validator: bytes
    admit: bool
    activation_round: int
    def __init__(self, proposal_id: _Optional[int] = ..., proposer: _Optional[bytes] = ..., validator: _Optional[bytes] = ..., admit: _Optional[bool] = ..., activation_round: _Optional[int] = ...) -> None: ...

class ValidatorChangedV1(_message.Message):
    __slots__ = ("proposal_id", "validator", "admit")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    ADMIT_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    validator: bytes
    admit: bool
    def __init__(self, proposal_id: _Optional[int] = ..., validator: _Optional[bytes] = ..., admit: _Optional[bool] = ...) -> None: ...

class AssignmentsMadeV1(_message.Message):
    __slots__ = ("round", "nodes", "starts", "counts", "merkle_root", "deadline_ms")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    STARTS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    MERKLE_ROOT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    round: int
    nodes: bytes
    starts: _containers.RepeatedScalarFieldContainer[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    merkle_root: bytes
    deadline_ms: int
    def __init__(self, round: _Optional[int] = ..., nodes: _Optional[bytes] = ..., starts: _Optional[_Iterable[int]] = ..., counts: _Optional[_Iterable[int]] = ..., merkle_root: _Optional[bytes] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class DeltaCommittedV1(_message.Message):
    __slots__ = ("round", "node", "commitment")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    round: int
    node: bytes
    commitment: bytes
    def __init__(self, round: _Optional[int] = ..., node: _Optional[bytes] = ..., commitment: _Optional[bytes] = ...) -> None: ...

class DeltaRevealedV1(_message.Message):
    __slots__ = ("round", "node", "delta_hash", "salt", "delta_bytes")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DELTA_HASH_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    DELTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    round: int
    node: bytes
    delta_hash: bytes
    salt: bytes
    delta_bytes: int
    def __init__(self, round: _Optional[int] = ..., node: _Optional[bytes] = ..., delta_hash: _Optional[bytes] = ..., salt: _Optional[bytes] = ..., delta_bytes: _Optional[int] = ...) -> None: ...

class PhaseStartedV1(_message.Message):
    __slots__ = ("round", "phase", "deadline_ms")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    round: int
    phase: _types_pb2.Phase
    deadline_ms: int
    def __init__(self, round: _Optional[int] = ..., phase: _Optional[_Union[_types_pb2.Phase, str]] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class MeasurementsSubmittedV1(_message.Message):
    __slots__ = ("round", "validator", "values")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    round: int
    validator: bytes
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, round: _Optional[int] = ..., validator: _Optional[bytes] = ..., values: _Optional[_Iterable[int]] = ...) -> None: ...

class ScoresRecordedV1(_message.Message):
    __slots__ = ("round", "scores", "merkle_root")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MERKLE_ROOT_FIELD_NUMBER: _ClassVar[int]
    round: int
    scores: _containers.RepeatedScalarFieldContainer[int]
    merkle_root: bytes
    def __init__(self, round: _Optional[int] = ..., scores: _Optional[_Iterable[int]] = ..., merkle_root: _Optional[bytes] = ...) -> None: ...

class Payout(_message.Message):
    __slots__ = ("key", "amount")
    KEY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    amount: _types_pb2.U128
    def __init__(self, key: _Optional[bytes] = ..., amount: _Optional[_Union[_types_pb2.U128, _Mapping]] = ...) -> None: ...

class ValidatorOutcome(_message.Message):
    __slots__ = ("validator", "agreed", "disagreed", "reward", "reputation")
    VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    AGREED_FIELD_NUMBER: _ClassVar[int]
    DISAGREED_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    REPUTATION_FIELD_NUMBER: _ClassVar[int]
    validator: bytes
    agreed: int
    disagreed: int
    reward: _types_pb2.U128
    reputation: int
    def __init__(self, validator: _Optional[bytes] = ..., agreed: _Optional[int] = ..., disagreed: _Optional[int] = ..., reward: _Optional[_Union[_types_pb2.U128, _Mapping]] = ..., reputation: _Optional[int] = ...) -> None: ...

class RoundFinalizedV1(_message.Message):
    __slots__ = ("round", "nodes", "validators", "rewards_root", "accepted", "carried")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_ROOT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CARRIED_FIELD_NUMBER: _ClassVar[int]
    round: int
    nodes: _containers.RepeatedCompositeFieldContainer[Payout]
    validators: _containers.RepeatedCompositeFieldContainer[ValidatorOutcome]
    rewards_root: bytes
    accepted: bytes
    carried: _types_pb2.U128
    def __init__(self, round: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[Payout, _Mapping]]] = ..., validators: _Optional[_Iterable[_Union[ValidatorOutcome, _Mapping]]] = ..., rewards_root: _Optional[bytes] = ..., accepted: _Optional[bytes] = ..., carried: _Optional[_Union[_types_pb2.U128, _Mapping]] = ...) -> None: ...

class RoundAbortedV1(_message.Message):
    __slots__ = ("round", "reason", "carried")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CARRIED_FIELD_NUMBER: _ClassVar[int]
    round: int
    reason: str
    carried: _types_pb2.U128
    def __init__(self, round: _Optional[int] = ..., reason: _Optional[str] = ..., carried: _Optional[_Union[_types_pb2.U128, _Mapping]] = ...) -> None: ...

class ExpertUpdatedV1(_message.Message):
    __slots__ = ("round", "expert", "version", "parent_hash", "weights_hash", "weights_bytes", "merged", "parent_held_out_loss", "held_out_loss")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_HASH_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_HASH_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_BYTES_FIELD_NUMBER: _ClassVar[int]
    MERGED_FIELD_NUMBER: _ClassVar[int]
    PARENT_HELD_OUT_LOSS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_LOSS_FIELD_NUMBER: _ClassVar[int]
    round: int
    expert: int
    version: int
    parent_hash: bytes
    weights_hash: bytes
    weights_bytes: int
    merged: bytes
    parent_held_out_loss: int
    held_out_loss: int
    def __init__(self, round: _Optional[int] = ..., expert: _Optional[int] = ..., version: _Optional[int] = ..., parent_hash: _Optional[bytes] = ..., weights_hash: _Optional[bytes] = ..., weights_bytes: _Optional[int] = ..., merged: _Optional[bytes] = ..., parent_held_out_loss: _Optional[int] = ..., held_out_loss: _Optional[int] = ...) -> None: ...

class LivenessWindowClosedV1(_message.Message):
    __slots__ = ("window", "closed_ms", "live", "heartbeats_root", "blob")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    CLOSED_MS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_ROOT_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    window: int
    closed_ms: int
    live: bytes
    heartbeats_root: bytes
    blob: bytes
    def __init__(self, window: _Optional[int] = ..., closed_ms: _Optional[int] = ..., live: _Optional[bytes] = ..., heartbeats_root: _Optional[bytes] = ..., blob: _Optional[bytes] = ...) -> None: ...

class HeartbeatWindowV1(_message.Message):
    __slots__ = ("window", "heartbeats")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    window: int
    heartbeats: _containers.RepeatedCompositeFieldContainer[_envelope_pb2.SignedCommand]
    def __init__(self, window: _Optional[int] = ..., heartbeats: _Optional[_Iterable[_Union[_envelope_pb2.SignedCommand, _Mapping]]] = ...) -> None: ...
