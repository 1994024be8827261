//! Real learning for Blyan Ledger, on candle.
//!
//! - [`Moe`]: a small Mixture-of-Experts block, a softmax router over E expert MLPs
//!   (`inputs → hidden → outputs`, ReLU), initialised deterministically from a seed and
//!   stored as safetensors. The default size ([`MoeConfig::default`]: 8 → 16 → 4, four
//!   experts, 884 parameters) trains an expert for 100 AdamW steps on a few hundred
//!   samples in well under a second on 2 CPU cores.
//! - [`data`]: a seeded teacher MoE that produces regression items (`x`, `teacher(x)`
//!   plus noise), each item a safetensors blob the pool checksums.
//! - [`CandleTrainer`]: the node's [`Trainer`]: AdamW on the round's expert only, over
//!   the node's items; the delta is the new expert weights minus the base, as
//!   safetensors.
//! - [`CandleMeasurer`]: the validator's [`Measurer`]: the held-out loss of the base
//!   minus that of base + delta, in fixed point ([`MEASURE_SCALE`] per unit of mean
//!   squared error). A delta that does not decode, names other tensors, has the wrong
//!   shapes or holds NaN or Inf is measured [`HARMFUL`], never a crash. The loss is
//!   summed on the host in f64 in a fixed order, so on one machine the same bytes give
//!   the same number every run. Across machines the f32 forward pass may differ in its
//!   last bits (gemm picks its kernels by CPU features, cuBLAS on a GPU), so
//!   measurements agree to about f32 precision, not bit for bit; the validators'
//!   agreement counts only their sign.
//!
//! Everything runs on the CPU unless the `cuda` feature selects a GPU.

use std::collections::BTreeMap;

use blyan_sdk::model::{LOSS_SCALE, ModelSpec};
use blyan_sdk::work::{BaseModel, Item, Measurer, Task, Trainer, Work, WorkError};
pub use candle_core::Device;
use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

pub mod data;

/// Fixed-point units per unit of held-out mean squared error.
pub const MEASURE_SCALE: f64 = 1e9;

/// The measurement of a delta that can't be applied: worse than any real one, which
/// is clamped above it.
pub const HARMFUL: i64 = -1_000_000_000_000;

/// Why a model or an item could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("{0}")]
    Shape(String),
}

/// The MoE block's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeConfig {
    pub inputs: usize,
    pub hidden: usize,
    pub outputs: usize,
    pub experts: usize,
}

impl Default for MoeConfig {
    fn default() -> MoeConfig {
        MoeConfig {
            inputs: 8,
            hidden: 16,
            outputs: 4,
            experts: 4,
        }
    }
}

impl MoeConfig {
    /// The sizes a genesis model names.
    pub fn of(spec: &ModelSpec) -> MoeConfig {
        MoeConfig {
            inputs: spec.inputs as usize,
            hidden: spec.hidden as usize,
            outputs: spec.outputs as usize,
            experts: spec.experts as usize,
        }
    }

    /// The names and shapes of the router's tensors, which rounds never train.
    pub fn shared_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        BTreeMap::from([
            ("router.weight".into(), vec![self.experts, self.inputs]),
            ("router.bias".into(), vec![self.experts]),
        ])
    }

    /// Every tensor's name and shape, router first, in name order.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let mut shapes = self.shared_shapes();
        for expert in 0..self.experts {
            shapes.extend(self.expert_shapes(expert));
        }
        shapes
    }

    /// The names and shapes of one expert's tensors: what a delta holds.
    pub fn expert_shapes(&self, expert: usize) -> BTreeMap<String, Vec<usize>> {
        let prefix = format!("experts.{expert}");
        BTreeMap::from([
            (
                format!("{prefix}.fc1.weight"),
                vec![self.hidden, self.inputs],
            ),
            (format!("{prefix}.fc1.bias"), vec![self.hidden]),
            (
                format!("{prefix}.fc2.weight"),
                vec![self.outputs, self.hidden],
            ),
            (format!("{prefix}.fc2.bias"), vec![self.outputs]),
        ])
    }
}

