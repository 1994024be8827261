//! The default plugins, as the build script compiled them for wasm32-unknown-unknown
//! from `plugins/{sharding,scoring,reward}` with `--profile plugin`.
//!
//! A network's genesis stores these bytes in the log, so a log keeps replaying with the
//! plugins it started with even after the defaults here change.

use crate::PluginKind;

pub const SHARDING: &[u8] = include_bytes!(env!("BLYAN_DEFAULT_SHARDING_WASM"));
pub const SCORING: &[u8] = include_bytes!(env!("BLYAN_DEFAULT_SCORING_WASM"));
pub const REWARD: &[u8] = include_bytes!(env!("BLYAN_DEFAULT_REWARD_WASM"));

/// The embedded default of `kind`.
pub fn wasm(kind: PluginKind) -> &'static [u8] {
    match kind {
        PluginKind::Sharding => SHARDING,
        PluginKind::Scoring => SCORING,
        PluginKind::Reward => REWARD,
    }
}
