//! Attribute macros behind `muon_sdk::handler`, `muon_sdk::streaming_handler`,
//! `muon_sdk::preprocessor` and `muon_sdk::training_step`. Each checks the signature and reports a wrong
//! one with a spanned error that says what is expected.

// Functions are written against these docs alone.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ItemImpl, parse_macro_input};

/// Makes `fn(muon_sdk::Request) -> impl muon_sdk::IntoResponse` the component's handler.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    let expected =
        "a #[muon_sdk::handler] function looks like `fn name(req: muon_sdk::Request) -> impl muon_sdk::IntoResponse`";
    let arg_type = match check_fn(attr.is_empty(), &function, expected, 1) {
        Ok(ty) => ty,
        Err(err) => return err.to_compile_error().into(),
    };
    let name = &function.sig.ident;
    quote! {
        #function

        #[doc(hidden)]
        struct __MuonHandler;

        impl ::muon_sdk::__bindings::handler::exports::muon::function::handle::Guest for __MuonHandler {
            fn handle(request: ::muon_sdk::Request) -> ::muon_sdk::Response {
                let request: #arg_type = request;
                ::muon_sdk::IntoResponse::into_response(#name(request))
            }
        }

        ::muon_sdk::__bindings::handler::export!(__MuonHandler with_types_in ::muon_sdk::__bindings::handler);
    }
    .into()
}

/// Makes `fn(muon_sdk::Request, muon_sdk::BodyWriter)` the component's
/// streaming handler: it writes its response as it goes.
#[proc_macro_attribute]
pub fn streaming_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    let expected = "a #[muon_sdk::streaming_handler] function looks like \
                    `fn name(req: muon_sdk::Request, out: muon_sdk::BodyWriter)`";
    let arg_type = match check_fn(attr.is_empty(), &function, expected, 2) {
        Ok(ty) => ty,
        Err(err) => return err.to_compile_error().into(),
    };
    let name = &function.sig.ident;
    quote! {
        #function

        #[doc(hidden)]
        struct __MuonStreamingHandler;

        impl ::muon_sdk::__bindings::streaming::exports::muon::function::stream_handle::Guest for __MuonStreamingHandler {
            fn handle(request: ::muon_sdk::Request) {
                let request: #arg_type = request;
                #name(request, ::muon_sdk::BodyWriter::new());
            }
        }

        ::muon_sdk::__bindings::streaming::export!(__MuonStreamingHandler with_types_in ::muon_sdk::__bindings::streaming);
    }
    .into()
}

/// Makes `fn(muon_sdk::RawRecord) -> Result<Vec<muon_sdk::NamedTensor>, E: Display>`
/// the component's preprocessor.
#[proc_macro_attribute]
pub fn preprocessor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    let expected = "a #[muon_sdk::preprocessor] function looks like \
                    `fn name(input: muon_sdk::RawRecord) -> Result<Vec<muon_sdk::NamedTensor>, impl Display>`";
    let arg_type = match check_fn(attr.is_empty(), &function, expected, 1) {
        Ok(ty) => ty,
        Err(err) => return err.to_compile_error().into(),
    };
    let name = &function.sig.ident;
    quote! {
        #function

        #[doc(hidden)]
        struct __MuonPreprocessor;

        impl ::muon_sdk::__bindings::preprocessor::exports::muon::function::preprocess::Guest for __MuonPreprocessor {
            fn preprocess(input: ::muon_sdk::RawRecord) -> ::core::result::Result<::std::vec::Vec<::muon_sdk::NamedTensor>, ::std::string::String> {
                let input: #arg_type = input;
                ::muon_sdk::__private::guest_result(#name(input))
            }
        }

        ::muon_sdk::__bindings::preprocessor::export!(__MuonPreprocessor with_types_in ::muon_sdk::__bindings::preprocessor);
    }
    .into()
}

