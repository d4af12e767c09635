//! glibc's own malloc extensions: `malloc_trim`, `mallinfo2`, `malloc_stats`.

use core::ffi::c_int;
use rseq::ffi::{message, Msg};

/// `malloc_trim(3)`: drains the caches and returns free pages to the OS (`pad` is ignored);
/// 1 if any memory was released, else 0.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc_trim(_pad: usize) -> c_int {
    c_int::from(rseq::trim() > 0)
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo2 {
    /// Bytes of address space obtained from the OS (`mapped`).
    pub arena: usize,
    /// Free chunks: not tracked, 0.
    pub ordblks: usize,
    /// Fastbin chunks: none, 0.
    pub smblks: usize,
    /// Separately mmapped chunks: counted in `arena`, 0.
    pub hblks: usize,
    /// Bytes in separately mmapped chunks: counted in `arena`, 0.
    pub hblkhd: usize,
    /// Always 0 (as in glibc).
    pub usmblks: usize,
    /// Bytes in fastbins: none, 0.
    pub fsmblks: usize,
    /// Bytes handed to the program (`allocated`).
    pub uordblks: usize,
    /// The rest of `arena`: caches, free spans, fragmentation.
    pub fordblks: usize,
    /// Bytes `malloc_trim` could give back now: free spans not yet released.
    pub keepcost: usize,
}

/// `mallinfo2(3)`, filled from `rseq::stats()` (see [`Mallinfo2`] for the mapping).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallinfo2() -> Mallinfo2 {
    let s = rseq::stats();
    Mallinfo2 {
        arena: s.mapped,
        uordblks: s.allocated,
        fordblks: s.mapped.saturating_sub(s.allocated),
        keepcost: s.free.saturating_sub(s.released),
        ..Mallinfo2::default()
    }
}

/// One `name = value` line in glibc's `malloc_stats` format (`%-17s= %10zu`).
fn stats_line(name: &str, v: usize) {
    let mut m = Msg::new();
    m.str(name);
    for _ in name.len()..17 {
        m.str(" ");
    }
    m.str("= ");
    let mut digits = 1;
    let mut t = v / 10;
    while t > 0 {
        digits += 1;
        t /= 10;
    }
    for _ in digits..10 {
        m.str(" ");
    }
    m.dec(v as u64);
    message(&m);
}

/// `malloc_stats(3)`: a few lines on stderr in glibc's format, written without allocating.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc_stats() {
    let s = rseq::stats();
    let mut m = Msg::new();
    m.str("rseqmalloc (rseq mode ")
        .str(s.rseq_mode.name())
        .str(", ")
        .str(s.id_kind())
        .str(", ")
        .dec(s.slabs_in_use as u64)
        .str("/")
        .dec(s.slabs as u64)
        .str(" slabs):");
    message(&m);
    stats_line("system bytes", s.mapped);
    stats_line("in use bytes", s.allocated);
    stats_line("active bytes", s.active);
    stats_line("resident bytes", s.resident);
    stats_line("free bytes", s.free);
    stats_line("released bytes", s.released);
    stats_line("metadata bytes", s.metadata);
}
