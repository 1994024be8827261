//! The node registry: GPU nodes register their key and capabilities, then heartbeat.
//!
//! Liveness is counted in windows. A node signs one heartbeat per window, naming the
//! window open now; the server holds them and, when the window closes, logs one
//! [`LivenessWindow`] event: a bitmap over the registry (bit i is the node registered
//! i-th) and the Merkle root of the signed heartbeats, which are in a blob
//! ([`crate::liveness`]). So the log grows by one event per window, not one per
//! heartbeat, and applying one costs its bitmap, not a write per node. The state keeps
//! the windows that can still make a node eligible: those closed within
//! `heartbeat_timeout_ms` of the newest close, under the parameters in force then.

use serde::{Deserialize, Serialize};

use super::hashed::{HashedMap, RootHash};
use super::{Context, RejectionClass, RootHasher, check_text};
use crate::crypto::PublicKey;
use crate::model::{Capabilities, Event, LivenessWindow, Parameters, limits};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub capabilities: Capabilities,
    pub registered_seq: u64,
    pub registered_ms: u64,
    /// The registration's time, or the last heartbeat logged one by one (logs written
    /// before liveness windows). Heartbeats in windows are in [`Liveness`].
    pub last_heartbeat_ms: u64,
    /// Registration order, from 0: the node's bit in a liveness window.
    pub index: u64,
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
    #[error("liveness window {window} is not open; window {open} is")]
    WindowNotOpen { window: u64, open: u64 },
    #[error("liveness window {window} opened at {opened_ms} ms; it may close at {due_ms} ms")]
    WindowNotOver {
        window: u64,
        opened_ms: u64,
        due_ms: u64,
    },
}

impl RegistryRejection {
    pub fn code(&self) -> &'static str {
        match self {
            RegistryRejection::InvalidField { .. } => "invalid_field",
            RegistryRejection::NodeAlreadyRegistered(_) => "node_already_registered",
            RegistryRejection::NodeNotRegistered(_) => "node_not_registered",
            RegistryRejection::RegistryFull(_) => "registry_full",
            RegistryRejection::WindowNotOpen { .. } => "liveness_window_not_open",
            RegistryRejection::WindowNotOver { .. } => "liveness_window_not_over",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            RegistryRejection::InvalidField { .. } => RejectionClass::Invalid,
            RegistryRejection::NodeAlreadyRegistered(_)
            | RegistryRejection::NodeNotRegistered(_)
            | RegistryRejection::RegistryFull(_)
            | RegistryRejection::WindowNotOpen { .. } => RejectionClass::Conflict,
            RegistryRejection::WindowNotOver { .. } => RejectionClass::TooSoon,
        }
    }
}

/// Every registered node, by key, and who heartbeated lately.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub(super) nodes: HashedMap<PublicKey, Node>,
    pub(super) liveness: Liveness,
}

/// The liveness window open now, and the closed ones recent enough to count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    /// The window a heartbeat names now.
    pub(super) open: u64,
    /// Log time the open window opened at: the last close, or 0.
    pub(super) opened_ms: u64,
    /// Closed windows within `heartbeat_timeout_ms` of the newest close, oldest first.
    pub(super) recent: Vec<LivenessWindow>,
}

impl Liveness {
    /// The window a heartbeat names now.
    pub fn open(&self) -> u64 {
        self.open
    }

    /// Log time the open window opened at.
    pub fn opened_ms(&self) -> u64 {
        self.opened_ms
    }

    /// The closed windows that can still count, oldest first.
    pub fn recent(&self) -> &[LivenessWindow] {
        &self.recent
    }
}

