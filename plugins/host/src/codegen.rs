/// The `rustc` flags a plugin is built with, beyond its cargo profile: the default
/// plugins' build (this crate's build script, which `include!`s this file) and
/// `blyan plugin build` use the same ones.
///
/// - `wide-arithmetic`: 128-bit money arithmetic as single instructions rather than
///   calls into software routines (the host enables the proposal);
/// - a 256 KiB stack instead of 1 MiB: policies don't recurse deeply, and a smaller
///   initial memory is less for the host to map and reset on every call;
/// - 64 KiB of heap in the initial memory, where the kit's allocator starts: a call on
///   a small input then never grows memory, which costs the host a page-protection
///   change on the way up and another when the slot is reused.
pub const PLUGIN_RUSTFLAGS: [&str; 3] = [
    "-Ctarget-feature=+wide-arithmetic",
    "-Clink-arg=-zstack-size=262144",
    "-Clink-arg=--initial-heap=65536",
];
