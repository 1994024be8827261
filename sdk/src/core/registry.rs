//! The node registry: GPU nodes register their key and capabilities, then heartbeat.

use serde::{Deserialize, Serialize};

use super::hashed::{HashedMap, RootHash};
use super::{Context, RejectionClass, RootHasher, check_text};
use crate::crypto::PublicKey;
use crate::model::{Capabilities, Event, Parameters, limits};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub capabilities: Capabilities,
    pub registered_seq: u64,
    pub registered_ms: u64,
    pub last_heartbeat_ms: u64,
}

/// Why the registry refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryRejection {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("node {0} is already registered")]
    NodeAlreadyRegistered(PublicKey),
    #[error("node {0} is not registered")]
    NodeNotRegistered(PublicKey),
    #[error("the registry holds {0} nodes, the most it admits")]
    RegistryFull(usize),
    #[error(
        "a heartbeat {since_ms} ms after the last; the shortest interval is {interval_min_ms} ms"
    )]
    HeartbeatTooSoon { since_ms: u64, interval_min_ms: u64 },
}

impl RegistryRejection {
    pub fn code(&self) -> &'static str {
        match self {
            RegistryRejection::InvalidField { .. } => "invalid_field",
            RegistryRejection::NodeAlreadyRegistered(_) => "node_already_registered",
            RegistryRejection::NodeNotRegistered(_) => "node_not_registered",
            RegistryRejection::RegistryFull(_) => "registry_full",
            RegistryRejection::HeartbeatTooSoon { .. } => "heartbeat_too_soon",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            RegistryRejection::InvalidField { .. } => RejectionClass::Invalid,
            RegistryRejection::NodeAlreadyRegistered(_)
            | RegistryRejection::NodeNotRegistered(_)
            | RegistryRejection::RegistryFull(_) => RejectionClass::Conflict,
            RegistryRejection::HeartbeatTooSoon { .. } => RejectionClass::TooSoon,
        }
    }
}

/// Every registered node, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub(super) nodes: HashedMap<PublicKey, Node>,
}

fn invalid((field, reason): (&'static str, String)) -> RegistryRejection {
    RegistryRejection::InvalidField { field, reason }
}

fn check_capabilities(
    capabilities: &Capabilities,
    parameters: &Parameters,
) -> Result<(), RegistryRejection> {
    check_text(
        "gpu_model",
        &capabilities.gpu_model,
        1,
        limits::GPU_MODEL_CHARS_MAX,
    )
    .map_err(invalid)?;
    check_text(
        "endpoint",
        &capabilities.endpoint,
        1,
        limits::ENDPOINT_CHARS_MAX,
    )
    .map_err(invalid)?;
    if capabilities.vram_mib == 0 {
        return Err(invalid(("vram_mib", "must be non-zero".into())));
    }
    let experts = &capabilities.experts;
    if experts.is_empty() || experts.len() > limits::EXPERTS_PER_NODE_MAX {
        return Err(invalid((
            "experts",
            format!("must list 1..={} experts", limits::EXPERTS_PER_NODE_MAX),
        )));
    }
    if !experts.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(invalid(("experts", "must be strictly increasing".into())));
    }
    if let Some(last) = experts.last()
        && *last >= parameters.model_experts
    {
        return Err(invalid((
            "experts",
            format!(
                "expert {last} is past the model's {} experts",
                parameters.model_experts
            ),
        )));
    }
    Ok(())
}

impl Registry {
    pub(super) fn decide_register(
        &self,
        signer: PublicKey,
        capabilities: &Capabilities,
        parameters: &Parameters,
        context: &Context,
    ) -> Result<Vec<Event>, RegistryRejection> {
        check_capabilities(capabilities, parameters)?;
        if self.nodes.contains_key(&signer) {
            return Err(RegistryRejection::NodeAlreadyRegistered(signer));
        }
        if self.nodes.len() >= limits::NODES_MAX {
            return Err(RegistryRejection::RegistryFull(self.nodes.len()));
        }
        Ok(vec![Event::NodeRegistered {
            node: signer,
            capabilities: capabilities.clone(),
            time_ms: context.time_ms,
        }])
    }

    pub(super) fn decide_heartbeat(
        &self,
        signer: PublicKey,
        parameters: &Parameters,
        context: &Context,
    ) -> Result<Vec<Event>, RegistryRejection> {
        let node = self
            .nodes
            .get(&signer)
            .ok_or(RegistryRejection::NodeNotRegistered(signer))?;
        let since_ms = context.time_ms.saturating_sub(node.last_heartbeat_ms);
        if since_ms < parameters.heartbeat_interval_min_ms {
            return Err(RegistryRejection::HeartbeatTooSoon {
                since_ms,
                interval_min_ms: parameters.heartbeat_interval_min_ms,
            });
        }
        Ok(vec![Event::HeartbeatRecorded {
            node: signer,
            time_ms: context.time_ms,
        }])
    }

    pub(super) fn apply_registered(
        &mut self,
        node: PublicKey,
        capabilities: &Capabilities,
        time_ms: u64,
        seq: u64,
    ) {
        let previous = self.nodes.insert(
            node,
            Node {
                capabilities: capabilities.clone(),
                registered_seq: seq,
                registered_ms: time_ms,
                last_heartbeat_ms: time_ms,
            },
        );
        assert!(previous.is_none(), "node {node} registered twice");
    }

    pub(super) fn apply_heartbeat(&mut self, node: &PublicKey, time_ms: u64) {
        self.nodes
            .update(node, |entry| {
                entry.last_heartbeat_ms = entry.last_heartbeat_ms.max(time_ms);
            })
            .expect("heartbeat from a registered node");
    }
}

impl RootHash for Node {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.text(&self.capabilities.gpu_model);
        hasher.u64(u64::from(self.capabilities.vram_mib));
        hasher.u64(self.capabilities.experts.len() as u64);
        for expert in &self.capabilities.experts {
            hasher.u64(u64::from(*expert));
        }
        hasher.text(&self.capabilities.endpoint);
        hasher.u64(self.registered_seq);
        hasher.u64(self.registered_ms);
        hasher.u64(self.last_heartbeat_ms);
    }
}
