//! The wire and disk formats of Blyan Ledger, generated from `proto/` by prost.
//!
//! Who uses it: the sdk (which converts these messages to its own domain types at the
//! edge) and the server (which stores `EventRecord`s). Each message here is a
//! compatibility promise: fields are only ever added, and tags are never reused.

pub mod check;
pub mod column;
mod plugin_kind;

pub use plugin_kind::PluginKind;

/// Version 1 of the protocol.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/blyan.v1.rs"));

    /// The length of one key in a plugin input's `node_keys` column (an ed25519
    /// public key), for the host that writes the column and the plugins that read it.
    pub const NODE_KEY_LEN: usize = 32;

    /// The version of the plugin ABI that `plugin.proto` belongs to: a plugin's
    /// `blyan_abi_version` export returns it, and the host refuses any other.
    pub const ABI_VERSION: i32 = 1;
}
