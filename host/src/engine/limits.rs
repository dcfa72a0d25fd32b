//! What a component may hold before Cranelift sees it.
//!
//! wasmtime gives compilation no memory cap, and Cranelift's memory grows
//! with the size of the function it compiles (times the threads compiling at
//! once) and its time with the code in all. The upload cap
//! (`max_deploy_bytes`) bounds the total; these bound the parts, counted in
//! one pass of the parser, without validating, before any compile starts.
//! What remains unbounded is documented in the README (Storage and compiles): a function
//! under the body limit can still make Cranelift use some hundreds of MiB,
//! and a compile past its deadline runs on (it cannot be interrupted) while
//! its slot stays taken.

use wasmparser::{Parser, Payload};

use super::ComponentError;

/// Functions with bodies, across all core modules of a component. wasmtime
/// allows a million; real components (an interpreter, a JS engine) hold
/// tens of thousands.
pub const MAX_FUNCTIONS: u64 = 100_000;
/// Bytes of one function body. wasmtime allows about 7.6 MB; compilers seldom
/// emit a function over a few hundred KB.
pub const MAX_FUNCTION_BYTES: usize = 2 << 20;
/// Core modules in a component, nested ones included.
pub const MAX_MODULES: u64 = 1_000;

/// Refuses a component over the limits above, saying which.
pub fn check(bytes: &[u8]) -> Result<(), ComponentError> {
    let (mut functions, mut modules) = (0_u64, 0_u64);
    for payload in Parser::new(0).parse_all(bytes) {
        let payload =
            payload.map_err(|err| ComponentError::Invalid(format!("the component does not validate: {err}")))?;
        match payload {
            Payload::ModuleSection { .. } => modules += 1,
            Payload::CodeSectionStart { count, .. } => functions += u64::from(count),
            Payload::CodeSectionEntry(body) if body.range().len() > MAX_FUNCTION_BYTES => {
                return Err(too_big(format!(
                    "a function body of {} bytes (the limit is {MAX_FUNCTION_BYTES})",
                    body.range().len()
                )));
            }
            _ => {}
        }
        if functions > MAX_FUNCTIONS {
            return Err(too_big(format!("more than {MAX_FUNCTIONS} functions")));
        }
        if modules > MAX_MODULES {
            return Err(too_big(format!("more than {MAX_MODULES} core modules")));
        }
    }
    Ok(())
}

fn too_big(what: String) -> ComponentError {
    ComponentError::Invalid(format!("the component has {what}; muon compiles no more; split it or shrink it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component holding one core module whose functions have the given body sizes.
    fn component(bodies: &[usize]) -> Vec<u8> {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        section(&mut module, 1, &[&leb(1)[..], &[0x60, 0, 0]].concat());
        let mut functions = leb(bodies.len());
        functions.extend(std::iter::repeat_n(0, bodies.len()));
        section(&mut module, 3, &functions);
        let mut code = leb(bodies.len());
        for &size in bodies {
            // No locals, then `nop`s, then `end`.
            let mut body = vec![0];
            body.extend(std::iter::repeat_n(0x01, size.saturating_sub(2)));
            body.push(0x0b);
            code.extend(leb(body.len()));
            code.extend(body);
        }
        section(&mut module, 10, &code);
        let mut out = b"\0asm\x0d\0\x01\0".to_vec();
        section(&mut out, 1, &module);
        out
    }

    fn section(out: &mut Vec<u8>, id: u8, contents: &[u8]) {
        out.push(id);
        out.extend(leb(contents.len()));
        out.extend_from_slice(contents);
    }

    fn leb(mut n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn small_components_pass_and_big_functions_are_named() {
        assert!(check(&component(&[10, 20])).is_ok());
        let err = check(&component(&[10, MAX_FUNCTION_BYTES + 10]));
        assert!(matches!(err, Err(ComponentError::Invalid(m)) if m.contains("function body")));
    }

    #[test]
    fn too_many_functions_are_refused() {
        let bodies = vec![2; usize::try_from(MAX_FUNCTIONS).unwrap_or(0) + 1];
        let err = check(&component(&bodies));
        assert!(matches!(err, Err(ComponentError::Invalid(m)) if m.contains("functions")));
    }
}
