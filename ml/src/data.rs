//! Seeded, deterministic regression data from a hidden teacher MoE.
//!
//! Item `index` of a dataset seed holds `samples` inputs drawn uniformly in [-1, 1)
//! from the blake3 stream of `(seed, index)`, and their targets: the teacher's output
//! plus noise uniform in ±[`NOISE`]. An item is a safetensors blob with an `x`
//! (`[samples, inputs]`) and a `y` (`[samples, outputs]`) tensor; the pool checksums
//! the blob. The inputs and the noise are exact functions of the seed; the targets pass
//! through the teacher's f32 forward pass, so a pool is generated once, by its curator,
//! and everyone else uses its checksummed blobs.

use blyan_sdk::work::Item;
use candle_core::{DType, Device, Tensor};

use crate::{MlError, Moe, MoeConfig, uniform};

/// The targets' noise amplitude.
pub const NOISE: f32 = 0.01;

/// Item `index` of dataset `seed`, labelled by `teacher`, as safetensors.
pub fn item(teacher: &Moe, seed: u64, index: u32, samples: usize) -> Result<Vec<u8>, MlError> {
    let config = teacher.config;
    let device = teacher.weights["router.weight"].device().clone();
    let key = |stream: &str| {
        let mut key = seed.to_be_bytes().to_vec();
        key.extend_from_slice(&index.to_be_bytes());
        key.extend_from_slice(stream.as_bytes());
        key
    };
    let x = Tensor::from_vec(
        uniform(&key("x"), samples * config.inputs, 1.0),
        (samples, config.inputs),
        &device,
    )?;
    let noise = Tensor::from_vec(
        uniform(&key("noise"), samples * config.outputs, NOISE),
        (samples, config.outputs),
        &device,
    )?;
    let y = (teacher.forward(&x)? + noise)?;
    Ok(safetensors::serialize([("x", &x), ("y", &y)], None)?)
}

/// The `x` and `y` of every item, stacked, checked against the model's sizes.
pub fn decode_items(
    config: &MoeConfig,
    items: &[Item],
    device: &Device,
) -> Result<(Tensor, Tensor), MlError> {
    if items.is_empty() {
        return Err(MlError::Shape("no items".into()));
    }
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for item in items {
        let mut tensors = candle_core::safetensors::load_buffer(&item.bytes, device)?;
        let (Some(x), Some(y)) = (tensors.remove("x"), tensors.remove("y")) else {
            return Err(MlError::Shape(format!("item {} lacks x or y", item.id)));
        };
        let fits = x.dtype() == DType::F32
            && y.dtype() == DType::F32
            && x.rank() == 2
            && y.rank() == 2
            && x.dims()[1] == config.inputs
            && y.dims()[1] == config.outputs
            && x.dims()[0] == y.dims()[0];
        if !fits {
            return Err(MlError::Shape(format!(
                "item {}: x {:?}, y {:?} do not fit the model",
                item.id,
                x.dims(),
                y.dims()
            )));
        }
        xs.push(x);
        ys.push(y);
    }
    Ok((Tensor::cat(&xs, 0)?, Tensor::cat(&ys, 0)?))
}
