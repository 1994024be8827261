//! The conformance check of a proposed plugin, in a child process with hard limits.
//!
//! The shape check (`blyan_plugin_host::shape`) refuses, before anything compiles,
//! the module shapes whose compile cost is known to explode. What it lets through is
//! bounded here. The check runs in `blyan-ledger check-plugin`, a child of the server
//! that:
//!
//! - caps its own data segment (`RLIMIT_DATA`: the compiler's heap and the module's
//!   linear memory, but not the address space the sandbox reserves and never touches);
//! - caps its own CPU time (`RLIMIT_CPU`);
//! - is killed by the server at a wall-clock deadline.
//!
//! A module that reaches a limit takes only the child down; the proposal is refused
//! with the limit's code and the server goes on. One check runs at a time, so a burst
//! of proposals queues instead of taking every core.

use std::borrow::Cow;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use blyan_sdk::model::{PluginKind, limits};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

/// What a child may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLimits {
    /// Wall-clock time from the child's start to its verdict.
    pub timeout_ms: u64,
    /// The child's data segment: heap and touched linear memory.
    pub memory_bytes: u64,
}

impl Default for ChildLimits {
    fn default() -> ChildLimits {
        ChildLimits {
            // The default plugins check in about 0.1 s; a 3.6 MB module of
            // straight-line code that the shape check lets through takes about 4 s
            // (BENCHMARKS.md). Below the request timeout, so that the check's own
            // limit answers, not the request's.
            timeout_ms: 20_000,
            // A module's linear memory may reach 256 MiB; the compiler needs the rest.
            memory_bytes: 1 << 30,
        }
    }
}

/// What the child prints: the verdict of `Host::conformance`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
enum Verdict {
    Conformant { fuel_used: u64 },
    Refused { code: String, message: String },
}

/// Why a proposal did not pass the check.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The module ran and failed: the sandbox's own code (`plugin_trap`, ...).
    #[error("{message}")]
    Refused { code: String, message: String },
    #[error("checking the module took longer than {0} ms")]
    Timeout(u64),
    #[error(
        "checking the module ran out of its limits ({} MiB of memory, {} s of CPU): the child {status}",
        .limits.memory_bytes >> 20, cpu_seconds(.limits)
    )]
    Limit {
        limits: ChildLimits,
        status: std::process::ExitStatus,
    },
    #[error("the conformance check could not run: {0}")]
    Child(String),
}

impl ConformanceError {
    /// A stable, machine-readable name for API errors.
    pub fn code(&self) -> Cow<'static, str> {
        match self {
            ConformanceError::Refused { code, .. } => code.clone().into(),
            ConformanceError::Timeout(_) => "plugin_check_timeout".into(),
            ConformanceError::Limit { .. } => "plugin_check_limit".into(),
            ConformanceError::Child(_) => "internal_error".into(),
        }
    }
}

/// The CPU seconds a child may use: its wall-clock time, rounded up, and one more, so
/// that the server's deadline, which names the limit, comes first.
fn cpu_seconds(limits: &ChildLimits) -> u64 {
    limits.timeout_ms.div_ceil(1_000) + 1
}

/// Runs checks in children of this binary, one at a time.
#[derive(Debug)]
pub struct Conformer {
    exe: PathBuf,
    limits: ChildLimits,
    one_at_a_time: tokio::sync::Semaphore,
}

impl Conformer {
    /// Children run `exe check-plugin`: the server's own binary, as
    /// [`Conformer::own_binary`] names it.
    pub fn new(exe: PathBuf, limits: ChildLimits) -> Conformer {
        Conformer {
            exe,
            limits,
            one_at_a_time: tokio::sync::Semaphore::new(1),
        }
    }

    /// The binary this process runs: the very file, even once a package upgrade has
    /// replaced or deleted it (`/proc/self/exe` on Linux).
    pub fn own_binary() -> std::io::Result<PathBuf> {
        let proc_self = PathBuf::from("/proc/self/exe");
        if proc_self.exists() {
            Ok(proc_self)
        } else {
            std::env::current_exe()
        }
    }

