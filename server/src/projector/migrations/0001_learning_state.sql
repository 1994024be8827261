-- The learning state, derived from the ledger's log by `blyan-ledger project-postgres`.
-- Every row comes from one or more events, and the whole schema can be dropped and
-- projected again from the log. Keys are raw bytes (bytea): public keys and hashes
-- are 32 bytes, signatures 64. Amounts are base units, numeric(39,0) (u128). Times
-- named *_ms are the log's milliseconds since the Unix epoch; seqs name events.
-- Numbers a command or a governance parameter may set to any u64 (activation rounds,
-- deadlines, item sizes, scores) are numeric(20,0), so that no legitimate log can
-- overflow a column.

-- Where the projection stands: `seq_next` events are applied, the last with hash
-- `head_hash`. Advanced in the same transaction as the events it counts.
CREATE TABLE projector_position (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    network_id text NOT NULL,
    seq_next bigint NOT NULL CHECK (seq_next > 0),
    head_hash bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every event of the log, with its place in the hash chain.
CREATE TABLE events (
    seq bigint PRIMARY KEY,
    hash bytea NOT NULL UNIQUE,
    prev_hash bytea NOT NULL,
    time_ms bigint NOT NULL,
    kind text NOT NULL
);
CREATE INDEX events_kind ON events (kind, seq);
CREATE INDEX events_time ON events (time_ms);

-- The burns ledger.
CREATE TABLE burns (
    seq bigint PRIMARY KEY REFERENCES events (seq),
    chain_tx_id text NOT NULL UNIQUE,
    burner text NOT NULL,
    amount numeric(39, 0) NOT NULL CHECK (amount >= 0),
    time_ms bigint NOT NULL
);
CREATE INDEX burns_burner ON burns (burner);
CREATE INDEX burns_time ON burns (time_ms);

-- The node registry, with capabilities.
CREATE TABLE nodes (
    pubkey bytea PRIMARY KEY,
    gpu_model text NOT NULL,
    vram_mib bigint NOT NULL,
    endpoint text NOT NULL,
    registered_seq bigint NOT NULL REFERENCES events (seq),
    registered_ms bigint NOT NULL,
    last_heartbeat_ms bigint NOT NULL,
    heartbeats bigint NOT NULL DEFAULT 0
);
CREATE TABLE node_experts (
    node bytea NOT NULL REFERENCES nodes (pubkey),
    expert integer NOT NULL,
    PRIMARY KEY (node, expert)
);
CREATE INDEX node_experts_expert ON node_experts (expert);

-- Governance: proposals of plugins, parameters and validators, and their approvals.
CREATE TABLE proposals (
    id bigint PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('plugin', 'parameters', 'validator')),
    proposer bytea NOT NULL,
    proposed_seq bigint NOT NULL REFERENCES events (seq),
    activation_round numeric(20, 0) NOT NULL,
    -- The plugin's kind and module hash, the parameters, or the validator key.
    plugin_kind text,
    plugin_hash bytea,
    parameters jsonb,
    validator bytea,
    admit boolean,
    approvals integer NOT NULL DEFAULT 0,
    activated_seq bigint REFERENCES events (seq)
);
CREATE TABLE approvals (
    proposal_id bigint NOT NULL REFERENCES proposals (id),
    approver bytea NOT NULL,
    seq bigint NOT NULL REFERENCES events (seq),
    PRIMARY KEY (proposal_id, approver)
);
-- Plugins in force by round: the genesis's (from round 1) and each activation.
CREATE TABLE plugin_activations (
    seq bigint NOT NULL REFERENCES events (seq),
    kind text NOT NULL,
    hash bytea NOT NULL,
    activation_round numeric(20, 0) NOT NULL,
    proposal_id bigint REFERENCES proposals (id),
    PRIMARY KEY (seq, kind)
);
CREATE TABLE parameter_activations (
    seq bigint PRIMARY KEY REFERENCES events (seq),
    activation_round numeric(20, 0) NOT NULL,
    proposal_id bigint REFERENCES proposals (id),
    parameters jsonb NOT NULL
);

