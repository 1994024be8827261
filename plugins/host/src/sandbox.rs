//! One wasmtime engine, configured for determinism, and the calls into plugins.
//!
//! Limits, per call:
//! - fuel ([`Limits::fuel_per_call`]): the deterministic bound on work; running out
//!   traps at the same instruction on every machine;
//! - memory ([`Limits::memory_bytes_max`]): a linear memory can't be created or grown
//!   past it;
//! - an epoch deadline ([`Limits::deadline`]): a wall-clock backstop in case fuel
//!   metering is ever too generous; a background thread ticks the epoch every
//!   [`EPOCH_TICK`].
//!
//! Every call gets a fresh [`Store`], so nothing survives from one call to the next.
//! Instances come from wasmtime's pooling allocator: at most [`CONCURRENT_CALLS`] run
//! at once (a call waits for a slot, so a busy host is never mistaken for a failing
//! plugin), and a slot's memory is zeroed in place for the next call rather than
//! unmapped, which saves the page faults of a fresh mapping.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use prost::Message;
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, ValType,
};

use crate::{ABI_VERSION, PluginKind, check, module_hash, pb, reference};

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Plugin calls that may run at once; more wait for a slot.
pub const CONCURRENT_CALLS: u32 = 32;

/// How much of a slot's memory is zeroed in place after a call; the rest is returned to
/// the kernel.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;

const WASM_PAGE_BYTES: u64 = 65_536;

/// Names of the exports the ABI requires.
pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_ABI_VERSION: &str = "blyan_abi_version";
pub const EXPORT_ALLOC: &str = "blyan_alloc";
pub const EXPORT_POLICY: &str = "blyan_policy";

/// Bounds on what one plugin module and one call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted module.
    pub module_bytes_max: usize,
    /// Fuel for one policy call on real round inputs.
    pub fuel_per_call: u64,
    /// Fuel for the conformance run on the reference input at proposal time.
    pub conformance_fuel: u64,
    /// Largest linear memory.
    pub memory_bytes_max: usize,
    /// Largest output a call may return.
    pub output_bytes_max: usize,
    /// Wall-clock backstop for one call.
    pub deadline: Duration,
    /// Compiled modules kept, the most recently used first; the rest are compiled
    /// again when next needed.
    pub cached_modules_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            module_bytes_max: 4 << 20,
            // The default plugins use well under a tenth of this on the benchmark inputs
            // (1,000,000 items over 10,000 nodes; 10,000 deltas x 16 validators).
            fuel_per_call: 4_000_000_000,
            conformance_fuel: 100_000_000,
            memory_bytes_max: 256 << 20,
            output_bytes_max: 16 << 20,
            // Far above what the fuel can take (`fuel_per_call` burns in 4-7 s on 2
            // cores; BENCHMARKS.md), so that fuel, which is deterministic, ends every
            // call that a busy machine would otherwise cut at the deadline.
            deadline: Duration::from_secs(120),
            // A round runs at most three kinds, each with a fallback chain of at most
            // three stored modules plus the embedded default; proposals come rarely.
            cached_modules_max: 64,
        }
    }
}

/// Why a plugin was refused or its call failed. Every variant is the plugin's fault,
/// never the host's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("the module is {size} bytes; at most {max} are allowed")]
    TooLarge { size: usize, max: usize },
    #[error("not a valid WebAssembly module: {0}")]
    Malformed(String),
    #[error("the module is too costly to compile: {0}")]
    TooComplex(String),
    #[error("the module imports `{0}`; plugins may import nothing")]
    Import(String),
    #[error("{0}")]
    Export(String),
    #[error("the module speaks ABI version {found}; this host speaks {expected}")]
    AbiVersion { found: i32, expected: i32 },
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin ran out of fuel ({0} units)")]
    OutOfFuel(u64),
    #[error("the plugin ran past its {0} ms deadline")]
    Deadline(u128),
    #[error("the plugin tried to grow its memory past {0} bytes")]
    Memory(usize),
    #[error("{0}")]
    Output(String),
    #[error("the output breaks an invariant: {0}")]
    Invariant(String),
}

impl PluginError {
    /// A stable, machine-readable name, used in API errors and fallback events.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::TooLarge { .. } => "plugin_too_large",
            PluginError::Malformed(_) => "plugin_malformed",
            PluginError::TooComplex(_) => "plugin_too_complex",
            PluginError::Import(_) => "plugin_imports",
            PluginError::Export(_) => "plugin_exports",
            PluginError::AbiVersion { .. } => "plugin_abi_version",
            PluginError::Trap(_) => "plugin_trap",
            PluginError::OutOfFuel(_) => "plugin_out_of_fuel",
            PluginError::Deadline(_) => "plugin_deadline",
            PluginError::Memory(_) => "plugin_memory",
            PluginError::Output(_) => "plugin_output",
            PluginError::Invariant(_) => "plugin_invariant",
        }
    }
}

