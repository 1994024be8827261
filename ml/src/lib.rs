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

use blyan_sdk::work::{Item, Measurer, Task, Trainer, Work, WorkError};
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
    /// Every tensor's name and shape, router first, in name order.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let mut shapes = BTreeMap::new();
        shapes.insert("router.weight".into(), vec![self.experts, self.inputs]);
        shapes.insert("router.bias".into(), vec![self.experts]);
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

    /// Reads weights from safetensors bytes, checking every name and shape.
    pub fn from_safetensors(
        config: MoeConfig,
        bytes: &[u8],
        device: &Device,
    ) -> Result<Moe, MlError> {
        let loaded = candle_core::safetensors::load_buffer(bytes, device)?;
        let weights = check_tensors(&config.shapes(), loaded)?;
        Ok(Moe { config, weights })
    }

    pub fn to_safetensors(&self) -> Result<Vec<u8>, MlError> {
        to_safetensors(&self.weights)
    }

    /// The blake3 hash of the weights' safetensors bytes.
    pub fn hash(&self) -> Result<[u8; 32], MlError> {
        Ok(*blake3::hash(&self.to_safetensors()?).as_bytes())
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

/// The node's trainer: `steps` AdamW steps on the round's expert, over all the node's
/// items at once, from `base`.
#[derive(Debug, Clone)]
pub struct CandleTrainer {
    pub base: Moe,
    pub steps: usize,
    pub learning_rate: f64,
    /// The training loss before the first step and after the last, of the last round.
    pub losses: Option<(f64, f64)>,
}

impl CandleTrainer {
    pub fn new(base: Moe) -> CandleTrainer {
        CandleTrainer {
            base,
            steps: 100,
            learning_rate: 0.01,
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
        Ok(self.train_expert(work.expert as usize, &work.items)?)
    }
}

/// The validator's measurer, against the pinned base version.
#[derive(Debug, Clone)]
pub struct CandleMeasurer {
    pub base: Moe,
}

impl CandleMeasurer {
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
        let Ok(base) = self.loss(&self.base, held_out) else {
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
    fn measure(&mut self, task: &Task, held_out: &[Item]) -> i64 {
        self.measure_delta(task.expert as usize, &task.delta, held_out)
    }
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
        let bytes = a.to_safetensors().unwrap();
        let read = Moe::from_safetensors(config, &bytes, &Device::Cpu).unwrap();
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
        let measurer = CandleMeasurer { base: student };
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
        let measurer = CandleMeasurer { base: base.clone() };
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
}