-- Validators: every key governance admitted or removed. An admitted key has its
-- reputation after its last round; a removed one has none (null), as in the core,
-- and starts over if admitted again.
CREATE TABLE validators (
    pubkey bytea PRIMARY KEY,
    admitted boolean NOT NULL,
    changed_seq bigint NOT NULL REFERENCES events (seq),
    -- Null for a key removed without ever being admitted.
    admitted_seq bigint REFERENCES events (seq),
    reputation bigint
);
CREATE TABLE validator_changes (
    seq bigint PRIMARY KEY REFERENCES events (seq),
    proposal_id bigint NOT NULL REFERENCES proposals (id),
    validator bytea NOT NULL REFERENCES validators (pubkey),
    admit boolean NOT NULL
);

-- Dataset pools and their items.
CREATE TABLE pools (
    id bigint PRIMARY KEY,
    curator bytea NOT NULL,
    name text NOT NULL,
    merkle_root bytea NOT NULL,
    registered_seq bigint NOT NULL REFERENCES events (seq)
);
CREATE TABLE pool_items (
    pool_id bigint NOT NULL REFERENCES pools (id),
    item integer NOT NULL,
    bytes numeric(20, 0) NOT NULL,
    checksum bytea NOT NULL,
    held_out boolean NOT NULL,
    PRIMARY KEY (pool_id, item)
);

-- Learning rounds, with their phase history. (A round logged before learning rounds
-- existed pinned plugins and parameters and trained nothing: as in the ledger's
-- views, it has no row.)
CREATE TABLE rounds (
    id bigint PRIMARY KEY,
    expert integer NOT NULL,
    pool_id bigint NOT NULL REFERENCES pools (id),
    seed bytea NOT NULL,
    burns numeric(39, 0) NOT NULL,
    reward_pool numeric(39, 0) NOT NULL,
    model_versions integer[] NOT NULL,
    parameters jsonb NOT NULL,
    opened_seq bigint NOT NULL REFERENCES events (seq),
    opened_ms bigint NOT NULL,
    phase text NOT NULL,
    -- When the phase closes; 0 while a policy call is awaited or once over.
    deadline_ms numeric(20, 0) NOT NULL,
    assignments_root bytea,
    scores_root bytea,
    rewards_root bytea,
    ended_seq bigint REFERENCES events (seq),
    ended_ms bigint,
    abort_reason text,
    carried numeric(39, 0)
);
CREATE INDEX rounds_expert ON rounds (expert, id);
CREATE INDEX rounds_phase ON rounds (phase) WHERE ended_seq IS NULL;
CREATE TABLE round_phases (
    round bigint NOT NULL REFERENCES rounds (id),
    phase text NOT NULL,
    seq bigint NOT NULL REFERENCES events (seq),
    started_ms bigint NOT NULL,
    deadline_ms numeric(20, 0) NOT NULL,
    PRIMARY KEY (round, phase)
);
CREATE TABLE round_plugins (
    round bigint NOT NULL REFERENCES rounds (id),
    kind text NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (round, kind)
);
-- The eligible nodes a round pinned when it opened.
CREATE TABLE round_nodes (
    round bigint NOT NULL REFERENCES rounds (id),
    node bytea NOT NULL REFERENCES nodes (pubkey),
    PRIMARY KEY (round, node)
);
CREATE INDEX round_nodes_node ON round_nodes (node);
-- Its validator committee, in draw order.
CREATE TABLE round_committee (
    round bigint NOT NULL REFERENCES rounds (id),
    position integer NOT NULL,
    validator bytea NOT NULL REFERENCES validators (pubkey),
    PRIMARY KEY (round, position),
    UNIQUE (round, validator)
);
CREATE INDEX round_committee_validator ON round_committee (validator);
CREATE TABLE plugin_fallbacks (
    seq bigint PRIMARY KEY REFERENCES events (seq),
    round bigint NOT NULL,
    kind text NOT NULL,
    failed_hash bytea NOT NULL,
    reason_code text NOT NULL,
    reason text NOT NULL,
    used_hash bytea NOT NULL
);

