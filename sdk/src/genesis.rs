//! Genesis: the network id, the role keys and the parameters a ledger starts from.
//!
//! A genesis comes from a JSON file or is the built-in dev genesis, whose keys are
//! derived from fixed public seeds. Those secrets are known to everyone: the dev
//! genesis is for local use and tests only.

use std::path::Path;

use crate::crypto::{Keypair, PublicKey};
use crate::model::{Genesis, ModelSpec, Parameters, PluginKind, limits};

/// The network id of the built-in dev genesis.
pub const DEV_NETWORK_ID: &str = "blyan-dev";

/// Number of governance keys in the dev genesis, and its threshold.
pub const DEV_GOVERNANCE_KEYS: usize = 3;
pub const DEV_GOVERNANCE_THRESHOLD: u32 = 2;

/// The secret keys of the dev genesis, by role. File names are those the server writes
/// under `<data-dir>/dev-keys/`.
#[derive(Debug, Clone)]
pub struct DevKeys {
    pub operator: Keypair,
    pub burn_oracle: Keypair,
    /// Registers the dataset pools.
    pub curator: Keypair,
    pub governance: Vec<Keypair>,
}

fn dev_key(role: &str) -> Keypair {
    Keypair::from_secret(blake3::derive_key(
        "blyan-ledger 2026-11 dev-genesis key v1",
        role.as_bytes(),
    ))
}

impl DevKeys {
    pub fn derive() -> DevKeys {
        DevKeys {
            operator: dev_key("operator"),
            burn_oracle: dev_key("burn-oracle"),
            curator: dev_key("curator"),
            governance: (1..=DEV_GOVERNANCE_KEYS)
                .map(|index| dev_key(&format!("governance-{index}")))
                .collect(),
        }
    }

    /// `(file name, key)` for every role.
    pub fn files(&self) -> Vec<(String, &Keypair)> {
        let mut files = vec![
            ("operator.json".to_string(), &self.operator),
            ("burn-oracle.json".to_string(), &self.burn_oracle),
            ("curator.json".to_string(), &self.curator),
        ];
        for (index, key) in self.governance.iter().enumerate() {
            files.push((format!("governance-{}.json", index + 1), key));
        }
        files
    }