/// The device training and measuring run on: the first GPU with `cuda`, else the CPU.
pub fn device() -> Result<Device, MlError> {
    #[cfg(feature = "cuda")]
    {
        Ok(Device::new_cuda(0)?)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok(Device::Cpu)
    }
}

/// `count` numbers uniform in `[-bound, bound)`, from the blake3 stream of `key`.
pub(crate) fn uniform(key: &[u8], count: usize, bound: f32) -> Vec<f32> {
    let mut stream = blake3::Hasher::new_derive_key("blyan-ml 2026-12 stream v1")
        .update(key)
        .finalize_xof();
    let mut bytes = vec![0u8; count * 4];
    stream.fill(&mut bytes);
    bytes
        .chunks_exact(4)
        .map(|chunk| {
            let unit =
                u32::from_le_bytes(chunk.try_into().expect("4 bytes")) as f64 / 4_294_967_296.0;
            ((unit * 2.0 - 1.0) * f64::from(bound)) as f32
        })
        .collect()
}

/// A Mixture-of-Experts block's weights, by name.
#[derive(Debug, Clone)]
pub struct Moe {
    pub config: MoeConfig,
    pub weights: BTreeMap<String, Tensor>,
}

impl Moe {
    /// Weights drawn uniformly in ±1/√fan-in from the seed's stream, one stream per
    /// tensor name: the same seed gives the same bytes on every machine.
    pub fn init(config: MoeConfig, seed: u64, device: &Device) -> Result<Moe, MlError> {
        let mut weights = BTreeMap::new();
        for (name, shape) in config.shapes() {
            // A bias draws from its layer's fan-in: the router's and the first layer's
            // is the input width, the second layer's the hidden width.
            let fan_in = match shape.as_slice() {
                [_, fan_in] => *fan_in,
                _ if name.ends_with("fc2.bias") => config.hidden,
                _ => config.inputs,
            };
            let mut key = seed.to_be_bytes().to_vec();
            key.extend_from_slice(name.as_bytes());
            let count = shape.iter().product();
            let values = uniform(&key, count, 1.0 / (fan_in as f32).sqrt());
            weights.insert(name, Tensor::from_vec(values, shape, device)?);
        }
        Ok(Moe { config, weights })
    }

    pub fn to_safetensors(&self) -> Result<Vec<u8>, MlError> {
        to_safetensors(&self.weights)
    }

    /// The blake3 hash of the weights' safetensors bytes.
    pub fn hash(&self) -> Result<[u8; 32], MlError> {
        Ok(*blake3::hash(&self.to_safetensors()?).as_bytes())
    }

    /// The router's tensors as safetensors: the blob a genesis model names as shared.
    pub fn shared_safetensors(&self) -> Result<Vec<u8>, MlError> {
        self.part(&self.config.shared_shapes())
    }

    /// One expert's tensors as safetensors: the blob of one version of it.
    pub fn expert_safetensors(&self, expert: usize) -> Result<Vec<u8>, MlError> {
        self.part(&self.config.expert_shapes(expert))
    }

    fn part(&self, shapes: &BTreeMap<String, Vec<usize>>) -> Result<Vec<u8>, MlError> {
        let tensors: BTreeMap<String, Tensor> = shapes
            .keys()
            .map(|name| (name.clone(), self.weights[name].clone()))
            .collect();
        to_safetensors(&tensors)
    }

    /// A model from the router's blob and one blob per expert, each checked for its
    /// names, shapes and finite values.
    pub fn assemble(
        config: MoeConfig,
        shared: &[u8],
        experts: &[&[u8]],
        device: &Device,
    ) -> Result<Moe, MlError> {
        if experts.len() != config.experts {
            return Err(MlError::Shape(format!(
                "{} expert blobs for a model of {}",
                experts.len(),
                config.experts
            )));
        }
        let mut weights = check_tensors(
            &config.shared_shapes(),
            candle_core::safetensors::load_buffer(shared, device)?,
        )?;
        for (expert, bytes) in experts.iter().enumerate() {
            weights.extend(check_tensors(
                &config.expert_shapes(expert),
                candle_core::safetensors::load_buffer(bytes, device)?,
            )?);
        }
        Ok(Moe { config, weights })
    }