    /// Checks `wasm` as a plugin of `kind` on the reference input, in a child.
    pub async fn check(&self, kind: PluginKind, wasm: &[u8]) -> Result<(), ConformanceError> {
        let _turn = self
            .one_at_a_time
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let child_error = |error: std::io::Error| ConformanceError::Child(error.to_string());
        let mut child = tokio::process::Command::new(&self.exe)
            .arg("check-plugin")
            .args(["--kind", kind.name()])
            .args(["--memory-bytes", &self.limits.memory_bytes.to_string()])
            .args(["--cpu-seconds", &cpu_seconds(&self.limits).to_string()])
            // mimalloc reserves 1 GiB of writable address space up front by default,
            // which `RLIMIT_DATA` counts; the child reserves as it goes instead.
            .env("MIMALLOC_ARENA_RESERVE", "16MiB")
            // A child that runs out of memory must die at once, not try to allocate a
            // backtrace first.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(child_error)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let timeout = Duration::from_millis(self.limits.timeout_ms);
        let run = async {
            // A child that dies before reading everything closes the pipe: its exit
            // status says why.
            match stdin.write_all(wasm).await {
                Ok(()) => drop(stdin),
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => drop(stdin),
                Err(error) => return Err(error),
            }
            child.wait_with_output().await
        };
        // On the deadline the future, and with it the child, is dropped: killed.
        let output = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| ConformanceError::Timeout(self.limits.timeout_ms))?
            .map_err(child_error)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            tracing::warn!(status = %output.status, %stderr, "a conformance check ended abnormally");
            // Killed by a signal: the CPU limit (SIGXCPU) or an allocation past the
            // memory limit (SIGABRT). Any other exit is the server's own failure.
            use std::os::unix::process::ExitStatusExt as _;
            return Err(match output.status.signal() {
                Some(_) => ConformanceError::Limit {
                    limits: self.limits,
                    status: output.status,
                },
                None => ConformanceError::Child(format!("the child {}: {stderr}", output.status)),
            });
        }
        match serde_json::from_slice(&output.stdout) {
            Ok(Verdict::Conformant { fuel_used }) => {
                tracing::debug!(%kind, fuel_used, "a proposed plugin passed the conformance check");
                Ok(())
            }
            Ok(Verdict::Refused { code, message }) => {
                Err(ConformanceError::Refused { code, message })
            }
            Err(error) => Err(ConformanceError::Child(format!(
                "the child's verdict is unreadable: {error}"
            ))),
        }
    }
}

/// The child's side, `blyan-ledger check-plugin`: limits itself, reads a module from
/// stdin, checks it and prints the verdict as JSON. It exits 0 with either verdict;
/// anything else means it hit a limit.
pub fn run_child(kind: PluginKind, memory_bytes: u64, cpu_seconds: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Never above what the server itself may use (a service manager's limits).
    let lowered = |resource: Resource, limit: u64| -> nix::Result<()> {
        let (_, hard) = getrlimit(resource)?;
        let limit = limit.min(hard);
        setrlimit(resource, limit, limit)
    };
    lowered(Resource::RLIMIT_DATA, memory_bytes)?;
    lowered(Resource::RLIMIT_CPU, cpu_seconds)?;
    // A child killed at a limit leaves no core dump of hundreds of MiB behind.
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    let mut wasm = Vec::new();
    std::io::stdin()
        .take(limits::PLUGIN_BYTES_MAX as u64 + 1)
        .read_to_end(&mut wasm)?;
    let verdict = match crate::policy::host().conformance(kind, &wasm) {
        Ok(conformance) => Verdict::Conformant {
            fuel_used: conformance.fuel_used,
        },
        Err(error) => Verdict::Refused {
            code: error.code().to_string(),
            message: error.to_string(),
        },
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &verdict)?;
    stdout.flush()?;
    Ok(())
}
