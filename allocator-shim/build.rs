//! Passes the version script that makes the malloc API the only exported symbols of
//! `librseqmalloc.so` and the shared object's link options, and compiles the one C++ source
//! (`src/cxx/nothrow.cc`, x86_64).
//!
//! rustc gives the linker its own version script for a cdylib as well (the `#[no_mangle]`
//! symbols, `local: *`); on x86_64 the linker (cc driving rust-lld) merges the two, so the
//! assembly-defined `operator new`s, which rustc does not know about, are exported too. rustc
//! also passes `--no-undefined-version`, so a name in the map that is not defined fails the link.
//! Elsewhere the map is not passed: GNU ld (aarch64's cross linker) refuses a second anonymous
//! version script ("anonymous version tag cannot be combined with other version tags"), and
//! there every export is a Rust `#[no_mangle]` function, which rustc's own script already lists
//! (the same 46 names as the map, checked with the cross toolchain on 2026-11-30). The choice
//! goes by architecture because the toolchains do: x86_64 Linux links with rust-lld by default
//! (since Rust 1.90); an x86_64 build forced onto GNU ld would meet the same refusal.

use std::path::Path;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let map = Path::new(&dir).join("rseqmalloc.map");
    println!("cargo:rerun-if-changed={}", map.display());
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            map.display()
        );
    }
    // DT_SONAME, so a program linked against the library records `librseqmalloc.so.0`: the
    // major version (0 while the C ABI may still change; bumped on any incompatible change).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librseqmalloc.so.0");
    // Never unloaded: memory it handed out would outlive it (dlclose of an allocator).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");

    // The nothrow operator new's handler loop, in C++ (see the file); not linked to libstdc++.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        println!("cargo:rerun-if-changed=src/cxx/nothrow.cc");
        cc::Build::new()
            .cpp(true)
            .cpp_link_stdlib(None)
            .file("src/cxx/nothrow.cc")
            .flag("-fvisibility=hidden")
            .compile("rseqmalloc_nothrow");
    }
}
