//! `#[ktest("name")]`: registers an in-kernel test where it is written, so that no test can
//! be left out of a hand-kept list.
//!
//! ```text
//! #[ktest("mm-frames-distinct")]
//! fn frames_distinct() -> TestResult { ... }
//! ```
//!
//! expands to the function unchanged plus `::hal::kernel_test!("mm-frames-distinct",
//! frames_distinct);`, which puts a `hal::ktest::TestCase` for it into the linker section the
//! kernel's test runner reads (see `hal/src/ktest.rs`). The section attribute is `unsafe`, so it
//! is spelled inside hal's macro, not here: the kernel stays `#![deny(unsafe_code)]`.
//!
//! This crate checks what can be checked where the test is written: the name is a string of
//! lowercase letters, digits and inner hyphens (the runner selects tests by `test=kernel:NAME`
//! substrings on the kernel command line), and the function takes no arguments and is a plain
//! `fn` (its type, `fn() -> TestResult`, is checked by the compiler when it is registered).
#![forbid(unsafe_code)]

use proc_macro2::TokenStream;
use quote::quote;
use syn::{ItemFn, LitStr, spanned::Spanned};

/// Registers the function it is put on as the in-kernel test named by its argument.
#[proc_macro_attribute]
pub fn ktest(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The expansion of `#[ktest(attr)] item`, or why the attribute is used wrongly.
fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let name: LitStr = syn::parse2(attr).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected the test's name: #[ktest(\"subsystem-what-it-checks\")]",
        )
    })?;
    check_name(&name.value()).map_err(|why| syn::Error::new(name.span(), why))?;
    let function: ItemFn = syn::parse2(item)?;
    let sig = &function.sig;
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "an in-kernel test takes no arguments",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "an in-kernel test cannot be generic",
        ));
    }
    if let Some(bad) = sig
        .asyncness
        .map(|a| a.span())
        .or(sig.unsafety.map(|u| u.span()))
        .or(sig.abi.as_ref().map(Spanned::span))
    {
        return Err(syn::Error::new(
            bad,
            "an in-kernel test is a plain `fn() -> TestResult`",
        ));
    }
    let ident = &sig.ident;
    Ok(quote! {
        #function
        ::hal::kernel_test!(#name, #ident);
    })
}

/// A test name is non-empty lowercase letters, digits and hyphens, with no hyphen at either
/// end: a word that `test=kernel:FILTER` on the kernel command line can select.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a test name cannot be empty".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "test name {name:?} has {bad:?}: use lowercase letters, digits and hyphens"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("test name {name:?} starts or ends with a hyphen"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::{check_name, expand};

    #[test]
    fn names() {
        for good in ["mm-frames-distinct", "acpi-q35-tables", "x"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "mm frames",
            "Mm-frames",
            "mm_frames",
            "-mm",
            "mm-",
            "mm:x",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn expands_to_the_function_and_its_registration() {
        let out = expand(
            quote!("mm-map-unmap"),
            quote!(
                pub fn map_unmap() -> TestResult {
                    Ok(())
                }
            ),
        )
        .expect("a valid test");
        let text = out.to_string();
        assert!(text.starts_with("pub fn map_unmap ()"), "{text}");
        assert!(
            text.contains(":: hal :: kernel_test ! (\"mm-map-unmap\" , map_unmap) ;"),
            "{text}"
        );
    }

    #[test]
    fn refuses_misuse() {
        let cases = [
            (
                quote!(),
                quote!(
                    fn f() {}
                ),
            ),
            (
                quote!(mm_map),
                quote!(
                    fn f() {}
                ),
            ),
            (
                quote!("a", "b"),
                quote!(
                    fn f() {}
                ),
            ),
            (
                quote!("Bad Name"),
                quote!(
                    fn f() {}
                ),
            ),
            (
                quote!("t"),
                quote!(
                    fn f(x: u8) {}
                ),
            ),
            (
                quote!("t"),
                quote!(
                    fn f<T>() {}
                ),
            ),
            (
                quote!("t"),
                quote!(
                    async fn f() {}
                ),
            ),
            (
                quote!("t"),
                quote!(
                    unsafe fn f() {}
                ),
            ),
            (
                quote!("t"),
                quote!(
                    extern "C" fn f() {}
                ),
            ),
            (
                quote!("t"),
                quote!(
                    struct S;
                ),
            ),
        ];
        for (attr, item) in cases {
            let shown = format!("#[ktest({attr})] {item}");
            assert!(expand(attr, item).is_err(), "accepted {shown}");
        }
    }
}
