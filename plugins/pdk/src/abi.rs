//! The raw side of the ABI on `wasm32`: the bodies of `blyan_alloc` and
//! `blyan_policy`, which the `export_*!` macros call. The only unsafe code of a plugin
//! lives here.
//!
//! Pointers cross the ABI as `i32`: a `wasm32` address is 32 bits, and the `i32` holds
//! those bits (`as u32` recovers them). Nothing is ever freed: every call runs in a
//! fresh instance.

#![allow(unsafe_code)]

use crate::{PolicyKind, run_decoded};

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
    let input: &'static [u8] = if len == 0 {
        &[]
    } else {
        let address = ptr as u32 as usize;
        assert!(address != 0, "blyan_policy: a null input pointer");
        let data = std::ptr::with_exposed_provenance::<u8>(address);
        // SAFETY: the ABI has the host pass back a pointer that `alloc` returned for at
        // least `len` bytes (a leaked, never freed, initialised buffer whose provenance
        // `alloc` exposed) after writing the input there. Nothing in this instance
        // ever writes to that buffer again, so it may be borrowed for the instance's
        // whole life: the decoded input refers to it (its columns are slices of it)
        // and is only read, and every allocation made meanwhile is a fresh one.
        unsafe { std::slice::from_raw_parts(data, len) }
    };
    let output = match run_decoded::<K>(prost::bytes::Bytes::from_static(input), policy) {
        Ok(output) => Vec::leak(output),
        Err(error) => panic!("blyan_policy: {error}"),
    };
    let out_ptr = output.as_ptr().expose_provenance() as u32;
    let out_len = u32::try_from(output.len()).expect("blyan_policy: the output exceeds 4 GiB");
    ((u64::from(out_ptr) << 32) | u64::from(out_len)) as i64
}

/// The allocator of every plugin instance: a bump pointer over linear memory that
/// never reuses memory, except that freeing or growing the most recent allocation
/// does so in place.
///
/// Each call runs in a fresh instance that is thrown away afterwards, so freeing is
/// wasted work: a bump pointer makes the many small allocations of protobuf decoding a
/// pointer increment. The host's memory cap bounds what a call can take.
pub struct BumpAllocator;

const PAGE: usize = 65_536;
const GROW_PAGES_MIN: usize = 2;

/// The next free address; 0 until the first allocation, which starts at the heap base.
/// A plugin instance is single threaded, so relaxed atomics are plain loads and stores.
static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The end of the memory ever handed out: everything from here on is still zero (no
/// data segment reaches past the heap base, and `memory.grow` adds zeroed pages), so
/// `alloc_zeroed` need not zero it again.
static PRISTINE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

fn memory_end() -> usize {
    core::arch::wasm32::memory_size(0) * PAGE
}

unsafe extern "C" {
    /// The linker's symbol for the first address past the stack and the static data.
    static __heap_base: u8;
}

/// Where the heap starts: the initial memory's room past the stack and the data (which
/// `-Clink-arg=--initial-heap` sizes) serves the first allocations, so a small call
/// never grows memory (each growth costs the host a page-protection change).
fn heap_base() -> usize {
    (&raw const __heap_base).expose_provenance()
}

/// Makes `[.., end)` addressable, growing memory by whole pages; false when it can't.
fn reserve(end: usize) -> bool {
    let limit = memory_end();
    if end <= limit {
        return true;
    }
    // Grow by a few pages at least, so that a growing vector does not grow memory on
    // every push; not more, as the host zeroes what a call made addressable.
    let pages = (end - limit).div_ceil(PAGE).max(GROW_PAGES_MIN);
    core::arch::wasm32::memory_grow(0, pages) != usize::MAX
}

// SAFETY: every block handed out is `[start, start + size)` with `start` aligned as the
// layout asks, inside memory made addressable by `reserve`, and disjoint from every
// other live block: the cursor only moves back over a block being freed or resized
// that ends exactly at the cursor, i.e. the last one handed out.
unsafe impl core::alloc::GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        use core::sync::atomic::Ordering::Relaxed;
        let mut next = NEXT.load(Relaxed);
        if next == 0 {
            next = heap_base();
        }
        let start = next.next_multiple_of(layout.align());
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if !reserve(end) {
            return core::ptr::null_mut();
        }
        NEXT.store(end, Relaxed);
        PRISTINE.store(PRISTINE.load(Relaxed).max(end), Relaxed);
        core::ptr::with_exposed_provenance_mut(start)
    }

    unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
        use core::sync::atomic::Ordering::Relaxed;
        let pristine = PRISTINE.load(Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            // Only the part below the old pristine mark can hold earlier data: no
            // data segment reaches past the heap base, and every page past the
            // initial memory came zeroed from `memory.grow`.
            let start = block.expose_provenance();
            let dirty = pristine.saturating_sub(start).min(layout.size());
            // SAFETY: `[block, block + dirty)` lies within the block just allocated.
            unsafe { core::ptr::write_bytes(block, 0, dirty) };
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        use core::sync::atomic::Ordering::Relaxed;
        let start = ptr.expose_provenance();
        if start + layout.size() == NEXT.load(Relaxed) {
            NEXT.store(start, Relaxed);
        }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        layout: core::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        use core::sync::atomic::Ordering::Relaxed;
        let start = ptr.expose_provenance();
        if start + layout.size() == NEXT.load(Relaxed) {
            let Some(end) = start.checked_add(new_size) else {
                return core::ptr::null_mut();
            };
            if !reserve(end) {
                return core::ptr::null_mut();
            }
            NEXT.store(end, Relaxed);
            PRISTINE.store(PRISTINE.load(Relaxed).max(end), Relaxed);
            return ptr;
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the caller
        // guarantees it), and the new block is disjoint from the old one.
        unsafe {
            let new_layout =
                core::alloc::Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}