    pub fn genesis(&self) -> Genesis {
        Genesis {
            network_id: DEV_NETWORK_ID.to_string(),
            operator_key: self.operator.public(),
            burn_oracle_key: self.burn_oracle.public(),
            governance_keys: self.governance.iter().map(Keypair::public).collect(),
            governance_threshold: DEV_GOVERNANCE_THRESHOLD,
            curator_keys: vec![self.curator.public()],
            parameters: Parameters::default(),
            plugins: Vec::new(),
            model: Some(ModelSpec::default_size(0)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    #[error("cannot read the genesis file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the genesis file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid genesis: {0}")]
    Invalid(String),
}

/// Reads and validates a genesis JSON file.
pub fn read_file(path: &Path) -> Result<Genesis, GenesisError> {
    let genesis: Genesis = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    validate(&genesis)?;
    Ok(genesis)
}

pub fn validate(genesis: &Genesis) -> Result<(), GenesisError> {
    let invalid = |reason: &str| Err(GenesisError::Invalid(reason.to_string()));
    let network_id = &genesis.network_id;
    if network_id.is_empty()
        || network_id.len() > limits::NETWORK_ID_CHARS_MAX
        || !network_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return invalid("network_id must be 1..=64 characters of [A-Za-z0-9._-]");
    }
    let keys = &genesis.governance_keys;
    if keys.is_empty() || keys.len() > limits::GOVERNANCE_KEYS_MAX {
        return invalid("governance_keys must hold 1..=64 keys");
    }
    let mut distinct: Vec<&PublicKey> = keys.iter().collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != keys.len() {
        return invalid("governance_keys must be distinct");
    }
    let threshold = genesis.governance_threshold as usize;
    if threshold == 0 || threshold > keys.len() {
        return invalid("governance_threshold must be in 1..=len(governance_keys)");
    }
    if let Err((field, reason)) = genesis.parameters.validate() {
        return invalid(&format!("parameters.{field} {reason}"));
    }
    let mut kinds: Vec<_> = genesis.plugins.iter().map(|module| module.kind).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.len() != genesis.plugins.len() {
        return invalid("plugins must hold at most one module per kind");
    }
    // A genesis file holds none (the server adds the modules embedded in its binary); a
    // logged genesis holds every kind, so that each kind's fallback chain starts with a
    // module the log holds.
    if !genesis.plugins.is_empty() && kinds.len() != PluginKind::ALL.len() {
        return invalid("plugins must be empty (in a genesis file) or hold one module per kind");
    }
    if let Some(model) = &genesis.model {
        let widths = [model.inputs, model.hidden, model.outputs];
        if widths
            .iter()
            .any(|width| *width == 0 || *width > limits::MODEL_WIDTH_MAX)
        {
            return invalid("model.inputs, model.hidden and model.outputs must be in 1..=4096");
        }
        if model.experts != genesis.parameters.model_experts {
            return invalid("model.experts must equal parameters.model_experts");
        }
        // A genesis file names no weights (the server initialises them); a logged
        // genesis names every expert's.
        if !model.expert_hashes.is_empty() && model.expert_hashes.len() != model.experts as usize {
            return invalid(
                "model.expert_hashes must be empty (in a genesis file) or hold one hash per expert",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PluginModule;

    #[test]
    fn dev_genesis_is_valid_and_stable() {
        let first = DevKeys::derive().genesis();
        validate(&first).unwrap();
        assert_eq!(first, DevKeys::derive().genesis());
        assert_ne!(first.operator_key, first.burn_oracle_key);
    }

    #[test]
    fn genesis_json_round_trips_and_bad_thresholds_are_refused() {
        let genesis = DevKeys::derive().genesis();
        let text = serde_json::to_string(&genesis).unwrap();
        assert_eq!(serde_json::from_str::<Genesis>(&text).unwrap(), genesis);
        for threshold in [0, 4] {
            let bad = Genesis {
                governance_threshold: threshold,
                ..genesis.clone()
            };
            assert!(matches!(validate(&bad), Err(GenesisError::Invalid(_))));
        }
        let duplicated = Genesis {
            governance_keys: vec![genesis.operator_key; 2],
            governance_threshold: 1,
            ..genesis
        };
        assert!(matches!(
            validate(&duplicated),
            Err(GenesisError::Invalid(_))
        ));
    }

    #[test]
    fn a_genesis_model_fits_its_parameters() {
        let genesis = DevKeys::derive().genesis();
        let model = genesis.model.clone().expect("the dev genesis has a model");
        let with = |model: ModelSpec| Genesis {
            model: Some(model),
            ..genesis.clone()
        };
        assert!(validate(&with(model.clone())).is_ok());
        let bad = [
            ModelSpec {
                experts: model.experts + 1,
                ..model.clone()
            },
            ModelSpec {
                hidden: 0,
                ..model.clone()
            },
            ModelSpec {
                inputs: limits::MODEL_WIDTH_MAX + 1,
                ..model.clone()
            },
            ModelSpec {
                expert_hashes: vec![[1; 32]],
                ..model.clone()
            },
        ];
        for bad in bad {
            assert!(
                matches!(validate(&with(bad.clone())), Err(GenesisError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_genesis_holds_no_plugins_or_one_per_kind() {
        let genesis = DevKeys::derive().genesis();
        let with = |kinds: &[PluginKind]| Genesis {
            plugins: kinds
                .iter()
                .map(|&kind| PluginModule::new(kind, &b"\0asm\x01\0\0\0"[..]))
                .collect(),
            ..genesis.clone()
        };
        assert!(validate(&with(&[])).is_ok());
        assert!(validate(&with(&PluginKind::ALL)).is_ok());
        for kinds in [
            &[PluginKind::Scoring][..],
            &[PluginKind::Sharding, PluginKind::Reward],
            &[
                PluginKind::Sharding,
                PluginKind::Scoring,
                PluginKind::Scoring,
            ],
        ] {
            assert!(
                matches!(validate(&with(kinds)), Err(GenesisError::Invalid(_))),
                "{kinds:?}"
            );
        }
    }
}
