//! The protocol clients of GPU nodes and validators.
//!
//! A [`Node`] registers, heartbeats, fetches its shard of a round and checks every item
//! against its checksum and the shard against the assignments root, trains through a
//! [`Trainer`], uploads the delta, commits, reveals once the reveal phase starts, and
//! fetches and verifies its receipt. A [`Validator`] fetches its tasks and the held-out
//! items, checks them, measures every assigned delta through a [`Measurer`] and submits
//! its measurements in one signed command. [`follow_node`] and [`follow_validator`]
//! follow the log's WebSocket, do each step when its event arrives, and hand each
//! ended round's verified receipt (or first failure) to the caller as it ends;
//! [`run_node`] and [`run_validator`] collect a given number of them.
//!
//! Producing a delta and measuring one are the [`crate::work`] traits: the ML crate
//! gives them their real implementations; the end-to-end tests drive whole rounds with
//! small ones.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{HeartbeatHeld, ItemView, Receipt};
use crate::client::{Client, ClientError};
use crate::codec;
use crate::core::rounds;
use crate::crypto::{Keypair, PublicKey};
use crate::merkle;
use crate::model::{
    Action, Capabilities, Command, Event, Hash, ModelSpec, Phase, Reveal, RoundOutcome,
};
use crate::receipt::{self, Proven, ReceiptError};
pub use crate::work::{BaseModel, Item, Measurer, Task, Trainer, Work, WorkError};

/// Why a protocol step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("item {id}: {reason}")]
    BadItem { id: u32, reason: String },
    #[error("the shard's proof does not verify against the assignments root")]
    BadAssignmentProof,
    #[error("delta of {node}: {reason}")]
    BadDelta { node: PublicKey, reason: String },
    #[error("the trainer failed: {0}")]
    Trainer(WorkError),
    #[error("the receipt does not verify: {0}")]
    BadReceipt(#[from] ReceiptError),
    #[error("the log's stream ended")]
    StreamEnded,
    #[error("the model of round {round}: {reason}")]
    BadModel { round: u64, reason: String },
}

/// A committed delta, waiting for the reveal phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingReveal {
    pub reveal: Reveal,
    pub commit: u64,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    bytes
}

/// A key that signs commands on one network.
#[derive(Debug, Clone)]
struct Signer {
    client: Client,
    key: Keypair,
    network_id: String,
    /// The operator's key, which signs the checkpoints receipts are checked against.
    operator: PublicKey,
}

impl Signer {
    async fn connect(client: Client, key: Keypair) -> Result<Signer, ProtocolError> {
        let state = client.state().await?;
        let genesis = state
            .genesis
            .ok_or_else(|| ClientError::Decode("the server has no genesis yet".into()))?;
        Ok(Signer {
            client,
            key,
            network_id: state.network_id,
            operator: genesis.operator_key,
        })
    }

    /// Signs and submits, with retries; `idempotency` names the step, so a retried or
    /// repeated step gets the original answer.
    async fn submit(&self, idempotency: Vec<u8>, action: Action) -> Result<Receipt, ClientError> {
        let command = Command {
            idempotency_key: idempotency,
            action,
        };
        self.client
            .submit(&codec::sign_command(&self.key, &self.network_id, &command))
            .await
    }

    /// Fetches a pool item's blob and checks it against the item's size and checksum.
    async fn item(&self, view: &ItemView) -> Result<Item, ProtocolError> {
        let bytes = self
            .client
            .blob(&view.item.checksum)
            .await
            .map_err(|error| ProtocolError::BadItem {
                id: view.id,
                reason: error.to_string(),
            })?;
        if bytes.len() as u64 != view.item.bytes {
            return Err(ProtocolError::BadItem {
                id: view.id,
                reason: format!("{} bytes, the pool says {}", bytes.len(), view.item.bytes),
            });
        }
        Ok(Item { id: view.id, bytes })
    }