    /// The model a round names, from its checked blobs.
    pub fn from_base(base: &BaseModel, device: &Device) -> Result<Moe, MlError> {
        let experts: Vec<&[u8]> = base.experts.iter().map(Vec::as_slice).collect();
        Moe::assemble(MoeConfig::of(&base.spec), &base.shared, &experts, device)
    }

    /// `Σ_e softmax(router(x))_e · expert_e(x)` for `x` of shape `[n, inputs]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, MlError> {
        forward(&self.config, &|name| Ok(self.weights[name].clone()), x)
    }
}

fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor, MlError> {
    Ok(x.matmul(&weight.t()?)?.broadcast_add(bias)?)
}

fn forward(
    config: &MoeConfig,
    weight: &dyn Fn(&str) -> Result<Tensor, MlError>,
    x: &Tensor,
) -> Result<Tensor, MlError> {
    let logits = linear(x, &weight("router.weight")?, &weight("router.bias")?)?;
    let gates = candle_nn::ops::softmax(&logits, 1)?;
    let mut output: Option<Tensor> = None;
    for expert in 0..config.experts {
        let prefix = format!("experts.{expert}");
        let hidden = linear(
            x,
            &weight(&format!("{prefix}.fc1.weight"))?,
            &weight(&format!("{prefix}.fc1.bias"))?,
        )?
        .relu()?;
        let out = linear(
            &hidden,
            &weight(&format!("{prefix}.fc2.weight"))?,
            &weight(&format!("{prefix}.fc2.bias"))?,
        )?;
        let gated = out.broadcast_mul(&gates.narrow(1, expert, 1)?)?;
        output = Some(match output {
            None => gated,
            Some(sum) => (sum + gated)?,
        });
    }
    output.ok_or_else(|| MlError::Shape("a model has at least one expert".into()))
}

fn to_safetensors(tensors: &BTreeMap<String, Tensor>) -> Result<Vec<u8>, MlError> {
    Ok(safetensors::serialize(tensors.iter(), None)?)
}

/// Exactly the tensors of `shapes`, each of its shape, in f32, every value finite.
fn check_tensors(
    shapes: &BTreeMap<String, Vec<usize>>,
    mut loaded: std::collections::HashMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, MlError> {
    if loaded.len() != shapes.len() {
        return Err(MlError::Shape(format!(
            "{} tensors, expected {}",
            loaded.len(),
            shapes.len()
        )));
    }
    let mut checked = BTreeMap::new();
    for (name, shape) in shapes {
        let tensor = loaded
            .remove(name)
            .ok_or_else(|| MlError::Shape(format!("no tensor {name}")))?;
        if tensor.dims() != shape.as_slice() || tensor.dtype() != DType::F32 {
            return Err(MlError::Shape(format!(
                "{name} is {:?} {:?}, expected f32 {shape:?}",
                tensor.dtype(),
                tensor.dims()
            )));
        }
        let finite = tensor
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|value| value.is_finite());
        if !finite {
            return Err(MlError::Shape(format!("{name} holds NaN or Inf")));
        }
        checked.insert(name.clone(), tensor);
    }
    Ok(checked)
}

/// Mean squared error, summed on the host in f64 in index order: the same
/// predictions give the same bits whatever the thread count.
fn mse(prediction: &Tensor, target: &Tensor) -> Result<f64, MlError> {
    let prediction = prediction.flatten_all()?.to_vec1::<f32>()?;
    let target = target.flatten_all()?.to_vec1::<f32>()?;
    let sum: f64 = prediction
        .iter()
        .zip(&target)
        .map(|(p, t)| {
            let error = f64::from(*p) - f64::from(*t);
            error * error
        })
        .sum();
    Ok(sum / prediction.len().max(1) as f64)
}

/// Replaces `current` with the round's base model when the round names one that
/// differs from it (`hashes` says which one `current` is).
fn rebase(
    current: &mut Moe,
    hashes: &mut Vec<[u8; 32]>,
    base: Option<&BaseModel>,
) -> Result<(), MlError> {
    if let Some(base) = base
        && base.hashes != *hashes
    {
        let device = current.weights["router.weight"].device().clone();
        *current = Moe::from_base(base, &device)?;
        hashes.clone_from(&base.hashes);
    }
    Ok(())
}

