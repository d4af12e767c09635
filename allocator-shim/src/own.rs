//! rseqmalloc's own C API, declared in `include/rseqmalloc.h`.

use core::ffi::{c_char, c_int, c_void, CStr};

/// `struct rseqmalloc_stats` (include/rseqmalloc.h): the C layout of [`rseq::Stats`]'s
/// single-number figures. Versioned by size: fields are only ever appended, and a caller gets
/// the prefix its own `sizeof` covers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RseqmallocStats {
    /// Bytes in objects handed to the program.
    pub allocated: usize,
    /// Bytes in spans in use.
    pub active: usize,
    /// Resident set size of the process.
    pub resident: usize,
    /// Address space mapped by the allocator.
    pub mapped: usize,
    /// Bytes of free spans returned to the OS.
    pub released: usize,
    /// Bytes in free spans (released or not).
    pub free: usize,
    /// Bytes of allocator metadata.
    pub metadata: usize,
    /// `enum rseqmalloc_rseq_mode`: 0 uninitialized, 1 glibc, 2 own, 3 fallback.
    pub rseq_mode: i32,
    /// 1 if the per-CPU slabs are indexed by `mm_cid`, 0 if by cpu id.
    pub uses_mm_cid: i32,
    /// rseq critical sections restarted.
    pub restarts: u64,
    /// Operations served by the locked fallback path.
    pub fallback_ops: usize,
    /// Per-CPU slabs (possible CPU or concurrency ids).
    pub slabs: usize,
    /// Slabs touched so far.
    pub slabs_in_use: usize,
    /// Of `restarts`, those of the batch sections (appended in 0.1.1's layout: 104 bytes).
    pub batch_restarts: u64,
}

const _: () = assert!(core::mem::size_of::<RseqmallocStats>() == 104);

impl From<&rseq::Stats> for RseqmallocStats {
    fn from(s: &rseq::Stats) -> Self {
        RseqmallocStats {
            allocated: s.allocated,
            active: s.active,
            resident: s.resident,
            mapped: s.mapped,
            released: s.released,
            free: s.free,
            metadata: s.metadata,
            rseq_mode: s.rseq_mode as i32,
            uses_mm_cid: i32::from(s.uses_mm_cid),
            restarts: s.restarts,
            fallback_ops: s.fallback_ops,
            slabs: s.slabs,
            slabs_in_use: s.slabs_in_use,
            batch_restarts: s.batch_restarts,
        }
    }
}

/// Fills the first `min(out_size, sizeof(struct rseqmalloc_stats))` bytes of `*out` and returns
/// that count; with a null `out`, returns the library's `sizeof(struct rseqmalloc_stats)`.
///
/// # Safety
/// `out` is null or valid for writing `out_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_stats(out: *mut RseqmallocStats, out_size: usize) -> usize {
    let full = core::mem::size_of::<RseqmallocStats>();
    if out.is_null() {
        return full;
    }
    let r = RseqmallocStats::from(&rseq::stats());
    let n = out_size.min(full);
    // SAFETY: `r` is a local of `full >= n` bytes; the caller gives `n <= out_size` writable
    // bytes at `out` (any alignment: bytes are copied).
    unsafe { core::ptr::copy_nonoverlapping((&raw const r).cast::<u8>(), out.cast::<u8>(), n) };
    n
}

/// The rseq mode as a static string: "glibc", "own", "fallback" or "uninitialized".
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_rseq_mode() -> *const c_char {
    rseq::rseq_mode().c_name().as_ptr()
}

/// `rseq::VERSION`, NUL-terminated.
static VERSION: [u8; rseq::VERSION.len() + 1] = {
    let mut v = [0; rseq::VERSION.len() + 1];
    let mut i = 0;
    while i < rseq::VERSION.len() {
        v[i] = rseq::VERSION.as_bytes()[i];
        i += 1;
    }
    v
};

/// The library's version as a static string, e.g. "0.1.0" (`RSEQMALLOC_VERSION` in the header
/// it was built with).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// Same as `malloc_usable_size`.
///
/// # Safety
/// As for `malloc_usable_size`.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: forwarded contract.
    unsafe { rseq::usable_size(ptr.cast()) }
}

/// Drains the caller's per-CPU cache (every CPU's without rseq) and the central caches, and
/// returns all free pages to the OS; returns the bytes released.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_trim() -> usize {
    rseq::trim()
}

/// Runs a control command (`rseq::ctl`: read or set an option, `options`, `version`,
/// `stats.NAME`, `purge`, `flush`) and writes its answer, NUL-terminated, into `out`
/// (`out_size` bytes; `out` may be null when the answer is not wanted). Returns 0, or
/// `ENOENT` (unknown), `EINVAL` (malformed), `EPERM` (start-up only), `ERANGE` (the answer
/// does not fit; the command did run).
///
/// # Safety
/// `command` is a NUL-terminated string; `out` is null or valid for `out_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_ctl(
    command: *const c_char,
    out: *mut c_char,
    out_size: usize,
) -> c_int {
    if command.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller gives a NUL-terminated string.
    let command = unsafe { CStr::from_ptr(command) }.to_bytes();
    let mut answer = [0u8; 1024];
    let n = match rseq::ctl(command, &mut answer) {
        Ok(n) => n,
        Err(e) => return e.errno(),
    };
    if out.is_null() || out_size == 0 {
        return 0;
    }
    if n >= out_size {
        return libc::ERANGE;
    }
    answer[n] = 0;
    // SAFETY: `n + 1 <= out_size` bytes into the caller's buffer.
    unsafe { core::ptr::copy_nonoverlapping(answer.as_ptr(), out.cast::<u8>(), n + 1) };
    0
}