/// A module that compiled, imports nothing, exports the ABI and speaks our version.
pub struct Compiled {
    hash: [u8; 32],
    pre: InstancePre<Sandbox>,
}

impl Compiled {
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("hash", &hex::encode(self.hash))
            .finish_non_exhaustive()
    }
}

/// A checked policy output and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub output: pb::PolicyOutput,
    pub fuel_used: u64,
}

/// What the conformance check learned about a module that passed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conformance {
    pub hash: [u8; 32],
    /// Fuel the reference input took.
    pub fuel_used: u64,
}

/// The per-call store data: the memory limit, and whether it was hit.
struct Sandbox {
    memory_bytes_max: usize,
    memory_exceeded: bool,
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Growing past the cap traps at once, so a memory bomb is reported as one
        // whatever the plugin would have done with a failed `memory.grow`.
        if desired > self.memory_bytes_max {
            self.memory_exceeded = true;
            return Err(wasmtime::Error::msg("memory limit"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

const TABLE_ELEMENTS_MAX: usize = 100_000;

/// Compiled modules by hash, at most `capacity` of them: when full, the least
/// recently used one leaves, so a long-lived server does not keep every module it
/// ever compiled.
struct ModuleCache {
    capacity: usize,
    /// Each module with the tick of its last use.
    entries: HashMap<[u8; 32], (Arc<Compiled>, u64)>,
    ticks: u64,
}

impl ModuleCache {
    fn new(capacity: usize) -> ModuleCache {
        ModuleCache {
            capacity,
            entries: HashMap::new(),
            ticks: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.ticks += 1;
        self.ticks
    }

    fn get(&mut self, hash: &[u8; 32]) -> Option<Arc<Compiled>> {
        let now = self.tick();
        let (compiled, used) = self.entries.get_mut(hash)?;
        *used = now;
        Some(compiled.clone())
    }

    fn insert(&mut self, compiled: Arc<Compiled>) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&compiled.hash) {
            // A linear scan: the cache is small, and a miss compiles a module anyway.
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(hash, _)| *hash);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let now = self.tick();
        self.entries.insert(compiled.hash, (compiled, now));
    }

    fn remove(&mut self, hash: &[u8; 32]) {
        self.entries.remove(hash);
    }
}

/// The sandbox: one engine, a cache of compiled modules, and the limits.
///
/// Cheap to share behind an `Arc`; calls from several threads run in parallel.
pub struct Host {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: Limits,
    cache: Mutex<ModuleCache>,
    slots: Slots,
}

/// A counting semaphore over the pool's instance slots.
struct Slots {
    free: Mutex<u32>,
    released: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().expect("slots lock");
        while *free == 0 {
            free = self.released.wait(free).expect("slots lock");
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().expect("slots lock") += 1;
        self.0.released.notify_one();
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Builds the engine and starts its epoch ticker, which ends with the last clone of
    /// the engine.
    pub fn new(limits: Limits) -> Host {
        let mut config = Config::new();
        config
            // Determinism: every NaN a float operation produces has the same bits,
            // relaxed SIMD is off (a module using it does not validate; were it on,
            // it would give its one deterministic result), and there are no threads
            // (wasmtime is built without the `threads` feature, and a shared memory
            // is refused below).
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            .relaxed_simd_deterministic(true)
            .wasm_memory64(false)
            // The wide-arithmetic proposal: 64 x 64 -> 128-bit multiplies and 128-bit
            // adds as single instructions, which 128-bit money arithmetic needs.
            // Integer-only, so deterministic.
            .wasm_wide_arithmetic(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            // Traps are reported by kind; backtraces would only add noise to the
            // messages that reach events and API errors.
            .wasm_backtrace_max_frames(None);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(CONCURRENT_CALLS)
            .total_memories(CONCURRENT_CALLS)
            .total_tables(CONCURRENT_CALLS)
            .max_memory_size(limits.memory_bytes_max)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).expect("the sandbox configuration is valid");
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning the epoch ticker");
        let linker = Linker::new(&engine);
        Host {
            engine,
            linker,
            limits,
            cache: Mutex::new(ModuleCache::new(limits.cached_modules_max)),
            slots: Slots {
                free: Mutex::new(CONCURRENT_CALLS),
                released: Condvar::new(),
            },
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles `wasm`, or returns the cached compilation of the same bytes.
    ///
    /// Refuses a module that is too large, too costly to compile ([`crate::shape`]) or
    /// malformed, imports anything, lacks an
    /// export of the ABI (or has one of the wrong type), or returns another ABI
    /// version.
    pub fn compile(&self, wasm: &[u8]) -> Result<Arc<Compiled>, PluginError> {
        if wasm.len() > self.limits.module_bytes_max {
            return Err(PluginError::TooLarge {
                size: wasm.len(),
                max: self.limits.module_bytes_max,
            });
        }
        let hash = module_hash(wasm);
        if let Some(compiled) = self.cache.lock().expect("cache lock").get(&hash) {
            return Ok(compiled);
        }
        check_memory_minimum(wasm, self.limits.memory_bytes_max)?;
        crate::shape::check(wasm)?;
        let module = Module::new(&self.engine, wasm)
            .map_err(|e| PluginError::Malformed(format!("{e:#}")))?;
        if let Some(import) = module.imports().next() {
            return Err(PluginError::Import(format!(
                "{}::{}",
                import.module(),
                import.name()
            )));
        }
        check_exports(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| PluginError::Malformed(format!("{e:#}")))?;
        let compiled = Arc::new(Compiled { hash, pre });
        let found = self.abi_version(&compiled)?;
        if found != ABI_VERSION {
            return Err(PluginError::AbiVersion {
                found,
                expected: ABI_VERSION,
            });
        }
        self.cache
            .lock()
            .expect("cache lock")
            .insert(compiled.clone());
        Ok(compiled)
    }

    /// The dry run at proposal time: compiles the module and runs the reference input
    /// of `kind` within [`Limits::conformance_fuel`]; the output must pass [`check`].
    pub fn conformance(&self, kind: PluginKind, wasm: &[u8]) -> Result<Conformance, PluginError> {
        let compiled = self.compile(wasm)?;
        let input = reference::input(kind);
        let outcome = self
            .run_with_fuel(&compiled, &input, self.limits.conformance_fuel)
            // A module that fails the check is not kept: proposals are refused for it.
            .inspect_err(|_| {
                self.cache
                    .lock()
                    .expect("cache lock")
                    .remove(&compiled.hash);
            })?;
        Ok(Conformance {
            hash: compiled.hash,
            fuel_used: outcome.fuel_used,
        })
    }

    /// Runs a policy and checks its output against `input`.
    pub fn run(
        &self,
        compiled: &Compiled,
        input: &pb::PolicyInput,
    ) -> Result<RunOutcome, PluginError> {
        self.run_with_fuel(compiled, input, self.limits.fuel_per_call)
    }

    fn run_with_fuel(
        &self,
        compiled: &Compiled,
        input: &pb::PolicyInput,
        fuel: u64,
    ) -> Result<RunOutcome, PluginError> {
        debug_assert_eq!(check::input(input), Ok(()), "the host built a bad input");
        let (bytes, fuel_used) = self.call_encoded(compiled, &input.encode_to_vec(), fuel)?;
        let output = pb::PolicyOutput::decode(bytes.as_slice())
            .map_err(|e| PluginError::Output(format!("the output is not a PolicyOutput: {e}")))?;
        check::output(input, &output).map_err(PluginError::Invariant)?;
        Ok(RunOutcome { output, fuel_used })
    }

    /// The raw ABI call: writes `input` into a fresh instance, calls `blyan_policy`
    /// and copies the output out, unchecked. Returns the output and the fuel used.
    pub fn call_encoded(
        &self,
        compiled: &Compiled,
        input: &[u8],
        fuel: u64,
    ) -> Result<(Vec<u8>, u64), PluginError> {
        let _slot = self.slots.acquire();
        let mut store = self.store(fuel);
        let outcome = self.call_in(&mut store, compiled, input);
        let outcome = outcome.map_err(|e| self.classify(&store, e, fuel))?;
        let left = store.get_fuel().expect("fuel is enabled");
        Ok((outcome?, fuel - left))
    }

    /// The call itself. The outer error is from wasmtime (a trap, fuel, the deadline);
    /// the inner one is the plugin breaking the ABI.
    fn call_in(
        &self,
        store: &mut Store<Sandbox>,
        compiled: &Compiled,
        input: &[u8],
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let instance = compiled.pre.instantiate(&mut *store)?;
        let memory = instance
            .get_memory(&mut *store, EXPORT_MEMORY)
            .expect("exports were checked at compile time");
        let alloc = instance.get_typed_func::<i32, i32>(&mut *store, EXPORT_ALLOC)?;
        let policy = instance.get_typed_func::<(i32, i32), i64>(&mut *store, EXPORT_POLICY)?;
        let Ok(len) = i32::try_from(input.len()) else {
            return Ok(Err(PluginError::Output("the input exceeds 2 GiB".into())));
        };
        let ptr = alloc.call(&mut *store, len)?;
        if memory
            .write(&mut *store, ptr as u32 as usize, input)
            .is_err()
        {
            return Ok(Err(PluginError::Output(format!(
                "{EXPORT_ALLOC}({len}) returned {ptr}, which leaves no room for the input in memory"
            ))));
        }
        let packed = policy.call(&mut *store, (ptr, len))? as u64;
        let out_ptr = (packed >> 32) as usize;
        let out_len = (packed & 0xffff_ffff) as usize;
        if out_len > self.limits.output_bytes_max {
            return Ok(Err(PluginError::Output(format!(
                "the output is {out_len} bytes; at most {} are allowed",
                self.limits.output_bytes_max
            ))));
        }
        let data = memory.data(&*store);
        match data.get(out_ptr..out_ptr + out_len) {
            Some(bytes) => Ok(Ok(bytes.to_vec())),
            None => Ok(Err(PluginError::Output(format!(
                "the output [{out_ptr}, {}) lies outside the {}-byte memory",
                out_ptr + out_len,
                data.len()
            )))),
        }
    }

    fn abi_version(&self, compiled: &Compiled) -> Result<i32, PluginError> {
        let fuel = self.limits.conformance_fuel;
        let _slot = self.slots.acquire();
        let mut store = self.store(fuel);
        let found = (|| {
            let instance = compiled.pre.instantiate(&mut store)?;
            let version = instance.get_typed_func::<(), i32>(&mut store, EXPORT_ABI_VERSION)?;
            version.call(&mut store, ())
        })();
        found.map_err(|e| self.classify(&store, e, fuel))
    }

    fn store(&self, fuel: u64) -> Store<Sandbox> {
        let mut store = Store::new(
            &self.engine,
            Sandbox {
                memory_bytes_max: self.limits.memory_bytes_max,
                memory_exceeded: false,
            },
        );
        store.limiter(|sandbox| sandbox);
        store.set_fuel(fuel).expect("fuel is enabled");
        let ticks = self.limits.deadline.as_millis() / EPOCH_TICK.as_millis() + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store
    }

    fn classify(&self, store: &Store<Sandbox>, error: wasmtime::Error, fuel: u64) -> PluginError {
        if store.data().memory_exceeded {
            return PluginError::Memory(self.limits.memory_bytes_max);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel(fuel),
            Some(Trap::Interrupt) => PluginError::Deadline(self.limits.deadline.as_millis()),
            Some(trap) => PluginError::Trap(trap.to_string()),
            None => PluginError::Trap(format!("{error:#}")),
        }
    }
}

/// A memory whose initial size is past the cap is a memory bomb at instantiation; the
/// pooling allocator would refuse it at compile time as a malformed module, so it is
/// caught first. Anything unparsable is left to the compiler to report.
fn check_memory_minimum(wasm: &[u8], memory_bytes_max: usize) -> Result<(), PluginError> {
    use wasmtime::wasmparser::{Parser, Payload};
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(Payload::MemorySection(memories)) = payload else {
            if payload.is_err() {
                return Ok(());
            }
            continue;
        };
        for memory in memories.into_iter().flatten() {
            if memory.initial.saturating_mul(WASM_PAGE_BYTES) > memory_bytes_max as u64 {
                return Err(PluginError::Memory(memory_bytes_max));
            }
        }
    }
    Ok(())
}

/// The ABI's exports, each with its exact type.
fn check_exports(module: &Module) -> Result<(), PluginError> {
    use ValType::{I32, I64};
    let functions: [(&str, &[ValType], &[ValType]); 3] = [
        (EXPORT_ABI_VERSION, &[], &[I32]),
        (EXPORT_ALLOC, &[I32], &[I32]),
        (EXPORT_POLICY, &[I32, I32], &[I64]),
    ];
    match module.get_export(EXPORT_MEMORY) {
        Some(ExternType::Memory(memory)) if !memory.is_64() && !memory.is_shared() => {}
        Some(_) => {
            return Err(PluginError::Export(format!(
                "export `{EXPORT_MEMORY}` must be an unshared 32-bit memory"
            )));
        }
        None => {
            return Err(PluginError::Export(format!(
                "the module does not export `{EXPORT_MEMORY}`"
            )));
        }
    }
    for (name, params, results) in functions {
        let signature = format!("{name}: {}", render(params, results));
        let Some(ExternType::Func(func)) = module.get_export(name) else {
            return Err(PluginError::Export(format!(
                "the module does not export the function `{signature}`"
            )));
        };
        let same = |have: &mut dyn ExactSizeIterator<Item = ValType>, want: &[ValType]| {
            have.len() == want.len() && have.zip(want).all(|(have, want)| ValType::eq(&have, want))
        };
        if !same(&mut func.params(), params) || !same(&mut func.results(), results) {
            return Err(PluginError::Export(format!(
                "export `{name}` must have the type `{signature}`"
            )));
        }
    }
    Ok(())
}

fn render(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}