/// The node's trainer: `steps` AdamW steps on the round's expert, over all the node's
/// items at once, from the round's base model (or `base`, when the ledger names none).
#[derive(Debug, Clone)]
pub struct CandleTrainer {
    pub base: Moe,
    /// The blob hashes `base` was assembled from; empty for a base given directly.
    base_hashes: Vec<[u8; 32]>,
    pub steps: usize,
    pub learning_rate: f64,
    /// The training loss before the first step and after the last, of the last round.
    pub losses: Option<(f64, f64)>,
}

impl CandleTrainer {
    pub fn new(base: Moe) -> CandleTrainer {
        CandleTrainer {
            base,
            base_hashes: Vec::new(),
            steps: 100,
            // AdamW moves every weight by about the learning rate each step, whatever
            // its gradient: at 0.01, 100 steps overshoot once the model is close, and
            // later rounds' deltas stop helping.
            learning_rate: 0.003,
            losses: None,
        }
    }

    /// The delta of `expert` trained on `items`, as safetensors.
    pub fn train_expert(&mut self, expert: usize, items: &[Item]) -> Result<Vec<u8>, MlError> {
        let config = self.base.config;
        if expert >= config.experts {
            return Err(MlError::Shape(format!(
                "expert {expert} of a model with {}",
                config.experts
            )));
        }
        let device = self.base.weights["router.weight"].device().clone();
        let (x, y) = data::decode_items(&config, items, &device)?;
        let trained = config.expert_shapes(expert);
        let vars: BTreeMap<String, Var> = trained
            .keys()
            .map(|name| Ok((name.clone(), Var::from_tensor(&self.base.weights[name])?)))
            .collect::<Result<_, MlError>>()?;
        let base = &self.base.weights;
        let weight = |name: &str| -> Result<Tensor, MlError> {
            Ok(match vars.get(name) {
                Some(var) => var.as_tensor().clone(),
                None => base[name].clone(),
            })
        };
        let mut optimizer = AdamW::new(
            vars.values().cloned().collect(),
            ParamsAdamW {
                lr: self.learning_rate,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
        )?;
        let first = mse(&forward(&config, &weight, &x)?, &y)?;
        for _ in 0..self.steps {
            let prediction = forward(&config, &weight, &x)?;
            let loss = (prediction - &y)?.sqr()?.mean_all()?;
            optimizer.backward_step(&loss)?;
        }
        let last = mse(&forward(&config, &weight, &x)?, &y)?;
        self.losses = Some((first, last));
        let delta: BTreeMap<String, Tensor> = vars
            .iter()
            .map(|(name, var)| Ok((name.clone(), (var.as_tensor() - &base[name])?)))
            .collect::<Result<_, MlError>>()?;
        to_safetensors(&delta)
    }
}

impl Trainer for CandleTrainer {
    fn train(&mut self, work: &Work) -> Result<Vec<u8>, WorkError> {
        rebase(&mut self.base, &mut self.base_hashes, work.base.as_deref())?;
        Ok(self.train_expert(work.expert as usize, &work.items)?)
    }
}

/// The validator's measurer, against the round's base model (or `base`, when the
/// ledger names none).
#[derive(Debug, Clone)]
pub struct CandleMeasurer {
    pub base: Moe,
    base_hashes: Vec<[u8; 32]>,
}

impl CandleMeasurer {
    pub fn new(base: Moe) -> CandleMeasurer {
        CandleMeasurer {
            base,
            base_hashes: Vec::new(),
        }
    }

    /// `base` with `delta` added to `expert`'s tensors, if the delta is usable.
    pub fn apply(&self, expert: usize, delta: &[u8]) -> Result<Moe, MlError> {
        let config = self.base.config;
        if expert >= config.experts {
            return Err(MlError::Shape(format!("no expert {expert}")));
        }
        let device = self.base.weights["router.weight"].device().clone();
        let loaded = candle_core::safetensors::load_buffer(delta, &device)?;
        let delta = check_tensors(&config.expert_shapes(expert), loaded)?;
        let mut weights = self.base.weights.clone();
        for (name, change) in delta {
            let updated = (&weights[&name] + change)?;
            weights.insert(name, updated);
        }
        Ok(Moe { config, weights })
    }

