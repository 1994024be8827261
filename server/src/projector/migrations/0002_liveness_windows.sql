-- Liveness windows: a node's heartbeats are logged per window, as a bitmap over the
-- registry's order, so each node gets its place in it, and each closed window a row.
ALTER TABLE nodes ADD COLUMN registry_index bigint;
UPDATE nodes SET registry_index = ordered.position
    FROM (SELECT pubkey, row_number() OVER (ORDER BY registered_seq) - 1 AS position
          FROM nodes) AS ordered
    WHERE nodes.pubkey = ordered.pubkey;
ALTER TABLE nodes ALTER COLUMN registry_index SET NOT NULL;
CREATE UNIQUE INDEX nodes_registry_index ON nodes (registry_index);

CREATE TABLE liveness_windows (
    seq bigint PRIMARY KEY REFERENCES events (seq),
    number bigint NOT NULL UNIQUE,
    closed_ms bigint NOT NULL,
    nodes bigint NOT NULL,
    heartbeats_root bytea NOT NULL,
    -- blake3 of the blob of the window's signed heartbeats.
    blob bytea NOT NULL
);
