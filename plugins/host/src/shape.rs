//! Bounds on a module's shape, checked before it is compiled.
//!
//! Cranelift's compile time and memory grow with a function's locals times its
//! branches: one function of 5,000 locals and 20,000 branches (80 KB) takes 6.1 s to
//! compile here, and 100 functions of 2,000 × 2,000 (800 KB) 9.3 s, long before
//! fuel or the deadline can do anything. The default plugins stay two orders of
//! magnitude under these bounds: at most 46 locals, 813 branches and 26,862 locals ×
//! branches in one function, 56,468 summed over a module, 144 functions.

use wasmtime::wasmparser::{Operator, Parser, Payload};

use crate::PluginError;

/// Functions with a body.
pub const FUNCTIONS_MAX: u64 = 20_000;
/// Locals declared by one function (parameters not counted).
pub const LOCALS_MAX: u64 = 10_000;
/// Bytes of one function body.
pub const FUNCTION_BODY_BYTES_MAX: u64 = 1 << 20;
/// One function's locals (plus one) times its branches (plus one).
pub const LOCALS_TIMES_BRANCHES_MAX: u64 = 5_000_000;
/// The sum of that product over every function of the module.
pub const MODULE_LOCALS_TIMES_BRANCHES_MAX: u64 = 20_000_000;

/// Refuses, as [`PluginError::TooComplex`], a module whose shape would make it costly
/// to compile. A module that does not parse is left to the compiler, which names
/// what is wrong with it.
pub fn check(wasm: &[u8]) -> Result<(), PluginError> {
    let too_complex = |what: String| Err(PluginError::TooComplex(what));
    let mut functions = 0u64;
    let mut module_cost = 0u64;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(Payload::CodeSectionEntry(body)) = payload else {
            if payload.is_err() {
                return Ok(());
            }
            continue;
        };
        functions += 1;
        if functions > FUNCTIONS_MAX {
            return too_complex(format!("more than {FUNCTIONS_MAX} functions"));
        }
        let index = functions - 1;
        let range = body.range();
        let body_bytes = (range.end - range.start) as u64;
        if body_bytes > FUNCTION_BODY_BYTES_MAX {
            return too_complex(format!(
                "function {index} has a body of {body_bytes} bytes; at most {FUNCTION_BODY_BYTES_MAX}"
            ));
        }
        let Ok(locals_reader) = body.get_locals_reader() else {
            return Ok(());
        };
        let mut locals = 0u64;
        for local in locals_reader {
            let Ok((count, _)) = local else {
                return Ok(());
            };
            locals += u64::from(count);
            if locals > LOCALS_MAX {
                return too_complex(format!(
                    "function {index} declares more than {LOCALS_MAX} locals"
                ));
            }
        }
        let Ok(mut operators) = body.get_operators_reader() else {
            return Ok(());
        };
        let mut branches = 0u64;
        while !operators.eof() {
            let Ok(operator) = operators.read() else {
                return Ok(());
            };
            branches += match operator {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::Else
                | Operator::Br { .. }
                | Operator::BrIf { .. } => 1,
                Operator::BrTable { targets } => u64::from(targets.len()) + 1,
                _ => 0,
            };
        }
        let cost = (locals + 1) * (branches + 1);
        if cost > LOCALS_TIMES_BRANCHES_MAX {
            return too_complex(format!(
                "function {index} has {locals} locals and {branches} branches; their product may be at most {LOCALS_TIMES_BRANCHES_MAX}"
            ));
        }
        module_cost += cost;
        if module_cost > MODULE_LOCALS_TIMES_BRANCHES_MAX {
            return too_complex(format!(
                "locals times branches summed over the functions exceeds {MODULE_LOCALS_TIMES_BRANCHES_MAX}"
            ));
        }
    }
    Ok(())
}