    /// The held-out loss of `model`.
    pub fn loss(&self, model: &Moe, held_out: &[Item]) -> Result<f64, MlError> {
        let device = self.base.weights["router.weight"].device().clone();
        let (x, y) = data::decode_items(&model.config, held_out, &device)?;
        mse(&model.forward(&x)?, &y)
    }

    /// Base loss − new loss in fixed point; [`HARMFUL`] for an unusable delta. Held-out
    /// items that don't decode fail every delta alike (the pool, not the node, is at
    /// fault), and measure all of them harmful.
    pub fn measure_delta(&self, expert: usize, delta: &[u8], held_out: &[Item]) -> i64 {
        // A base whose loss is not finite can't tell a good delta from a bad one.
        let Some(base) = self
            .loss(&self.base, held_out)
            .ok()
            .filter(|loss| loss.is_finite())
        else {
            return HARMFUL;
        };
        let Ok(updated) = self.apply(expert, delta) else {
            return HARMFUL;
        };
        match self.loss(&updated, held_out) {
            Ok(loss) if loss.is_finite() => {
                let gain = ((base - loss) * MEASURE_SCALE).round();
                gain.clamp(HARMFUL as f64 + 1.0, -(HARMFUL as f64)) as i64
            }
            Ok(_) | Err(_) => HARMFUL,
        }
    }
}

impl Measurer for CandleMeasurer {
    /// A round's base model that can't be assembled fails every delta alike, and
    /// measures all of them harmful.
    fn measure(&mut self, task: &Task, held_out: &[Item]) -> i64 {
        if rebase(&mut self.base, &mut self.base_hashes, task.base.as_deref()).is_err() {
            return HARMFUL;
        }
        self.measure_delta(task.expert as usize, &task.delta, held_out)
    }
}

/// candle reads `RAYON_NUM_THREADS` at every matrix product to decide how many parts
/// it splits into; at the default size one part is the fastest (a delta trains in
/// about 18 ms on one thread, 34-90 ms on two of a 2-core machine: BENCHMARKS.md).
/// Unless the variable already says the count, the process runs itself again (exec:
/// the same process and arguments) with it set, before it has started anything.
pub fn pin_threads(threads: Option<usize>) -> std::io::Result<()> {
    const VARIABLE: &str = "RAYON_NUM_THREADS";
    let set = std::env::var(VARIABLE).ok();
    let wanted = match (threads, &set) {
        (Some(threads), _) => threads.max(1).to_string(),
        (None, Some(set)) => set.clone(),
        (None, None) => "1".to_owned(),
    };
    if set.as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env(VARIABLE, &wanted)
            .exec();
        Err(std::io::Error::new(
            error.kind(),
            format!("running again with {VARIABLE}={wanted}: {error}"),
        ))
    }
    #[cfg(not(unix))]
    {
        eprintln!("set {VARIABLE}={wanted} for that many threads");
        Ok(())
    }
}

/// Version 0 of a genesis model: the router's blob and each expert's, from its sizes
/// and seed ([`Moe::init`]), on the CPU so that every machine makes the same bytes.
pub fn initial_weights(spec: &ModelSpec) -> Result<(Vec<u8>, Vec<Vec<u8>>), MlError> {
    let model = Moe::init(MoeConfig::of(spec), spec.seed, &Device::Cpu)?;
    let experts = (0..model.config.experts)
        .map(|expert| model.expert_safetensors(expert))
        .collect::<Result<_, _>>()?;
    Ok((model.shared_safetensors()?, experts))
}

/// A held-out loss in the log's fixed point ([`LOSS_SCALE`] units), saturating.
/// `u64::MAX` stands for "not measurable" alone: a finite loss saturates one below it.
pub fn loss_fixed(loss: f64) -> u64 {
    if loss.is_finite() {
        ((loss * LOSS_SCALE).round().max(0.0) as u64).min(u64::MAX - 1)
    } else {
        u64::MAX
    }
}