-- Data assignments: items [start_item, start_item + items) of the pool's training
-- items go to the node (a sharding plugin may give one node several ranges).
CREATE TABLE assignments (
    round bigint NOT NULL REFERENCES rounds (id),
    start_item bigint NOT NULL,
    items bigint NOT NULL,
    node bytea NOT NULL REFERENCES nodes (pubkey),
    seq bigint NOT NULL REFERENCES events (seq),
    PRIMARY KEY (round, start_item)
);
CREATE INDEX assignments_node ON assignments (node, round);

-- Delta submissions: the commitment, then the reveal, then the score.
CREATE TABLE deltas (
    round bigint NOT NULL REFERENCES rounds (id),
    node bytea NOT NULL REFERENCES nodes (pubkey),
    commitment bytea NOT NULL,
    committed_seq bigint NOT NULL REFERENCES events (seq),
    delta_hash bytea,
    salt bytea,
    delta_bytes bigint,
    revealed_seq bigint REFERENCES events (seq),
    -- The position among the round's revealed deltas (node key order), fixed when
    -- validation starts.
    delta_index integer,
    score numeric(20, 0),
    PRIMARY KEY (round, node)
);
CREATE INDEX deltas_node ON deltas (node);
CREATE INDEX deltas_hash ON deltas (delta_hash);

-- Validation records: each committee member's measurement of each delta it was
-- given, in held-out loss improvement (the scoring plugin's input).
CREATE TABLE measurements (
    round bigint NOT NULL REFERENCES rounds (id),
    validator bytea NOT NULL REFERENCES validators (pubkey),
    seq bigint NOT NULL REFERENCES events (seq),
    PRIMARY KEY (round, validator)
);
CREATE TABLE validation_records (
    round bigint NOT NULL,
    validator bytea NOT NULL,
    node bytea NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (round, validator, node),
    FOREIGN KEY (round, validator) REFERENCES measurements (round, validator),
    FOREIGN KEY (round, node) REFERENCES deltas (round, node)
);
CREATE INDEX validation_records_node ON validation_records (round, node);

-- Reward distributions of finalized rounds.
CREATE TABLE rewards (
    round bigint NOT NULL REFERENCES rounds (id),
    recipient bytea NOT NULL,
    role text NOT NULL CHECK (role IN ('node', 'validator')),
    amount numeric(39, 0) NOT NULL CHECK (amount >= 0),
    -- A validator's measurements that agreed and disagreed with the final scores,
    -- and its reputation after the round.
    agreed integer,
    disagreed integer,
    reputation bigint,
    seq bigint NOT NULL REFERENCES events (seq),
    PRIMARY KEY (round, role, recipient)
);
CREATE INDEX rewards_recipient ON rewards (recipient);

-- The parameter chain: every expert's versions (version 0 from the genesis).
CREATE TABLE experts (
    id integer PRIMARY KEY,
    version integer NOT NULL,
    weights_hash bytea NOT NULL
);
CREATE TABLE expert_versions (
    expert integer NOT NULL REFERENCES experts (id),
    version integer NOT NULL,
    weights_hash bytea NOT NULL,
    parent_hash bytea,
    round bigint REFERENCES rounds (id),
    seq bigint NOT NULL REFERENCES events (seq),
    weights_bytes bigint,
    merged integer NOT NULL,
    -- Mean squared error in billionths; null when unmeasurable.
    parent_held_out_loss numeric(20, 0),
    held_out_loss numeric(20, 0),
    PRIMARY KEY (expert, version)
);
CREATE INDEX expert_versions_round ON expert_versions (round);

-- Signed checkpoints of the event tree.
CREATE TABLE checkpoints (
    seq bigint PRIMARY KEY REFERENCES events (seq),
    tree_size bigint NOT NULL,
    merkle_root bytea NOT NULL,
    signature bytea NOT NULL
);
