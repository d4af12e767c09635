//! Passes the version script that makes the malloc API the only exported symbols of
//! `librseqmalloc.so`, and the shared object's link options.
//!
//! rustc gives the linker its own version script for a cdylib as well (the `#[no_mangle]`
//! symbols, `local: *`); the linker (cc driving rust-lld, or GNU ld) merges the two, so the
//! assembly-defined `operator new`s, which rustc does not know about, are exported too. rustc
//! also passes `--no-undefined-version`, so a name in the map that is not defined fails the link.

use std::path::Path;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let map = Path::new(&dir).join("rseqmalloc.map");
    println!("cargo:rerun-if-changed={}", map.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
    // DT_SONAME, so a program linked against the library records `librseqmalloc.so`.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librseqmalloc.so");
    // Never unloaded: memory it handed out would outlive it (dlclose of an allocator).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