/// The next version of an expert and which deltas went into it.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The expert's new weights, as safetensors.
    pub weights: Vec<u8>,
    /// The indexes of the deltas merged; the others did not decode, did not fit the
    /// expert, or would have made a weight non-finite.
    pub merged: Vec<usize>,
}

/// The score-weighted merge of `deltas` (safetensors bytes and score) into `base`, the
/// safetensors of `expert`'s version they were trained from:
/// `base + Σ_i (score_i / Σ_j score_j) · delta_i` over the usable deltas of non-zero
/// score, element by element, in f64 on the host in delta order, rounded once to
/// f32. No kernel, thread count or device takes part, so every machine computes the
/// same bytes: an auditor recomputes the hash the log records.
pub fn merge(
    config: &MoeConfig,
    expert: usize,
    base: &[u8],
    deltas: &[(&[u8], u64)],
) -> Result<Merged, MlError> {
    if expert >= config.experts {
        return Err(MlError::Shape(format!("no expert {expert}")));
    }
    let shapes = config.expert_shapes(expert);
    let host = |tensors: BTreeMap<String, Tensor>| -> Result<BTreeMap<String, Vec<f32>>, MlError> {
        tensors
            .into_iter()
            .map(|(name, tensor)| Ok((name, tensor.flatten_all()?.to_vec1::<f32>()?)))
            .collect()
    };
    let base = host(check_tensors(
        &shapes,
        candle_core::safetensors::load_buffer(base, &Device::Cpu)?,
    )?)?;
    let mut usable: Vec<(usize, u64, BTreeMap<String, Vec<f32>>)> = Vec::new();
    for (index, (bytes, score)) in deltas.iter().enumerate() {
        if *score == 0 {
            continue;
        }
        let Ok(loaded) = candle_core::safetensors::load_buffer(bytes, &Device::Cpu) else {
            continue;
        };
        let Ok(delta) = check_tensors(&shapes, loaded).and_then(host) else {
            continue;
        };
        let stays_finite = delta.iter().all(|(name, values)| {
            values
                .iter()
                .zip(&base[name])
                .all(|(change, weight)| (weight + change).is_finite())
        });
        if stays_finite {
            usable.push((index, *score, delta));
        }
    }
    let total: f64 = usable.iter().map(|(_, score, _)| *score as f64).sum();
    let mut merged: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, shape) in &shapes {
        let values: Vec<f32> = base[name]
            .iter()
            .enumerate()
            .map(|(element, weight)| {
                let change: f64 = usable
                    .iter()
                    .map(|(_, score, delta)| {
                        *score as f64 / total * f64::from(delta[name][element])
                    })
                    .sum();
                (f64::from(*weight) + change) as f32
            })
            .collect();
        merged.insert(
            name.clone(),
            Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?,
        );
    }
    Ok(Merged {
        weights: to_safetensors(&merged)?,
        merged: usable.iter().map(|(index, _, _)| *index).collect(),
    })
}

/// An expert's next version and the held-out losses of the model before and after it.
#[derive(Debug, Clone)]
pub struct NextVersion {
    pub merged: Merged,
    /// In the log's fixed point; `u64::MAX` when the held-out items do not fit the
    /// model (a pool of other data), which leaves them unmeasured.
    pub parent_held_out_loss: u64,
    pub held_out_loss: u64,
}

