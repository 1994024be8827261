//! Burns: the burn oracle records BLY burns seen on the token chain, each once.

use serde::{Deserialize, Serialize};

use super::hashed::{HashedMap, RootHash};
use super::{Context, RejectionClass, RootHasher, check_text};
use crate::crypto::PublicKey;
use crate::model::{Burn, Event, Genesis, limits};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurnEntry {
    pub burner: String,
    #[serde(with = "crate::model::u128_string")]
    pub amount: u128,
    pub seq: u64,
    pub time_ms: u64,
}

/// Why a burn was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BurnRejection {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("the signer is not the burn oracle key")]
    NotBurnOracle,
    /// The same burn was already recorded: the caller's goal is met.
    #[error("burn {chain_tx_id} was already recorded at seq {seq}")]
    AlreadyRecorded { chain_tx_id: String, seq: u64 },
    #[error("burn {chain_tx_id} was recorded at seq {seq} with a different burner or amount")]
    Conflict { chain_tx_id: String, seq: u64 },
    #[error("the burn total would overflow u128")]
    TotalOverflow,
}

impl BurnRejection {
    pub fn code(&self) -> &'static str {
        match self {
            BurnRejection::InvalidField { .. } => "invalid_field",
            BurnRejection::NotBurnOracle => "unauthorized",
            BurnRejection::AlreadyRecorded { .. } => "burn_already_recorded",
            BurnRejection::Conflict { .. } => "burn_conflict",
            BurnRejection::TotalOverflow => "burn_total_overflow",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            BurnRejection::InvalidField { .. } | BurnRejection::TotalOverflow => {
                RejectionClass::Invalid
            }
            BurnRejection::NotBurnOracle => RejectionClass::Forbidden,
            BurnRejection::AlreadyRecorded { .. } => RejectionClass::AlreadyDone,
            BurnRejection::Conflict { .. } => RejectionClass::Conflict,
        }
    }
}

/// Every recorded burn, by chain tx id, and their total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Burns {
    pub(super) entries: HashedMap<String, BurnEntry>,
    #[serde(with = "crate::model::u128_string")]
    pub(super) total: u128,
}

fn invalid((field, reason): (&'static str, String)) -> BurnRejection {
    BurnRejection::InvalidField { field, reason }
}

impl Burns {
    pub(super) fn decide_record(
        &self,
        genesis: &Genesis,
        signer: PublicKey,
        burn: &Burn,
        context: &Context,
    ) -> Result<Vec<Event>, BurnRejection> {
        if signer != genesis.burn_oracle_key {
            return Err(BurnRejection::NotBurnOracle);
        }
        check_text(
            "chain_tx_id",
            &burn.chain_tx_id,
            1,
            limits::CHAIN_TX_ID_CHARS_MAX,
        )
        .map_err(invalid)?;
        check_text("burner", &burn.burner, 1, limits::BURNER_CHARS_MAX).map_err(invalid)?;
        if burn.amount == 0 {
            return Err(invalid(("amount", "must be non-zero".into())));
        }
        if let Some(existing) = self.entries.get(&burn.chain_tx_id) {
            let chain_tx_id = burn.chain_tx_id.clone();
            let seq = existing.seq;
            return Err(
                if existing.burner == burn.burner && existing.amount == burn.amount {
                    BurnRejection::AlreadyRecorded { chain_tx_id, seq }
                } else {
                    BurnRejection::Conflict { chain_tx_id, seq }
                },
            );
        }
        self.total
            .checked_add(burn.amount)
            .ok_or(BurnRejection::TotalOverflow)?;
        Ok(vec![Event::BurnRecorded {
            burn: burn.clone(),
            time_ms: context.time_ms,
        }])
    }

    pub(super) fn apply_recorded(&mut self, burn: &Burn, time_ms: u64, seq: u64) {
        let Burn {
            chain_tx_id,
            burner,
            amount,
        } = burn;
        self.total = self
            .total
            .checked_add(*amount)
            .expect("burn total fits u128");
        let previous = self.entries.insert(
            chain_tx_id.clone(),
            BurnEntry {
                burner: burner.clone(),
                amount: *amount,
                seq,
                time_ms,
            },
        );
        assert!(previous.is_none(), "burn {chain_tx_id} recorded twice");
    }
}

impl RootHash for BurnEntry {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.text(&self.burner);
        hasher.u128(self.amount);
        hasher.u64(self.seq);
        hasher.u64(self.time_ms);
    }
}
