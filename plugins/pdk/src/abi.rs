//! The raw side of the ABI on `wasm32`: the bodies of `blyan_alloc` and
//! `blyan_policy`, which the `export_*!` macros call. The only unsafe code of a plugin
//! lives here.
//!
//! Pointers cross the ABI as `i32`: a `wasm32` address is 32 bits, and the `i32` holds
//! those bits (`as u32` recovers them). Nothing is ever freed: every call runs in a
//! fresh instance.

#![allow(unsafe_code)]

use crate::{PolicyKind, run_encoded};

/// A pointer to `len` zeroed bytes that the host may write; 0 when `len < 0`.
pub fn alloc(len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    let buffer: &'static mut [u8] = Vec::leak(vec![0; len]);
    // `expose_provenance`, so that `policy` may turn this address back into a pointer.
    buffer.as_mut_ptr().expose_provenance() as u32 as i32
}

/// Decodes the input at `[ptr, ptr + len)`, runs `policy` and returns the encoded
/// output as `(out_ptr << 32) | out_len`. Panics (traps) on any error.
pub fn policy<K: PolicyKind>(
    ptr: i32,
    len: i32,
    policy: impl FnOnce(&K::Input) -> K::Output,
) -> i64 {
    let len = usize::try_from(len).expect("blyan_policy: a negative input length");
    let input: &[u8] = if len == 0 {
        &[]
    } else {
        let address = ptr as u32 as usize;
        assert!(address != 0, "blyan_policy: a null input pointer");
        let data = std::ptr::with_exposed_provenance::<u8>(address);
        // SAFETY: the ABI has the host pass back a pointer that `alloc` returned for at
        // least `len` bytes (a leaked, never freed, initialised buffer whose provenance
        // `alloc` exposed) after writing the input there. Nothing in this instance
        // writes to that buffer while the slice lives: the policy only reads its
        // decoded copy, and every allocation made meanwhile is a fresh one.
        unsafe { std::slice::from_raw_parts(data, len) }
    };
    let output = match run_encoded::<K>(input, policy) {
        Ok(output) => Vec::leak(output),
        Err(error) => panic!("blyan_policy: {error}"),
    };
    let out_ptr = output.as_ptr().expose_provenance() as u32;
    let out_len = u32::try_from(output.len()).expect("blyan_policy: the output exceeds 4 GiB");
    ((u64::from(out_ptr) << 32) | u64::from(out_len)) as i64
}