/// The merge of a round's accepted deltas into `expert` of the model `shared` + `base`
/// ([`merge`]), and the held-out loss of the model before and after, on `device`.
pub fn next_version(
    config: MoeConfig,
    expert: usize,
    shared: &[u8],
    base: &[Vec<u8>],
    deltas: &[(Vec<u8>, u64)],
    held_out: &[Item],
    device: &Device,
) -> Result<NextVersion, MlError> {
    if expert >= base.len() {
        return Err(MlError::Shape(format!("no expert {expert}")));
    }
    let inputs: Vec<(&[u8], u64)> = deltas
        .iter()
        .map(|(bytes, score)| (bytes.as_slice(), *score))
        .collect();
    let merged = merge(&config, expert, &base[expert], &inputs)?;
    let before_parts: Vec<&[u8]> = base.iter().map(Vec::as_slice).collect();
    let mut after_parts = before_parts.clone();
    after_parts[expert] = &merged.weights;
    let before = Moe::assemble(config, shared, &before_parts, device)?;
    let after = Moe::assemble(config, shared, &after_parts, device)?;
    let measurer = CandleMeasurer::new(before.clone());
    let loss = |model: &Moe| measurer.loss(model, held_out).map_or(u64::MAX, loss_fixed);
    Ok(NextVersion {
        parent_held_out_loss: loss(&before),
        held_out_loss: loss(&after),
        merged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(teacher: &Moe, range: std::ops::Range<u32>) -> Vec<Item> {
        range
            .map(|id| Item {
                id,
                bytes: data::item(teacher, 42, id, 64).unwrap(),
            })
            .collect()
    }

    #[test]
    fn init_is_deterministic_and_round_trips_through_safetensors() {
        let config = MoeConfig::default();
        let a = Moe::init(config, 7, &Device::Cpu).unwrap();
        let b = Moe::init(config, 7, &Device::Cpu).unwrap();
        let c = Moe::init(config, 8, &Device::Cpu).unwrap();
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        assert_ne!(a.hash().unwrap(), c.hash().unwrap());
        let shared = a.shared_safetensors().unwrap();
        let experts: Vec<Vec<u8>> = (0..config.experts)
            .map(|expert| a.expert_safetensors(expert).unwrap())
            .collect();
        let parts: Vec<&[u8]> = experts.iter().map(Vec::as_slice).collect();
        let read = Moe::assemble(config, &shared, &parts, &Device::Cpu).unwrap();
        assert_eq!(read.hash().unwrap(), a.hash().unwrap());
        let parameters: usize = config
            .shapes()
            .values()
            .map(|s| s.iter().product::<usize>())
            .sum();
        assert_eq!(parameters, 884);
    }

    #[test]
    fn training_an_expert_on_teacher_data_lowers_the_held_out_loss() {
        let config = MoeConfig::default();
        let teacher = Moe::init(config, 1, &Device::Cpu).unwrap();
        let student = Moe::init(config, 2, &Device::Cpu).unwrap();
        let training = items(&teacher, 0..4);
        let held_out = items(&teacher, 4..6);
        let mut trainer = CandleTrainer::new(student.clone());
        let delta = trainer.train_expert(1, &training).unwrap();
        let (first, last) = trainer.losses.unwrap();
        assert!(last < first * 0.9, "training loss {first} -> {last}");
        let measurer = CandleMeasurer::new(student);
        let gain = measurer.measure_delta(1, &delta, &held_out);
        assert!(gain > 0, "a trained delta helps on held-out data: {gain}");
        // The same bytes give the same number, from a fresh measurer too.
        assert_eq!(measurer.clone().measure_delta(1, &delta, &held_out), gain);
        // Applied to another expert, the delta's names do not fit.
        assert_eq!(measurer.measure_delta(2, &delta, &held_out), HARMFUL);
    }

    #[test]
    fn an_unusable_delta_is_measured_harmful_never_a_crash() {
        let config = MoeConfig::default();
        let teacher = Moe::init(config, 1, &Device::Cpu).unwrap();
        let base = Moe::init(config, 2, &Device::Cpu).unwrap();
        let held_out = items(&teacher, 4..5);
        let measurer = CandleMeasurer::new(base.clone());
        let expert = |change: &dyn Fn(&str, Vec<usize>) -> Tensor| -> Vec<u8> {
            let tensors: BTreeMap<String, Tensor> = config
                .expert_shapes(0)
                .into_iter()
                .map(|(name, shape)| (name.clone(), change(&name, shape)))
                .collect();
            to_safetensors(&tensors).unwrap()
        };
        let zeros =
            |_: &str, shape: Vec<usize>| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        // A zero delta changes nothing.
        assert_eq!(measurer.measure_delta(0, &expert(&zeros), &held_out), 0);
        let nan = |name: &str, shape: Vec<usize>| {
            let mut values = vec![0f32; shape.iter().product()];
            if name.ends_with("fc2.bias") {
                values[0] = f32::NAN;
            }
            Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
        };
        let infinite = |_: &str, shape: Vec<usize>| {
            Tensor::from_vec(
                vec![f32::INFINITY; shape.iter().product()],
                shape,
                &Device::Cpu,
            )
            .unwrap()
        };
        let wrong_shape = |_: &str, shape: Vec<usize>| {
            Tensor::zeros(
                shape.iter().product::<usize>() + 1,
                DType::F32,
                &Device::Cpu,
            )
            .unwrap()
        };
        let wrong_dtype =
            |_: &str, shape: Vec<usize>| Tensor::zeros(shape, DType::F64, &Device::Cpu).unwrap();
        for bad in [
            expert(&nan),
            expert(&infinite),
            expert(&wrong_shape),
            expert(&wrong_dtype),
            b"not safetensors at all".to_vec(),
            Vec::new(),
            base.to_safetensors().unwrap(),
        ] {
            assert_eq!(measurer.measure_delta(0, &bad, &held_out), HARMFUL);
        }
        assert_eq!(
            measurer.measure_delta(9, &expert(&zeros), &held_out),
            HARMFUL
        );
    }

    #[test]
    fn a_merge_weighs_deltas_by_score_skips_unusable_ones_and_is_the_same_bytes_every_time() {
        let config = MoeConfig::default();
        let model = Moe::init(config, 2, &Device::Cpu).unwrap();
        let base = model.expert_safetensors(1).unwrap();
        let delta = |value: f32| {
            let tensors: BTreeMap<String, Tensor> = config
                .expert_shapes(1)
                .into_iter()
                .map(|(name, shape)| {
                    let count = shape.iter().product();
                    (
                        name,
                        Tensor::from_vec(vec![value; count], shape, &Device::Cpu).unwrap(),
                    )
                })
                .collect();
            to_safetensors(&tensors).unwrap()
        };
        let (one, four) = (delta(1.0), delta(4.0));
        let garbage = b"not a delta".to_vec();
        let inputs: Vec<(&[u8], u64)> = vec![(&one, 3), (&garbage, 5), (&four, 1), (&four, 0)];
        let merged = merge(&config, 1, &base, &inputs).unwrap();
        // Only the usable deltas of non-zero score: (3 * 1 + 1 * 4) / 4 = 1.75.
        assert_eq!(merged.merged, vec![0, 2]);
        let read = candle_core::safetensors::load_buffer(&merged.weights, &Device::Cpu).unwrap();
        let bias = |tensors: &std::collections::HashMap<String, Tensor>| {
            tensors["experts.1.fc2.bias"].to_vec1::<f32>().unwrap()
        };
        let before = candle_core::safetensors::load_buffer(&base, &Device::Cpu).unwrap();
        for (after, before) in bias(&read).iter().zip(bias(&before)) {
            assert!((after - before - 1.75).abs() < 1e-6, "{after} {before}");
        }
        assert_eq!(
            merge(&config, 1, &base, &inputs).unwrap().weights,
            merged.weights
        );
        // Nothing usable: the parent's weights, byte for byte.
        let nothing = merge(&config, 1, &base, &[(&garbage, 1)]).unwrap();
        assert!(nothing.merged.is_empty());
        assert_eq!(nothing.weights, base);
    }

    #[test]
    fn a_model_splits_into_blobs_and_assembles_back() {
        let spec = ModelSpec::default_size(5);
        let (shared, experts) = initial_weights(&spec).unwrap();
        let parts: Vec<&[u8]> = experts.iter().map(Vec::as_slice).collect();
        let config = MoeConfig::of(&spec);
        let model = Moe::assemble(config, &shared, &parts, &Device::Cpu).unwrap();
        let direct = Moe::init(config, 5, &Device::Cpu).unwrap();
        assert_eq!(model.hash().unwrap(), direct.hash().unwrap());
        assert!(Moe::assemble(config, &shared, &parts[..3], &Device::Cpu).is_err());
        let swapped = [parts[1], parts[0], parts[2], parts[3]];
        assert!(Moe::assemble(config, &shared, &swapped, &Device::Cpu).is_err());
    }
}
