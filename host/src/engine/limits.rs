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

    /// A component holding one core module whose functions have the given
    /// body sizes in bytes (no locals, then `nop`s, then `end`).
    fn component(bodies: &[usize]) -> Vec<u8> {
        use wasm_encoder::{
            CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection, TypeSection,
        };
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        for &size in bodies {
            functions.function(0);
            let mut body = Function::new([]);
            // The empty locals vector and the `end` take one byte each.
            for _ in 0..size.saturating_sub(2) {
                body.instruction(&Instruction::Nop);
            }
            body.instruction(&Instruction::End);
            code.function(&body);
        }
        let mut module = Module::new();
        module.section(&types).section(&functions).section(&code);
        let mut component = Component::new();
        component.section(&ModuleSection(&module));
        component.finish()
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
