//! Event records and the hash chain that links them.
//!
//! hash = blake3::derive_key(RECORD_CONTEXT, prev_hash || u64_be(seq) || u64_be(time_ms)
//! || body). The body is hashed as stored, never re-encoded.

use blyan_schemas::v1 as pb;
use prost::Message;

use crate::codec::DecodeError;
use crate::model::Hash;

/// blake3 key-derivation context of record hashes.
pub const RECORD_CONTEXT: &str = "blyan-ledger 2026-11 event-record v1";

/// The `prev_hash` of seq 0.
pub const GENESIS_PREV_HASH: Hash = [0; 32];

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub prev_hash: Hash,
    pub time_ms: u64,
    /// An encoded `Event`.
    pub body: Vec<u8>,
    pub hash: Hash,
}

pub fn record_hash(prev_hash: &Hash, seq: u64, time_ms: u64, body: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(RECORD_CONTEXT);
    hasher.update(prev_hash);
    hasher.update(&seq.to_be_bytes());
    hasher.update(&time_ms.to_be_bytes());
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

impl Record {
    /// Builds the record that follows `prev_hash` at `seq`.
    pub fn seal(seq: u64, prev_hash: Hash, time_ms: u64, body: Vec<u8>) -> Record {
        let hash = record_hash(&prev_hash, seq, time_ms, &body);
        Record {
            seq,
            prev_hash,
            time_ms,
            body,
            hash,
        }
    }

    /// Checks that the stored hash matches the record's own contents.
    pub fn check_hash(&self) -> Result<(), ChainError> {
        if record_hash(&self.prev_hash, self.seq, self.time_ms, &self.body) != self.hash {
            return Err(ChainError::BadHash { seq: self.seq });
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_pb().encode_to_vec()
    }

    pub fn to_pb(&self) -> pb::EventRecord {
        pb::EventRecord {
            seq: self.seq,
            prev_hash: self.prev_hash.to_vec(),
            time_ms: self.time_ms,
            body: self.body.clone(),
            hash: self.hash.to_vec(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        Record::from_pb(pb::EventRecord::decode(bytes)?)
    }

    pub fn from_pb(message: pb::EventRecord) -> Result<Record, DecodeError> {
        let hash = |bytes: &[u8], field: &str| -> Result<Hash, DecodeError> {
            bytes
                .try_into()
                .map_err(|_| DecodeError(format!("{field} must be 32 bytes")))
        };
        Ok(Record {
            seq: message.seq,
            prev_hash: hash(&message.prev_hash, "prev_hash")?,
            time_ms: message.time_ms,
            hash: hash(&message.hash, "hash")?,
            body: message.body,
        })
    }
}

/// Why a record does not continue the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("record at seq {seq}: cannot decode: {reason}")]
    Undecodable { seq: u64, reason: String },
    #[error("record at seq {seq}: carries seq {found}")]
    WrongSeq { seq: u64, found: u64 },
    #[error("record at seq {seq}: prev_hash does not match the hash of seq {}", seq.wrapping_sub(1))]
    BrokenLink { seq: u64 },
    #[error("record at seq {seq}: stored hash does not match its contents")]
    BadHash { seq: u64 },
    #[error("record at seq {seq}: time goes backwards ({time_ms} < {previous_ms})")]
    TimeBackwards {
        seq: u64,
        time_ms: u64,
        previous_ms: u64,
    },
}

impl ChainError {
    /// The first bad seq.
    pub fn seq(&self) -> u64 {
        match self {
            ChainError::Undecodable { seq, .. }
            | ChainError::WrongSeq { seq, .. }
            | ChainError::BrokenLink { seq }
            | ChainError::BadHash { seq }
            | ChainError::TimeBackwards { seq, .. } => *seq,
        }
    }
}

/// Walks the chain record by record and checks each link.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    seq_next: u64,
    head_hash: Hash,
    time_ms_last: u64,
}

impl Default for ChainVerifier {
    fn default() -> ChainVerifier {
        ChainVerifier {
            seq_next: 0,
            head_hash: GENESIS_PREV_HASH,
            time_ms_last: 0,
        }
    }
}

impl ChainVerifier {
    /// The verifier of a log checked up to `last`, whose hash and time the next record
    /// must follow.
    pub fn after(last: &Record) -> ChainVerifier {
        ChainVerifier {
            seq_next: last.seq + 1,
            head_hash: last.hash,
            time_ms_last: last.time_ms,
        }
    }

    /// Checks that `record` is the next link, then advances.
    pub fn push(&mut self, record: &Record) -> Result<(), ChainError> {
        self.check_link(record)?;
        if record_hash(&record.prev_hash, record.seq, record.time_ms, &record.body) != record.hash {
            return Err(ChainError::BadHash { seq: record.seq });
        }
        self.advance(record);
        Ok(())
    }

    /// Like [`ChainVerifier::push`] for a record whose own hash was already checked
    /// (see [`Record::check_hash`]), possibly on another thread.
    pub fn push_hashed(&mut self, record: &Record) -> Result<(), ChainError> {
        self.check_link(record)?;
        self.advance(record);
        Ok(())
    }

    fn check_link(&self, record: &Record) -> Result<(), ChainError> {
        let seq = self.seq_next;
        if record.seq != seq {
            return Err(ChainError::WrongSeq {
                seq,
                found: record.seq,
            });
        }
        if record.prev_hash != self.head_hash {
            return Err(ChainError::BrokenLink { seq });
        }
        if record.time_ms < self.time_ms_last {
            return Err(ChainError::TimeBackwards {
                seq,
                time_ms: record.time_ms,
                previous_ms: self.time_ms_last,
            });
        }
        Ok(())
    }

    fn advance(&mut self, record: &Record) {
        self.seq_next = record.seq + 1;
        self.head_hash = record.hash;
        self.time_ms_last = record.time_ms;
    }

    /// The log time of the last record checked; 0 before the first.
    pub fn time_ms_last(&self) -> u64 {
        self.time_ms_last
    }

    /// Number of records checked so far.
    pub fn len(&self) -> u64 {
        self.seq_next
    }

    pub fn is_empty(&self) -> bool {
        self.seq_next == 0
    }

    pub fn head_hash(&self) -> Hash {
        self.head_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(length: u64) -> Vec<Record> {
        let mut records = Vec::new();
        let mut prev = GENESIS_PREV_HASH;
        for seq in 0..length {
            let record = Record::seal(seq, prev, 1_000 + seq, vec![seq as u8; 3]);
            prev = record.hash;
            records.push(record);
        }
        records
    }

    #[test]
    fn intact_chain_verifies() {
        let mut verifier = ChainVerifier::default();
        for record in chain(5) {
            verifier.push(&record).unwrap();
        }
        assert_eq!(verifier.len(), 5);
    }

    #[test]
    fn each_kind_of_damage_names_the_first_bad_seq() {
        type Damage = fn(&mut Record);
        let cases: Vec<(Damage, ChainError)> = vec![
            (|record| record.body[0] ^= 1, ChainError::BadHash { seq: 2 }),
            (
                |record| record.prev_hash[0] ^= 1,
                ChainError::BrokenLink { seq: 2 },
            ),
            (
                |record| record.seq = 7,
                ChainError::WrongSeq { seq: 2, found: 7 },
            ),
            (
                |record| record.time_ms = 0,
                ChainError::TimeBackwards {
                    seq: 2,
                    time_ms: 0,
                    previous_ms: 1_001,
                },
            ),
        ];
        for (damage, expected) in cases {
            let mut records = chain(4);
            damage(&mut records[2]);
            let mut verifier = ChainVerifier::default();
            let error = records
                .iter()
                .try_for_each(|record| verifier.push(record))
                .unwrap_err();
            assert_eq!(error, expected);
            assert_eq!(error.seq(), 2);
        }
    }

    #[test]
    fn record_round_trips_through_protobuf() {
        let record = chain(2).pop().unwrap();
        assert_eq!(Record::decode(&record.encode()), Ok(record));
    }
}
