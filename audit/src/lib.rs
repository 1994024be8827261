//! The sdk's audit replay as a WebAssembly module, for the explorer page.
//!
//! Who uses it: the page at `/` (server/src/explorer/index.html) loads it from
//! `/explorer/audit.wasm` and pushes every record it reads, from seq 0, in the bytes
//! the server sent (`EventRecord`, from `GET /v1/events?format=proto` and the
//! WebSocket). Each push runs [`Replayer::push_checked`] with [`ReplayChecks::AUDIT`]:
//! the chain, every command signature, every checkpoint's Merkle root and signature,
//! and every cause decided again by the sdk's own state machine. After each record the
//! page reads the state root and compares it with the one `GET /v1/head` publishes, so
//! the page checks what `blyan replay` checks, up to the last record it read, without
//! trusting the server. (A cause whose follow-ups the server has not logged yet is
//! checked once they come: the audit of the next record would refuse a missing one.)
//!
//! The interface is a few C functions over two buffers of the module's memory, an
//! input and an output, so the page needs no generated glue: the caller asks for room
//! ([`blyan_audit_input`]), writes a record there, and calls [`blyan_audit_push`];
//! [`blyan_audit_root`] and a failed push leave their answer in the output buffer
//! ([`blyan_audit_output`], [`blyan_audit_output_len`]). The first failure is final:
//! every later push fails with it.

use std::cell::RefCell;

use blyan_sdk::replay::{CheckedRecord, ReplayChecks, Replayer};

/// One audit of one log.
struct Audit {
    replayer: Replayer,
    input: Vec<u8>,
    output: Vec<u8>,
    failure: Option<String>,
}

impl Audit {
    fn new() -> Audit {
        Audit {
            replayer: Replayer::new(ReplayChecks::AUDIT),
            input: Vec::new(),
            output: Vec::new(),
            failure: None,
        }
    }

    /// Checks and applies the record in `input`; the reason it does not continue the
    /// log, otherwise.
    fn push(&mut self) -> Result<(), String> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let applied = CheckedRecord::decode(self.replayer.len(), &self.input)
            .and_then(|checked| self.replayer.push_checked(&checked))
            .map_err(|error| error.to_string());
        if let Err(failure) = &applied {
            self.failure = Some(failure.clone());
        }
        applied
    }
}

thread_local! {
    static AUDIT: RefCell<Audit> = RefCell::new(Audit::new());
}

/// Room for the next record's `len` bytes; the caller writes them at the address this
/// returns before it calls [`blyan_audit_push`].
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn blyan_audit_input(len: u32) -> *mut u8 {
    AUDIT.with_borrow_mut(|audit| {
        audit.input.clear();
        audit.input.resize(len as usize, 0);
        audit.input.as_mut_ptr()
    })
}

/// Checks and applies the record in the input buffer: 1 if it continues the log, 0 if
/// not, with the reason, UTF-8, in the output buffer.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn blyan_audit_push() -> u32 {
    AUDIT.with_borrow_mut(|audit| match audit.push() {
        Ok(()) => 1,
        Err(reason) => {
            audit.output = reason.into_bytes();
            0
        }
    })
}

/// Puts the state root after the records applied (32 bytes) in the output buffer, and
/// returns its address.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn blyan_audit_root() -> *const u8 {
    AUDIT.with_borrow_mut(|audit| {
        audit.output = audit.replayer.state().root().to_vec();
        audit.output.as_ptr()
    })
}

/// The output buffer's address.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn blyan_audit_output() -> *const u8 {
    AUDIT.with_borrow(|audit| audit.output.as_ptr())
}

/// The output buffer's length.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn blyan_audit_output_len() -> u32 {
    AUDIT.with_borrow(|audit| audit.output.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(bytes: &[u8]) -> Result<(), String> {
        AUDIT.with_borrow_mut(|audit| {
            audit.input = bytes.to_vec();
            audit.push()
        })
    }

    #[test]
    fn the_first_failure_is_final_and_applies_nothing() {
        let empty = AUDIT.with_borrow(|audit| audit.replayer.state().root());
        assert_eq!(empty, blyan_sdk::core::State::default().root());
        let failure = push(b"not a record").unwrap_err();
        assert!(failure.contains("seq 0"), "{failure}");
        // A well-formed record after it fails alike: the audit stopped.
        let record = blyan_sdk::record::Record::seal(0, [0; 32], 1, Vec::new()).encode();
        assert_eq!(push(&record), Err(failure));
        assert_eq!(AUDIT.with_borrow(|audit| audit.replayer.len()), 0);
        assert_eq!(
            AUDIT.with_borrow(|audit| audit.replayer.state().root()),
            empty
        );
    }

    #[test]
    fn a_record_that_is_not_a_genesis_does_not_start_a_log() {
        let record = blyan_sdk::record::Record::seal(0, [0; 32], 1, Vec::new()).encode();
        let failure = push(&record).unwrap_err();
        assert_eq!(
            AUDIT.with_borrow(|audit| audit.replayer.len()),
            0,
            "{failure}"
        );
        assert_eq!(blyan_audit_push(), 0);
        let output = AUDIT.with_borrow(|audit| String::from_utf8(audit.output.clone()).unwrap());
        assert_eq!(output, failure);
    }
}
