//! `librseqmalloc.so`: the C face of rseqmalloc, for `LD_PRELOAD` or linking.
//!
//! Every function here is a thin adapter from a C or C++ allocation symbol, with glibc's
//! semantics, to the core crate's public API (`rseq::malloc`, `rseq::free`, `rseq::calloc`,
//! `rseq::realloc`, `rseq::aligned_alloc`, `rseq::usable_size`, `rseq::trim`, `rseq::stats`,
//! `rseq::rseq_mode`, and `rseq::ffi` for errno, the page size and messages). It uses nothing
//! else of the core.
//!
//! One file per concern:
//! - [`c_api`]: the standard C and POSIX functions (`malloc` … `free_aligned_sized`);
//! - [`glibc`]: glibc's own extensions (`malloc_trim`, `mallopt`, `mallinfo`, `mallinfo2`,
//!   `malloc_info`, `malloc_stats`);
//! - [`own`]: rseqmalloc's own API, declared in `include/rseqmalloc.h`;
//! - [`dlopen`]: `dlopen` without `RTLD_DEEPBIND`, so libraries opened with it share the
//!   allocator;
//! - [`cxx`]: C++ `operator new`/`operator delete`, with their assembly in
//!   `cxx/asm_x86_64.rs` and the nothrow forms' handler loop in `cxx/nothrow.cc`.
//!
//! Exported, and nothing else (`rseqmalloc.map` is the version script, passed by `build.rs` on
//! x86_64; elsewhere rustc's own script exports the same names); `README.md` lists the symbols.
//!
//! # Unwinding
//! No Rust panic ever unwinds into C: every C-facing function is `extern "C"`, and an unwind
//! reaching an `extern "C"` boundary aborts the process (Rust ≥ 1.81, in debug builds too; the
//! release profile is `panic = "abort"` anyway). The core never panics on purpose. The one
//! thing that must unwind *through* us is a C++ exception out of the throwing `operator new`s:
//! see [`cxx`].
//!
//! # No standard library
//! The library is `no_std` where panics abort (the release profile): nothing here needs `std`,
//! and linking it brought its backtrace symbolizer (about 250 KB of text that no allocation
//! runs, but that the loader maps and the kernel's fault-around reads in with its neighbours).
//! Builds with unwinding panics (`cargo test`'s) link `std` for its panic runtime.
#![cfg_attr(panic = "abort", no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![allow(non_snake_case)]

// Without `std`, nothing else asks for the C library by name when the `libc` crate's `std`
// feature is on; `-lc` is glibc's linker script, which adds `libc_nonshared.a` (`atexit`,
// `pthread_atfork`: static wrappers that bind the handler to this library).
#[cfg(panic = "abort")]
#[link(name = "c")]
extern "C" {}

// The precompiled `core` of the aarch64 target carries unwind tables that name
// `rust_eh_personality`, which only `std` defines; GNU ld keeps the reference where rust-lld
// (x86_64) drops it. With `panic = "abort"` nothing ever unwinds through this library, so a
// hidden definition that aborts satisfies the reference without exporting anything.
#[cfg(all(panic = "abort", target_arch = "aarch64"))]
core::arch::global_asm!(
    ".pushsection .text.rseqmalloc_eh_personality,\"ax\",%progbits",
    ".p2align 2",
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    ".type rust_eh_personality, %function",
    "rust_eh_personality:",
    "b abort",
    ".size rust_eh_personality, . - rust_eh_personality",
    ".popsection",
);

/// A panic in the shim or the core (neither panics on purpose) aborts with one line.
#[cfg(panic = "abort")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let mut m = rseq::ffi::Msg::default();
    m.str("rseqmalloc: internal error (panic)");
    rseq::ffi::abort_with(&m)
}

pub mod aliases;
pub mod atfork;
pub mod c_api;
pub mod cxx;
pub mod dlopen;
pub mod glibc;
pub mod next;
pub mod own;
pub mod vfork;

/// Everything the Rust standard library, where it is linked in (unwinding builds), allocates
/// goes straight to the core, not through the exported `malloc`.
#[cfg(panic = "unwind")]
#[global_allocator]
static GLOBAL: rseq::RseqMalloc = rseq::RseqMalloc;