/// Put on `impl muon_sdk::TrainingStep for T`: makes `T` the component's training step.
#[proc_macro_attribute]
pub fn training_step(attr: TokenStream, item: TokenStream) -> TokenStream {
    let block = parse_macro_input!(item as ItemImpl);
    if !attr.is_empty() {
        return syn::Error::new(proc_macro2::Span::call_site(), "#[muon_sdk::training_step] takes no arguments")
            .to_compile_error()
            .into();
    }
    let implements_trait = block
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|segment| segment.ident == "TrainingStep");
    if !implements_trait {
        return syn::Error::new(
            block.self_ty.span(),
            "#[muon_sdk::training_step] goes on `impl muon_sdk::TrainingStep for YourType { ... }`",
        )
        .to_compile_error()
        .into();
    }
    let self_ty = &block.self_ty;
    quote! {
        #block

        #[doc(hidden)]
        struct __MuonTrainingStep;

        impl ::muon_sdk::__bindings::training::exports::muon::function::train::Guest for __MuonTrainingStep {
            fn init(config: ::std::string::String) -> ::core::result::Result<::std::vec::Vec<::muon_sdk::NamedTensor>, ::std::string::String> {
                <#self_ty as ::muon_sdk::TrainingStep>::init(&config)
            }

            fn step(
                parameters: ::std::vec::Vec<::muon_sdk::NamedTensor>,
                batch: ::std::vec::Vec<::muon_sdk::NamedTensor>,
                hyper_parameters: ::std::vec::Vec<(::std::string::String, f64)>,
            ) -> ::core::result::Result<::muon_sdk::StepOutput, ::std::string::String> {
                <#self_ty as ::muon_sdk::TrainingStep>::step(parameters, batch, ::muon_sdk::HyperParameters(hyper_parameters))
            }

            fn steps(
                parameters: ::std::vec::Vec<::muon_sdk::NamedTensor>,
                batches: ::std::vec::Vec<::std::vec::Vec<::muon_sdk::NamedTensor>>,
                hyper_parameters: ::std::vec::Vec<(::std::string::String, f64)>,
            ) -> ::core::result::Result<::muon_sdk::StepsOutput, ::std::string::String> {
                <#self_ty as ::muon_sdk::TrainingStep>::steps(parameters, batches, ::muon_sdk::HyperParameters(hyper_parameters))
            }

            fn evaluate(
                parameters: ::std::vec::Vec<::muon_sdk::NamedTensor>,
                batch: ::std::vec::Vec<::muon_sdk::NamedTensor>,
            ) -> ::core::result::Result<::muon_sdk::Evaluation, ::std::string::String> {
                <#self_ty as ::muon_sdk::TrainingStep>::evaluate(parameters, batch)
            }
        }

        ::muon_sdk::__bindings::training::export!(__MuonTrainingStep with_types_in ::muon_sdk::__bindings::training);
    }
    .into()
}

/// Checks the shape of an exported function (`arity` arguments) and returns
/// the type of its first.
fn check_fn(attr_is_empty: bool, function: &ItemFn, expected: &str, arity: usize) -> syn::Result<Box<syn::Type>> {
    if !attr_is_empty {
        return Err(syn::Error::new(proc_macro2::Span::call_site(), "this attribute takes no arguments"));
    }
    let sig = &function.sig;
    if sig.asyncness.is_some() {
        return Err(syn::Error::new(sig.asyncness.span(), format!("{expected}; it cannot be async")));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(sig.generics.span(), format!("{expected}; it cannot be generic")));
    }
    let count = if arity == 1 { "exactly one argument" } else { "exactly two arguments" };
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            Err(syn::Error::new(receiver.span(), format!("{expected}; it cannot take self")))
        }
        Some(FnArg::Typed(arg)) if sig.inputs.len() == arity => Ok(arg.ty.clone()),
        _ => Err(syn::Error::new(sig.inputs.span(), format!("{expected}; it takes {count}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str) -> Result<(), String> {
        let function: ItemFn = syn::parse_str(source).map_err(|e| e.to_string())?;
        check_fn(true, &function, "expected shape", 1).map(|_| ()).map_err(|e| e.to_string())
    }

    #[test]
    fn good_signatures_pass() {
        assert_eq!(check("fn f(req: Request) -> Response { todo() }"), Ok(()));
    }

    #[test]
    fn a_streaming_handler_takes_two_arguments() {
        let two: ItemFn = syn::parse_quote!(
            fn f(req: Request, out: BodyWriter) {}
        );
        assert!(check_fn(true, &two, "streaming", 2).is_ok());
        let one: ItemFn = syn::parse_quote!(
            fn f(req: Request) {}
        );
        let err = check_fn(true, &one, "streaming", 2).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("exactly two arguments"), "{err}");
    }

    #[test]
    fn wrong_signatures_name_the_problem() {
        let cases = [
            ("async fn f(req: Request) -> Response { todo() }", "cannot be async"),
            ("fn f<T>(req: T) -> Response { todo() }", "cannot be generic"),
            ("fn f() -> Response { todo() }", "exactly one argument"),
            ("fn f(a: Request, b: u32) -> Response { todo() }", "exactly one argument"),
        ];
        for (source, expected) in cases {
            let err = check(source).err().unwrap_or_default();
            assert!(err.contains(expected) && err.contains("expected shape"), "{source}: {err}");
        }
    }
}