/// Whether bit `index` of a window's bitmap is set.
pub fn is_live(live: &[u8], index: u64) -> bool {
    usize::try_from(index / 8)
        .ok()
        .and_then(|byte| live.get(byte))
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
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

    /// A heartbeat decides no event: the server holds it until its window closes.
    /// It must come from a registered node and name the window open now.
    pub(super) fn decide_heartbeat(
        &self,
        signer: PublicKey,
        window: u64,
    ) -> Result<Vec<Event>, RegistryRejection> {
        if !self.nodes.contains_key(&signer) {
            return Err(RegistryRejection::NodeNotRegistered(signer));
        }
        self.check_open(window)?;
        Ok(Vec::new())
    }

    fn check_open(&self, window: u64) -> Result<(), RegistryRejection> {
        if window == self.liveness.open {
            Ok(())
        } else {
            Err(RegistryRejection::WindowNotOpen {
                window,
                open: self.liveness.open,
            })
        }
    }

    /// The open window closes at the log time of this decision, once
    /// `liveness_window_ms` has passed since it opened, with a bitmap that names only
    /// registered nodes and at least one.
    pub(super) fn decide_close_window(
        &self,
        window: &LivenessWindow,
        parameters: &Parameters,
        context: &Context,
    ) -> Result<Vec<Event>, RegistryRejection> {
        self.check_open(window.window)?;
        let due_ms = self
            .liveness
            .opened_ms
            .saturating_add(parameters.liveness_window_ms);
        if context.time_ms < due_ms {
            return Err(RegistryRejection::WindowNotOver {
                window: window.window,
                opened_ms: self.liveness.opened_ms,
                due_ms,
            });
        }
        if window.closed_ms != context.time_ms {
            return Err(invalid((
                "closed_ms",
                format!("must be the log time, {}", context.time_ms),
            )));
        }
        self.check_bitmap(&window.live).map_err(invalid)?;
        Ok(vec![Event::LivenessWindowClosed(window.clone())])
    }

    /// A window's bitmap: no trailing zero byte, at least one bit, none past the
    /// registry.
    pub(super) fn check_bitmap(&self, live: &[u8]) -> Result<(), (&'static str, String)> {
        let Some(&last) = live.last() else {
            return Err(("live", "must name at least one node".into()));
        };
        if last == 0 {
            return Err(("live", "must not end in a zero byte".into()));
        }
        let bits = live.len() as u64 * 8 - u64::from(last.leading_zeros());
        let nodes = self.nodes.len() as u64;
        if bits > nodes {
            return Err(("live", format!("names node {} of {nodes}", bits - 1)));
        }
        Ok(())
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
                index: self.nodes.len() as u64,
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

    /// Folds a closed window in, keeping the windows within `heartbeat_timeout_ms` of
    /// it.
    pub(super) fn apply_window_closed(&mut self, window: &LivenessWindow, parameters: &Parameters) {
        let liveness = &mut self.liveness;
        assert_eq!(window.window, liveness.open, "windows close in order");
        let horizon = window
            .closed_ms
            .saturating_sub(parameters.heartbeat_timeout_ms);
        liveness.recent.retain(|kept| kept.closed_ms >= horizon);
        liveness.recent.push(window.clone());
        liveness.open = window.window + 1;
        liveness.opened_ms = window.closed_ms;
    }

    /// The last time `node` was seen: its registration or logged heartbeat, or the
    /// newest recent window it heartbeated in.
    pub fn last_seen_ms(&self, node: &Node) -> u64 {
        self.liveness
            .recent
            .iter()
            .rev()
            .find(|window| is_live(&window.live, node.index))
            .map_or(node.last_heartbeat_ms, |window| {
                window.closed_ms.max(node.last_heartbeat_ms)
            })
    }

    /// The open liveness window and the recent closed ones.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
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
        hasher.u64(self.index);
    }
}

impl Liveness {
    /// Its part of the state root: every field, each recent window whole.
    pub(super) fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.open);
        hasher.u64(self.opened_ms);
        hasher.u64(self.recent.len() as u64);
        for window in &self.recent {
            hasher.u64(window.window);
            hasher.u64(window.closed_ms);
            hasher.bytes(&window.live);
            hasher.bytes(&window.heartbeats_root);
            hasher.bytes(&window.blob);
        }
    }
}