    async fn receipt(&self, round: u64) -> Result<Proven, ProtocolError> {
        let receipt = self.client.receipt(round, &self.key.public()).await?;
        Ok(receipt::verify(&receipt, &self.operator)?)
    }

    /// The model `round` trains from, every blob fetched and checked against the hash
    /// the log names; `None` when the ledger's genesis names no model.
    async fn base(&self, round: u64) -> Result<Option<Arc<BaseModel>>, ProtocolError> {
        let view = match self.client.round_model(round).await {
            Ok(view) => view,
            Err(ClientError::Api { status: 404, body }) if body.code == "no_model" => {
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        let bad = |reason: String| ProtocolError::BadModel { round, reason };
        let shared_hash = hex_hash(&view.shared_hash)?;
        let shared = self
            .client
            .blob(&shared_hash)
            .await
            .map_err(|error| bad(format!("the router's weights: {error}")))?;
        let mut hashes = vec![shared_hash];
        let mut experts = Vec::with_capacity(view.versions.len());
        for (expert, version) in view.versions.iter().enumerate() {
            if version.expert as usize != expert {
                return Err(bad(format!(
                    "version {expert} names expert {}",
                    version.expert
                )));
            }
            let hash = hex_hash(&version.weights_hash)?;
            experts.push(self.client.blob(&hash).await.map_err(|error| {
                bad(format!(
                    "expert {expert} version {}: {error}",
                    version.version
                ))
            })?);
            hashes.push(hash);
        }
        Ok(Some(Arc::new(BaseModel {
            spec: ModelSpec {
                inputs: view.inputs,
                hidden: view.hidden,
                outputs: view.outputs,
                experts: view.experts,
                seed: view.seed,
                shared_hash,
                expert_hashes: Vec::new(),
            },
            shared,
            experts,
            hashes,
        })))
    }
}

/// A GPU node's side of the protocol.
#[derive(Debug, Clone)]
pub struct Node {
    signer: Signer,
}

impl Node {
    pub async fn connect(client: Client, key: Keypair) -> Result<Node, ProtocolError> {
        Ok(Node {
            signer: Signer::connect(client, key).await?,
        })
    }

    pub fn key(&self) -> PublicKey {
        self.signer.key.public()
    }

    pub async fn register(&self, capabilities: Capabilities) -> Result<Receipt, ProtocolError> {
        Ok(self
            .signer
            .submit(b"register".to_vec(), Action::RegisterNode(capabilities))
            .await?)
    }

    /// Heartbeats in the liveness window open now. A window that closes between
    /// reading it and sending is followed by the next one, a few times.
    pub async fn heartbeat(&self) -> Result<HeartbeatHeld, ProtocolError> {
        let signer = &self.signer;
        let mut attempt = 0;
        loop {
            let window = signer.client.head().await?.liveness_window;
            let command = Command {
                idempotency_key: random_bytes::<16>().to_vec(),
                action: Action::Heartbeat { window },
            };
            let signed = codec::sign_command(&signer.key, &signer.network_id, &command);
            match signer.client.heartbeat(&signed).await {
                Err(error)
                    if attempt < 3
                        && matches!(
                            error.code(),
                            Some("liveness_window_not_open" | "liveness_window_closing")
                        ) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                answer => return Ok(answer?),
            }
        }
    }

    /// The node's shard of `round` with every item fetched and checked, and the
    /// shard's proof checked against the round's assignments root.
    pub async fn work(&self, round: u64) -> Result<Work, ProtocolError> {
        let client = &self.signer.client;
        let assignment = client.assignment(round, &self.key()).await?;
        if assignment.items.len() as u64 != assignment.shard.count {
            return Err(ProtocolError::BadItem {
                id: assignment.items.first().map_or(0, |item| item.id),
                reason: format!(
                    "{} items for a shard of {}",
                    assignment.items.len(),
                    assignment.shard.count
                ),
            });
        }
        let root = hex_hash(&assignment.assignments_root)?;
        let proof = hashes(&assignment.proof.hashes)?;
        if assignment.shard.node != self.key()
            || !merkle::verify(
                &root,
                assignment.proof.index,
                assignment.proof.count,
                &rounds::shard_leaf(round, &assignment.shard),
                &proof,
            )
        {
            return Err(ProtocolError::BadAssignmentProof);
        }
        let mut items = Vec::with_capacity(assignment.items.len());
        for view in &assignment.items {
            items.push(self.signer.item(view).await?);
        }
        Ok(Work {
            round,
            expert: assignment.expert,
            pool_id: assignment.pool_id,
            base: self.signer.base(round).await?,
            items,
        })
    }

    /// Uploads the delta and commits to it. The salt derives from the node's secret,
    /// the round and the delta, so nobody else can guess it and a node that restarts
    /// mid-round commits the same bytes again (the same answer) and can still reveal.
    pub async fn commit(&self, round: u64, delta: &[u8]) -> Result<PendingReveal, ProtocolError> {
        self.signer.client.put_blob(delta).await?;
        let delta_hash = *blake3::hash(delta).as_bytes();
        let mut salt = blake3::Hasher::new_derive_key("blyan-sdk 2026-12 delta-salt v1");
        salt.update(&self.signer.key.secret());
        salt.update(&round.to_be_bytes());
        salt.update(&delta_hash);
        let reveal = Reveal {
            round,
            delta_hash,
            salt: *salt.finalize().as_bytes(),
            delta_bytes: delta.len() as u64,
        };
        let commitment = rounds::commitment(round, &self.key(), &reveal.delta_hash, &reveal.salt);
        let receipt = self
            .signer
            .submit(
                format!("commit-{round}").into_bytes(),
                Action::CommitDelta { round, commitment },
            )
            .await?;
        Ok(PendingReveal {
            reveal,
            commit: receipt.seq,
        })
    }

    pub async fn reveal(&self, pending: &PendingReveal) -> Result<Receipt, ProtocolError> {
        Ok(self
            .signer
            .submit(
                format!("reveal-{}", pending.reveal.round).into_bytes(),
                Action::RevealDelta(pending.reveal),
            )
            .await?)
    }

    /// Trains on the round's work and commits the delta.
    pub async fn train_and_commit(
        &self,
        round: u64,
        trainer: &mut dyn Trainer,
    ) -> Result<PendingReveal, ProtocolError> {
        let work = self.work(round).await?;
        let delta = trainer.train(&work).map_err(ProtocolError::Trainer)?;
        self.commit(round, &delta).await
    }

    /// The node's receipt of an ended round, verified against the operator's key.
    pub async fn receipt(&self, round: u64) -> Result<Proven, ProtocolError> {
        self.signer.receipt(round).await
    }
}

/// A validator's side of the protocol.
#[derive(Debug, Clone)]
pub struct Validator {
    signer: Signer,
}

impl Validator {
    pub async fn connect(client: Client, key: Keypair) -> Result<Validator, ProtocolError> {
        Ok(Validator {
            signer: Signer::connect(client, key).await?,
        })
    }

    pub fn key(&self) -> PublicKey {
        self.signer.key.public()
    }

    /// Measures every delta the validator is assigned in `round` and submits the
    /// measurements; `None` when it has no task there.
    pub async fn measure(
        &self,
        round: u64,
        measurer: &mut dyn Measurer,
    ) -> Result<Option<Receipt>, ProtocolError> {
        let client = &self.signer.client;
        let tasks = client.tasks(round, &self.key()).await?;
        if tasks.deltas.is_empty() {
            return Ok(None);
        }
        let mut held_out = Vec::with_capacity(tasks.held_out.len());
        for view in &tasks.held_out {
            held_out.push(self.signer.item(view).await?);
        }
        let base = self.signer.base(round).await?;
        let mut values = Vec::with_capacity(tasks.deltas.len());
        for delta in &tasks.deltas {
            let bad = |reason: String| ProtocolError::BadDelta {
                node: delta.node,
                reason,
            };
            let hash = hex_hash(&delta.delta_hash)?;
            let bytes = client
                .blob(&hash)
                .await
                .map_err(|error| bad(error.to_string()))?;
            if bytes.len() as u64 != delta.delta_bytes {
                return Err(bad(format!(
                    "{} bytes, revealed {}",
                    bytes.len(),
                    delta.delta_bytes
                )));
            }
            let task = Task {
                round,
                expert: tasks.expert,
                base: base.clone(),
                node: delta.node,
                delta: bytes,
            };
            values.push(measurer.measure(&task, &held_out));
        }
        Ok(Some(
            self.signer
                .submit(
                    format!("measure-{round}").into_bytes(),
                    Action::SubmitMeasurements { round, values },
                )
                .await?,
        ))
    }

    /// The validator's receipt of an ended round, verified against the operator's key.
    pub async fn receipt(&self, round: u64) -> Result<Proven, ProtocolError> {
        self.signer.receipt(round).await
    }
}

fn hex_hash(text: &str) -> Result<Hash, ClientError> {
    crate::model::decode_hex(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| ClientError::Decode(format!("{text} is not a 32-byte hex hash")))
}

fn hashes(texts: &[String]) -> Result<Vec<Hash>, ClientError> {
    texts.iter().map(|text| hex_hash(text)).collect()
}

/// The events of the log from `from` on, decoded, across reconnects.
struct Events {
    subscription: crate::client::Subscription,
}

impl Events {
    async fn next(&mut self) -> Result<(u64, Event), ProtocolError> {
        let record = self.subscription.next().await?;
        let logged = codec::decode_logged_event(&record.body)
            .map_err(|error| ClientError::Decode(error.to_string()))?;
        Ok((record.seq, logged.event))
    }
}

/// How one round went for a node or a validator: its verified receipt, or the step
/// that failed. A failed round never stops the client: it goes on with the next.
#[derive(Debug)]
pub struct RoundResult {
    pub round: u64,
    pub receipt: Result<Proven, ProtocolError>,
}

/// The receipt of an ended round, or the failure that came first.
async fn ended(
    round: u64,
    failure: Option<ProtocolError>,
    receipt: impl Future<Output = Result<Proven, ProtocolError>>,
) -> RoundResult {
    RoundResult {
        round,
        receipt: match failure {
            Some(error) => Err(error),
            None => receipt.await,
        },
    }
}

/// [`follow_node`] until `rounds` rounds it took part in have ended: how each went.
pub async fn run_node(
    node: &Node,
    trainer: &mut dyn Trainer,
    from: u64,
    rounds: usize,
    heartbeat_every: Duration,
) -> Result<Vec<RoundResult>, ProtocolError> {
    let mut results = Vec::new();
    if rounds > 0 {
        follow_node(node, trainer, from, heartbeat_every, &mut |result| {
            results.push(result);
            until(results.len(), rounds)
        })
        .await?;
    }
    Ok(results)
}

fn until(ended: usize, rounds: usize) -> ControlFlow<()> {
    if ended < rounds {
        ControlFlow::Continue(())
    } else {
        ControlFlow::Break(())
    }
}

/// Follows the log from `from` and takes part, as `node`, in every round that assigns
/// it a shard: it trains and commits when the assignments arrive, reveals when the
/// reveal phase starts, and fetches and verifies its receipt when the round ends. It
/// heartbeats every `heartbeat_every`. Each round that ends goes to `ended_round`,
/// which says whether to go on; only a broken stream of events ends it otherwise.
pub async fn follow_node(
    node: &Node,
    trainer: &mut dyn Trainer,
    from: u64,
    heartbeat_every: Duration,
    ended_round: &mut (dyn FnMut(RoundResult) -> ControlFlow<()> + Send),
) -> Result<(), ProtocolError> {
    let mut events = Events {
        subscription: node.signer.client.subscribe(from),
    };
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<PendingReveal> = Vec::new();
    let mut joined: Vec<(u64, Option<ProtocolError>)> = Vec::new();
    loop {
        let (_, event) = tokio::select! {
            next = events.next() => next?,
            _ = heartbeat.tick() => {
                // A heartbeat refused as too soon, or lost, is followed by the next
                // tick's; liveness needs one per window, not every one.
                let _ = node.heartbeat().await;
                continue;
            }
        };
        let failed = |joined: &mut Vec<(u64, Option<ProtocolError>)>, round: u64, error| {
            if let Some(entry) = joined.iter_mut().find(|(id, _)| *id == round) {
                entry.1.get_or_insert(error);
            }
        };
        match event {
            Event::AssignmentsMade { round, shards, .. }
                if shards.iter().any(|shard| shard.node == node.key()) =>
            {
                joined.push((round, None));
                match node.train_and_commit(round, trainer).await {
                    Ok(commit) => pending.push(commit),
                    Err(error) => failed(&mut joined, round, error),
                }
            }
            Event::PhaseStarted {
                round,
                phase: Phase::Reveal,
                ..
            } => {
                if let Some(index) = pending.iter().position(|p| p.reveal.round == round)
                    && let Err(error) = node.reveal(&pending.swap_remove(index)).await
                {
                    failed(&mut joined, round, error);
                }
            }
            Event::RoundFinalized(RoundOutcome { round, .. })
            | Event::RoundAborted { round, .. } => {
                if let Some(index) = joined.iter().position(|(id, _)| *id == round) {
                    let (_, failure) = joined.swap_remove(index);
                    pending.retain(|p| p.reveal.round != round);
                    let result = ended(round, failure, node.receipt(round)).await;
                    if ended_round(result).is_break() {
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
    }
}

/// [`follow_validator`] until `rounds` rounds whose committee it sat on have ended:
/// how each went.
pub async fn run_validator(
    validator: &Validator,
    measurer: &mut dyn Measurer,
    from: u64,
    rounds: usize,
) -> Result<Vec<RoundResult>, ProtocolError> {
    let mut results = Vec::new();
    if rounds > 0 {
        follow_validator(validator, measurer, from, &mut |result| {
            results.push(result);
            until(results.len(), rounds)
        })
        .await?;
    }
    Ok(results)
}

/// Follows the log from `from` and measures, as `validator`, in every round whose
/// validation phase gives it tasks (it asks at each one, so a validator that starts
/// late still measures). Each round whose committee it sat on goes, once ended, to
/// `ended_round`, which says whether to go on; only a broken stream of events ends it
/// otherwise.
pub async fn follow_validator(
    validator: &Validator,
    measurer: &mut dyn Measurer,
    from: u64,
    ended_round: &mut (dyn FnMut(RoundResult) -> ControlFlow<()> + Send),
) -> Result<(), ProtocolError> {
    let mut events = Events {
        subscription: validator.signer.client.subscribe(from),
    };
    let mut seated: Vec<(u64, Option<ProtocolError>)> = Vec::new();
    loop {
        match events.next().await?.1 {
            Event::RoundOpened(pins)
                if pins
                    .plan
                    .as_ref()
                    .is_some_and(|plan| plan.committee.contains(&validator.key())) =>
            {
                seated.push((pins.round, None));
            }
            Event::PhaseStarted {
                round,
                phase: Phase::Validate,
                ..
            } => {
                let outcome = validator.measure(round, measurer).await;
                let seat = match seated.iter().position(|(id, _)| *id == round) {
                    Some(index) => Some(index),
                    None if !matches!(outcome, Ok(None)) => {
                        seated.push((round, None));
                        Some(seated.len() - 1)
                    }
                    None => None,
                };
                if let (Some(index), Err(error)) = (seat, outcome) {
                    seated[index].1.get_or_insert(error);
                }
            }
            Event::RoundFinalized(RoundOutcome { round, .. })
            | Event::RoundAborted { round, .. } => {
                if let Some(index) = seated.iter().position(|(id, _)| *id == round) {
                    let (_, failure) = seated.swap_remove(index);
                    let result = ended(round, failure, validator.receipt(round)).await;
                    if ended_round(result).is_break() {
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
    }
}
