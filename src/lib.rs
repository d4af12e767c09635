//! rseqmalloc: a general-purpose memory allocator for Linux whose fast path is a per-CPU cache
//! guarded by restartable sequences (rseq).
//!
//! Allocation and free of a cached object are a handful of instructions on the current CPU's
//! own stack: no atomic read-modify-write, no lock. Per-CPU caches keep memory bounded by the
//! CPUs that run, not by the threads that exist. Where rseq is unavailable the same caches run
//! under per-CPU locks behind small per-thread magazines. Bad frees (a pointer never handed
//! out, an interior pointer, a double free through the C API) abort with one line naming the
//! pointer. The crate is `no_std` and depends only on `libc` and (without its `std` feature)
//! `crossbeam-utils`.
//!
//! # Use
//!
//! ```
//! use rseqmalloc::RseqMalloc;
//!
//! #[global_allocator]
//! static GLOBAL: RseqMalloc = RseqMalloc;
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     assert_eq!(v.len(), 1000);
//!     println!("rseqmalloc {} in rseq mode {}", rseqmalloc::VERSION, rseqmalloc::rseq_mode().name());
//! }
//! ```
//!
//! C and C++ programs use the same allocator as `librseqmalloc.so` (the `rseqmalloc-shim`
//! crate), preloaded (`LD_PRELOAD`) or linked (`scripts/install.sh`, `pkg-config rseqmalloc`);
//! it exports the whole malloc API with glibc's semantics and every C++ `operator new`/`delete`.
//! The C-shaped functions here ([`malloc`], [`free`], [`calloc`], [`realloc`],
//! [`aligned_alloc`], [`usable_size`], [`trim`]) are what it forwards to.
//!
//! # Options
//!
//! Read once at start-up, without allocating, from a string compiled into the program
//! ([`options!`]) and then from the environment variable `RSEQMALLOC_OPTIONS`
//! (`key=value,...`), which overrides it key by key. `RSEQMALLOC_OPTIONS=help` lists them; an
//! unknown key or a malformed value prints one warning line and the previous value is kept.
//! [`options()`] gives the options in effect; those marked *run time* can be changed with
//! [`ctl`].
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `rseq` | `on` | `off` forces the locked fallback path |
//! | `decay_ms` | `1000` | free pages go back to the OS after this long (0: at once); *run time* |
//! | `cpu_cache_bytes` | `512k` | byte bound of one per-CPU cache (`k`/`m`/`g`, at least `4k`); one thread's bursts may take twice as much more (the burst tier); *run time* |
//! | `dirty_max` | `unbounded` | free pages kept resident at most; past it a freed span is released at once; *run time* |
//! | `huge_pages` | `system` | `system`: no advice; `auto`: `madvise` HUGEPAGE on whole heap chunks after the first (once the heap has mapped a second whole 32 MiB chunk); `always`/`never`: (NO)HUGEPAGE on every chunk; *run time* |
//! | `stats` | `none` | `text`/`json`: statistics at exit; *run time* |
//! | `stats_file` | unset | the statistics go to this file (`%p`: pid) instead of stderr |
//! | `stats_classes` | `off` | the text report lists every size class in use; *run time* |
//! | `verbose` | `off` | one line at start-up: version, rseq mode, id kind, options |
//! | `background_thread` | `off` | a thread runs the decay tick too, so an idle program gives memory back (from the program's second thread on) |
//! | `membarrier` | `on` | `off`: drain as on a kernel without the rseq membarrier (testing) |
//! | `deepbind` | `strip` | `librseqmalloc.so` only: `dlopen` drops `RTLD_DEEPBIND`; `keep` passes it on |
//! | `owner_return` | `on` | a C `free` of an object another CPU's cache carved sends it back there (rseq modes) |
//! | `owned_spans` | `on` | C allocations of the classes of 288–960 B (32–256 B once idle) use spans each CPU's cache owns (rseq modes with the membarrier, fallback mode) |
//!
//! ```
//! // Defaults compiled into this program; RSEQMALLOC_OPTIONS still overrides them.
//! rseqmalloc::options!("decay_ms=250");
//! # fn main() {}
//! ```
//!
//! The output the options ask for (warnings, the start-up line, reports) is whole lines
//! written with one `write(2)`, never raises `SIGPIPE`, and goes to the stderr the program
//! started with, never into a file the program later opened on descriptor 2. The one line
//! before an abort (a bad free) goes to descriptor 2 as it is then, as glibc's does.
//!
//! # Statistics and control
//!
//! [`stats()`] returns a [`Stats`] snapshot (allocated, active and resident bytes with their
//! peaks, mapped, free and released bytes, per-class and per-CPU figures, the rseq mode).
//! `stats=text` prints a short report at exit (sizes in KiB/MiB/GiB, each line starting with
//! `rseqmalloc[<pid>]:`), `stats=json` one JSON line with exact bytes (schema
//! [`JSON_SCHEMA`]). [`ctl`] reads and sets options, reads figures, purges free memory and
//! flushes the calling thread's caches:
//!
//! ```
//! let mut out = [0u8; 64];
//! let n = rseqmalloc::ctl(b"decay_ms=250", &mut out).unwrap();
//! assert_eq!(n, 0);
//! let n = rseqmalloc::ctl(b"decay_ms", &mut out).unwrap();
//! assert_eq!(&out[..n], b"250");
//! rseqmalloc::ctl(b"purge", &mut out).unwrap(); // drain every cache, give free pages back
//! ```
//!
//! # Modes
//!
//! [`rseq_mode()`] says how the per-CPU caches are protected, chosen once per process:
//! - [`RseqMode::Glibc`]: glibc (2.35 and later) registered rseq; its area is used.
//! - [`RseqMode::Own`]: nobody registered rseq (e.g. `GLIBC_TUNABLES=glibc.pthread.rseq=0`);
//!   each thread registers the allocator's own area.
//! - [`RseqMode::Fallback`]: rseq is off (`rseq=off`) or unavailable (old kernel, seccomp,
//!   valgrind): the same caches under per-CPU locks, behind per-thread magazines.
//!
//! Slabs are indexed by the kernel's dense concurrency id (`mm_cid`, Linux 6.3 and later) when
//! available, else by CPU number.
//!
//! # Platforms
//!
//! Linux only. x86_64 runs the rseq fast path and is where rseqmalloc is tested; aarch64 builds
//! and runs in the locked fallback mode; other architectures stop at compile time. The
//! toolchain is pinned to Rust 1.95.
//!
//! # Internals
//!
//! `src/README.md` gives the order of the layers (each calls only those below it): `os` (every
//! system call), `sync` (atomics and locks), `arch` (the thread block, rseq registration, the
//! critical sections in assembly), then the size classes, page map, spans, page heap, central
//! lists and the per-CPU caches (`percpu/`, one file per concern), under this public API.
//! `docs/design.md` gives the design. Nothing reachable from an allocation uses the global
//! allocator: the crate is `no_std`, and debug builds abort on re-entrancy.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod arch;
mod central;
mod config;
mod control;
pub mod ffi;
mod free_tag;
mod guard;
mod os;
mod page_heap;
mod pagemap;
mod percpu;
mod report;
mod size_class;
mod span;
mod stats;
mod sync;
mod version;

/// Unit tests that act on process-wide allocator state other unit tests change too hold this
/// for their whole body: a real per-CPU slab (two test threads pinned to one CPU share it when
/// slabs are indexed by CPU: a kernel before 6.3, or `membarrier=off`), and the central lists'
/// shared transfer budget (which those tests' objects pass through), and the central tests that
/// look at a transfer stack another test's `flush_transfer` may empty.
#[cfg(test)]
fn serial_test() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs this test binary's ignored test `test` alone in a child process, with `var` set to
/// `value` (the child's marker: a fresh heap, or an abort that must not end this process).
#[cfg(test)]
fn run_child(test: &str, var: &str, value: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--include-ignored"])
        // No background thread or other option from the caller's environment.
        .env_remove("RSEQMALLOC_OPTIONS")
        .env(var, value)
        .output()
        .unwrap()
}

/// Runs `test` in a fresh child ([`run_child`], with `var` set) and asserts it passed; a
/// no-op in that child, whose own copy of the calling test sees `var`.
#[cfg(test)]
fn passes_in_a_fresh_child(test: &str, var: &str) {
    if std::env::var_os(var).is_some() {
        return;
    }
    let out = run_child(test, var, "1");
    let stdout = std::string::String::from_utf8_lossy(&out.stdout);
    let stderr = std::string::String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{stderr}"
    );
}

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;

pub use config::{options, CompiledOptions, HugePages, Options, StatsAtExit};
pub use control::{ctl, CtlError};
pub use report::JSON_SCHEMA;
pub use version::VERSION;

use page_heap::{HEAP, HUGE_MIN};
use pagemap::PAGEMAP;
pub use percpu::RseqMode;
use size_class::{class_for, size_of};
pub use size_class::{MAX_SMALL, PAGE};
use span::{Span, SpanState};
pub use stats::{stats, Stats, MAX_REPORTED_CPUS};
use sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// The allocator, for `#[global_allocator]`.
pub struct RseqMalloc;

/// Alignment `malloc` guarantees (`alignof(max_align_t)` on x86_64 Linux): 16 bytes, or 8 for
/// requests of at most 8 bytes (no type needing 16 fits there).
#[inline(always)]
const fn c_align(size: usize) -> usize {
    if size <= 8 {
        8
    } else {
        16
    }
}

/// Which rseq mode the per-CPU caches run in (`Uninitialized` before the first allocation).
pub fn rseq_mode() -> RseqMode {
    percpu::mode()
}

/// Allocates `size` bytes aligned to `align` (a power of two). Null if the size is impossible
/// or memory is exhausted.
///
/// `TAG` selects double-free detection, which the C API has and Rust's `GlobalAlloc` does not
/// need (a double `dealloc` is already undefined behaviour the compiler rules out in safe code):
/// a small object freed through a tagging path carries a random per-process tag in its second
/// word; a tagging allocation clears it, a tagging free checks and sets it. Objects freed
/// without the tag never trip the check, and objects allocated without clearing it are never
/// freed through the C API, so the two kinds of path can share every cache.
///
/// The fast path is this function: a class lookup and a per-CPU pop. Everything else is one
/// out-of-line call, so the inlined path needs no stack frame (C `malloc` saves no register;
/// Rust's `alloc`, which keeps the size and alignment for its cold call, saves one).
#[inline(always)]
fn alloc_inner<const TAG: bool>(size: usize, align: usize) -> *mut u8 {
    let c = class_for(size, align);
    alloc_class::<TAG>(c, || alloc_cold::<TAG>(size, align, c))
}

/// [`alloc_inner`] with the class already chosen (`c`, which may be 0 for a large request);
/// `cold` does the rest when the per-CPU pop cannot (its arguments computed there, not on the
/// fast path).
#[inline(always)]
fn alloc_class<const TAG: bool>(c: usize, cold: impl FnOnce() -> *mut u8) -> *mut u8 {
    if c != 0 {
        if TAG && percpu::owned_routes_fixed(c) {
            // Owned spans (`owned_spans=on`, the classes of 288-960 B; a routed small class comes
            // after its stack pop fails, below; C requests up to 1 KiB test every route first,
            // `alloc_c_table_class`): in `alloc_owned_out` (the slow path in
            // `alloc_owned_slow`), out of line, so that this path keeps needing no stack frame
            // (inlined here, the owned pop cost the default build's one-thread churn 1.05x its
            // time, session 45).
            return alloc_owned_out(c);
        }
        let p = percpu::pop(c);
        if !p.is_null() {
            return handed_out::<TAG>(p, c);
        }
        if TAG && percpu::owned_routes(c) {
            // A small class the thread routed once idle (`percpu::owned::route_idle`): its
            // stack holds only what its owned pushes declined.
            return alloc_owned_out(c);
        }
    }
    cold()
}

/// A C allocation of class `c` with owned spans on (`percpu::owned_routes`): the stack, then the
/// current owned span's list, then the slow path (which refills from owned spans). The object
/// is noted, then its first word (its link, or a stale one) and its tag are cleared, in one
/// store after the note's ([`handed_out`]: the link's clearing in the pop, before the note's
/// stores, and the tag's after them, cost one thread's `mixed-bursts` 1.03-1.04x the CPU time,
/// docs/benchmarks.md, "Session 66"). What [`alloc_class`] calls for a class owned spans
/// route, out of line; apart from [`alloc_cold`] (where it lived until session 52, behind a
/// second test of the class's range and the thread's owned flag, which `alloc_class` has just
/// tested). The slow path and its `ENOMEM` are a function of their own, which this one jumps
/// to: with no call of its own, this one saves no register (it saved three; with the pop's one
/// output, its key read from its symbol, and `free`'s frame gone, one thread's `mixed-bursts`
/// took 0.98-0.99x the CPU time, not resolved part by part).
///
/// The stack first: with owned spans on, a routed class's stack holds only what did not go onto
/// an owned span's list: objects of other slabs' spans that owner return kept here, this
/// slab's own objects sent home (the inbox, among them those of a span taken partly used that
/// its old home still had out), Rust's frees, and the slow path's refills from the transfer
/// stack (blocks `realloc` moved out too, until session 73). Popped after the list, those
/// objects waited while the slab carved its own spans further (`rounds`, two CPUs, peak RSS:
/// 5,568 KB against 5,228 with owned spans off; stack first 5,316, in no more time:
/// docs/benchmarks.md, "Session 47"). The
/// stack's test is inside the owned pop (`percpu::owned_pop_stack_first`): where little
/// reaches the stack, an allocation runs one section, not a failed stack pop and then the owned
/// pop (`mixed-bursts` on one CPU 0.985x [0.877-0.997] the time, 8 alternations:
/// docs/benchmarks.md, "Session 52").
#[inline(never)]
fn alloc_owned_out(c: usize) -> *mut u8 {
    let p = percpu::owned_pop_stack_first(c);
    if p.is_null() {
        return alloc_owned_slow(c);
    }
    handed_out::<true>(p, c)
}

/// [`alloc_owned_out`] when the pop found nothing: the slow path, or `ENOMEM`.
#[inline(never)]
fn alloc_owned_slow(c: usize) -> *mut u8 {
    let p = retried_after_refusal(size_of(c), || percpu::alloc_slow(c, true));
    if p.is_null() {
        return oom();
    }
    handed_out::<true>(p, c)
}

/// Clears the first word of a small object being handed out by a C allocation: an object that
/// was on an owned span's list and went back to its span's bitmap whole (a span given back,
/// turned over or drained) may still hold its encoded link, which would give the free tag's key
/// away, and one popped off a list holds its link. Every C path that hands out a small object
/// clears it, whatever the class: since session 63 the classes of 32-256 B have owned spans on
/// the threads that route them, and their objects reach every thread's stack (found by review).
#[inline(always)]
fn clear_link(p: *mut u8) {
    // SAFETY: a small object being handed out (every class is at least 16 bytes).
    unsafe { p.cast::<usize>().write(0) };
}

/// A small object of class `c` off a stack, an owned span's list, a magazine or the slow path, as
/// it is handed out: for a C allocation (`TAG`) noted as the thread's last and its first word
/// cleared ([`clear_link`]); its tag cleared ([`clear_tag`]). The two clearing stores come
/// after the note's and compile to one (the compiler merges them where nothing lies between).
#[inline(always)]
fn handed_out<const TAG: bool>(p: *mut u8, c: usize) -> *mut u8 {
    if TAG {
        arch::note_alloc(p, c);
        clear_link(p);
    }
    clear_tag::<TAG>(p)
}

/// Clears the double-free tag of a small object being handed out (when `TAG`).
#[inline(always)]
fn clear_tag<const TAG: bool>(p: *mut u8) -> *mut u8 {
    if TAG {
        // SAFETY: a small object being handed out (every class is at least 16 bytes).
        unsafe { free_tag::clear(p) };
    }
    p
}

/// Everything [`alloc_inner`] does not do inline: refills, set-up, fallback, large objects.
/// `c` is `class_for(size, align)`, which the fast path already computed (recomputing it here
/// cost fallback mode, where every allocation comes here, about a quarter of its `malloc`).
#[cold]
#[inline(never)]
fn alloc_cold<const TAG: bool>(size: usize, align: usize, c: usize) -> *mut u8 {
    debug_assert_eq!(c, class_for(size, align));
    if c == 0 {
        return alloc_large(size, align);
    }
    if TAG && percpu::owned_routes(c) {
        // `alloc_class` sends such a class to `alloc_owned_out` itself (a fixed one before its
        // stack pop, a small one the thread routed once its pop failed); it arrives here only
        // when the thread's routes changed between the two (its set-up, a signal handler's
        // first allocation, or a route added by a handler's slow path).
        return alloc_owned_out(c);
    }
    let mut p = percpu::alloc_from_magazine(c); // fallback mode's common case
    if p.is_null() {
        p = retried_after_refusal(size_of(c), || percpu::alloc_slow(c, false));
        if p.is_null() {
            return oom();
        }
    }
    // Noted like a pop's object: owner return asks for the class of the thread's last small
    // allocation, whichever path served it. Noted only by pops, a thread whose allocations of
    // a class all refilled (its first on a slab, a class with no room there) kept the class
    // before as its note, and owner return's choice for that thread's next foreign frees
    // followed the wrong class (session 35).
    handed_out::<TAG>(p, c)
}

#[cold]
fn oom() -> *mut u8 {
    os::set_errno(libc::ENOMEM);
    null_mut()
}

/// Called when a request of `size` bytes found no memory (the OS refused a mapping: a chunk for
/// the page heap, a huge block, a span record or a page-map leaf): when giving memory back can
/// make room (`os::memory_limited`: a finite `RLIMIT_AS` or `RLIMIT_DATA` no smaller than
/// `size`, or strict overcommit), gives back what the allocator holds free, as `malloc_trim(0)`
/// does but without moving the calling thread to other CPUs or setting it up ([`trim_with`],
/// `percpu::drain_all_in_place`) and unmapping every long free run, and returns whether that
/// gave anything back (address space unmapped, or pages free in the heap that were not), so
/// that the caller tries its request once more.
///
/// Why: under such a limit the memory a program freed sat in the caches, in partly used spans
/// and in free runs too short for a big block, and a request glibc serves (it gives its heap's
/// top back as blocks are freed) failed. A breaker run in session 70 found it (under
/// `RLIMIT_AS` 300 MiB, a 150 MiB block after fills of small and mid-sized blocks, each freed,
/// failed in every run in fallback mode and in about one of four in the rseq modes, with 254
/// MiB of the 256 mapped free); `allocator-shim/tests/conformance/rlimit_fills.c` (a 120 MiB
/// block 300 MiB above the program's use) failed in every run, in every mode. A refused request
/// under a limit pays for the trim (the caches' objects back to their spans, every free page
/// released: about 3 ms with 50 MiB freed, found by review); one without a limit (an impossible
/// size, or one past the limit) pays two `getrlimit` calls. `errno` is kept: the caller sets
/// `ENOMEM` if the retry fails too.
#[cold]
#[inline(never)]
fn gave_back_after_refusal(size: usize) -> bool {
    let _errno = os::ErrnoKeeper::new();
    if !os::memory_limited(size) {
        return false;
    }
    let before = HEAP.lock().stats();
    trim_with(percpu::drain_all_in_place, 0);
    let after = HEAP.lock().stats();
    after.mapped < before.mapped || after.free > before.free
}

/// `attempt` (a slow path's request of `size` bytes, null when it found no memory), once more
/// when it failed and [`gave_back_after_refusal`] gave something back: the one way every slow
/// path that can be refused memory (a small class's, a large or huge block's) retries.
#[inline(always)]
fn retried_after_refusal<T>(size: usize, attempt: impl Fn() -> *mut T) -> *mut T {
    let p = attempt();
    if p.is_null() && gave_back_after_refusal(size) {
        attempt()
    } else {
        p
    }
}

#[cold]
#[inline(never)]
fn alloc_large(size: usize, align: usize) -> *mut u8 {
    alloc_large_with(size, align, size)
}

/// A large or huge block of `size` bytes with room to grow to `reserve` bytes without moving
/// (`realloc`'s growth margin; `reserve <= size` for none): heap pages for a large block,
/// uncharged address space for a huge one. A huge request the OS refuses (an address-space
/// limit) is served from free heap spans when one is long enough.
fn alloc_large_with(size: usize, align: usize, reserve: usize) -> *mut u8 {
    if size > isize::MAX as usize - 2 * HUGE_MIN || align > 1 << 40 {
        return oom();
    }
    let size = size.max(1);
    percpu::maybe_start_background();
    percpu::maybe_tick();
    let s = retried_after_refusal(size, || large_span(size, align, reserve));
    if s.is_null() {
        return oom();
    }
    // SAFETY: `s` is a live span record just made for this block, which only this thread knows
    // about; its first page is ours to write.
    unsafe {
        // A record may come back from a block freed another way (`realloc` moving it out):
        // only `calloc` sets it, for the block it hands out.
        (*s).calloc_probe = false;
        if !(*s).zeroed {
            // The pages may have held free small objects, whose free tag (docs/design.md, "A
            // small object's state") could sit at offset 8 of this block; `realloc` copies a
            // block's bytes at their offsets, so a move into a small block at this very
            // address would carry the tag and make that live block look freed. Cleared here,
            // no block is handed out with a stale tag at offset 8 (small ones clear it too).
            free_tag::clear((*s).start as *mut u8);
        }
        (*s).start as *mut u8
    }
}

/// [`alloc_large_with`]'s span, under the heap lock: a large block's span with its usable size
/// set, or a huge block's; null when the OS refused the memory.
fn large_span(size: usize, align: usize, reserve: usize) -> *mut Span {
    let mut heap = HEAP.lock();
    // A block whose alignment padding alone reaches the huge size is mapped (and charged) as a
    // huge one too: `memalign(2^36, 100)` gets the answer glibc gets.
    let s = if size >= HUGE_MIN || align >= HUGE_MIN {
        let s = heap.alloc_huge(size, align, reserve);
        if s.is_null() {
            heap.alloc_large_from_free(size.div_ceil(PAGE), align.max(PAGE))
        } else {
            s
        }
    } else {
        // With the growth margin if the heap has it, else (an address-space limit) exactly.
        let pages = reserve.clamp(size, isize::MAX as usize / 2).div_ceil(PAGE);
        let s = heap.alloc_span(pages, align.max(PAGE), 0, SpanState::Large);
        if s.is_null() && pages > size.div_ceil(PAGE) {
            heap.alloc_span(size.div_ceil(PAGE), align.max(PAGE), 0, SpanState::Large)
        } else {
            s
        }
    };
    // SAFETY: a non-null `s` is a live span record just made, under the heap lock we hold.
    if !s.is_null() && unsafe { (*s).state } == SpanState::Large {
        // SAFETY: as above.
        unsafe { (*s).usable = (*s).bytes() };
    }
    s
}

/// Like `alloc_inner`, but the memory reads as zero.
fn alloc_zeroed_inner<const TAG: bool>(size: usize, align: usize) -> *mut u8 {
    if class_for(size, align) != 0 && !(TAG && size > CALLOC_LAZY_ABOVE) {
        let p = alloc_inner::<TAG>(size, align);
        if !p.is_null() {
            // SAFETY: `p` holds at least `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        return p;
    }
    measure_calloc_probe();
    let p = alloc_large(size, align);
    if !p.is_null() {
        let s = pagemap::span_of(PAGEMAP.get(p as usize)) as *mut Span;
        // SAFETY: `p` starts a live large or huge span that only this thread knows about.
        unsafe {
            if !(*s).zeroed {
                p.write_bytes(0, size);
            } else if size < HUGE_MIN {
                if populates_zeroed() {
                    // Known zero, so nothing to clear; but a program that uses its zeroed block
                    // whole takes a fault per page (two if it reads before it writes), which
                    // cost more than the clearing would: fault it in writable with one call
                    // instead. Only while the program's zeroed blocks are seen used densely
                    // ([`populates_zeroed`]): a sparse table would be made resident whole.
                    let _errno = os::ErrnoKeeper::new();
                    os::populate_write(p, size.next_multiple_of(os::OS_PAGE));
                } else {
                    // Left lazy: the next zeroed block's `calloc`, or its free, measures how
                    // much of it the program touched.
                    (*s).calloc_probe = true;
                    CALLOC_PROBE.store(probe_word(p, size), Ordering::Relaxed);
                }
            }
            (*s).zeroed = false;
        }
    }
    p
}

#[cold]
#[inline(never)]
fn bad_pointer(who: &str, what: &str, ptr: *mut u8) -> ! {
    let mut m = os::Msg::new();
    m.str(who).str("(): ").str(what).str(" ").hex(ptr as u64);
    os::abort_with(&m)
}

/// What the page map says about `ptr`: its small-object class and span, after checking the
/// pointer is the start of an object. Aborts (naming `who`) for a pointer we never handed out.
///
/// The check needs no access to the span: a small-object page's entry carries its index in the
/// span, which gives the pointer's offset from the span's start.
#[inline(always)]
fn lookup(ptr: *mut u8, who: &str) -> (usize, *mut Span) {
    let (c, e) = checked_class(ptr, who);
    if e == 0 {
        bad_pointer(who, "invalid pointer", ptr);
    }
    (c, pagemap::span_of(e) as *mut Span)
}

/// The page map's entry `e` for `ptr` and the size class it names (0: none — null, a large
/// or huge object, or not ours), as `(class, entry)`; when the class is not 0, `ptr` has been
/// checked to start an object of it (else this aborts, naming `who`). `realloc`'s fast path
/// leaves the entry-0 case to its cold path; [`lookup`] aborts on it. (`free` makes the same
/// checks itself, [`free_inner`], to abort through a jump.)
#[inline(always)]
fn checked_class(ptr: *mut u8, who: &str) -> (usize, usize) {
    let e = PAGEMAP.get(ptr as usize);
    let c = pagemap::class_of(e);
    if c != 0 {
        check_object(ptr, e, c, who);
    }
    (c, e)
}

/// Aborts (naming `who`) unless `ptr` starts an object of class `c` (not 0) in the page
/// whose page-map entry is `e`.
#[inline(always)]
fn check_object(ptr: *mut u8, e: usize, c: usize, who: &str) {
    // An object boundary, in the part of the page where objects of the class exist (carved,
    // and ending inside the span).
    if !pagemap::is_object_start(ptr as usize, e, c) {
        bad_pointer(who, "invalid pointer", ptr);
    }
}

/// Frees a small object of class `c` (checking and setting the double-free tag if `TAG`).
/// `e` is its page-map entry, or 0 where the caller read none: for a C free (`TAG`) its home
/// bits send an object of another slab's span home (owner return, [`free_foreign`]), tested
/// inside the push (`percpu::push_homed`). A C free here (`realloc`'s moves; [`free_inner`]
/// tags and routes C `free`s itself) of a class owned spans serve goes onto its span's owned
/// list, as `free` puts it ([`free_owned`]); Rust's `dealloc` (and `free_inner` for it) pushes
/// onto the stack.
///
/// Why `realloc`'s moves take the owned list: the owner's push of a span's last object out
/// gives the span back (or keeps it for reuse) at once. On the stack, a block moved out reached
/// its span only through an overflow, and a span so emptied waited for its owner's sweep, at
/// most one a maintenance tick. 20,000 buffers grown by realloc a few bytes a round for 48
/// rounds (30 MB live at the end) peaked at 96 MB, every owned class they passed through
/// keeping its spans; 59 MB this way (glibc's malloc 36, mimalloc 2.0 52, jemalloc 76), and
/// perl appending to 20,000 strings 86 MB, now 63 (conformance `regrow.c`; docs/benchmarks.md,
/// "Session 73").
///
/// # Safety
/// `ptr` is a live object of class `c`; a non-zero `e` is the entry the caller read for it
/// (and checked: `checked_class`, `free_inner`).
#[inline(always)]
unsafe fn free_small<const TAG: bool>(ptr: *mut u8, c: usize, e: usize, who: &str) {
    if !TAG {
        // No tag, and no home test: the object goes to this slab's cache whichever slab's
        // span it is in.
        // SAFETY: forwarded contract: a live object of class `c`, which nobody uses now.
        return unsafe { push_here(c, ptr) };
    }
    // SAFETY: forwarded contract.
    unsafe { mark_freed::<TAG>(ptr, who) };
    if percpu::owned_routes(c) {
        // SAFETY: forwarded contract: an object of class `c`, tagged free with the key; the
        // entry is read again, since the callers here may have read none.
        return unsafe { free_owned(ptr, PAGEMAP.get(ptr as usize), free_tag::key()) };
    }
    // SAFETY: forwarded contract.
    unsafe { free_marked(ptr, c, e, || {}) }
}

/// A C `free` of an object of a class owned spans serve (`percpu::owned_routes`), already
/// tagged free by [`free_inner`] with `key` (the free tag's key, kept for the object's link):
/// onto its span's owned list when the page map's entry `e` names this slab as the span's home
/// and this CPU's slab owns it, else as any C free ([`free_marked`]).
///
/// Given neither the class nor the caller's name: the tag is checked before, and nothing but
/// the push section's own operands stays live across the section (the span record is derived
/// from its owned words afterwards, the entry read again when the push declines), so that
/// `free` saves no register for it. Together with the section's own cuts (`arch::owned_push`)
/// and the tag check moved out of it, the free phase of `benches/c/burst_threads.c` held at
/// 500 B took 0.90x the time, and with no register saved 0.975x of that (docs/benchmarks.md,
/// "Session 61"). Out of line until session 66: since `free`'s aborts are jumps
/// ([`free_rejected`]), `free` saves no register either, and inlined here its owned frees
/// skip a jump through the GOT and a second load of the thread block's offset (with the owned
/// pop's changes, one thread's `mixed-bursts` 0.98-0.99x the CPU time, not resolved part by
/// part: docs/benchmarks.md, "Session 66").
///
/// # Safety
/// `ptr` is an object of a class owned spans serve, tagged free, that nobody uses; `e` is the
/// entry `free_inner` read for it; `key` is the free tag's key.
#[inline(always)]
unsafe fn free_owned(ptr: *mut u8, e: usize, key: usize) {
    let (span, home) = (
        pagemap::span_of(e) as *mut Span,
        pagemap::home_bits_unmasked(e),
    );
    // SAFETY: forwarded contract: a free object, tagged free, of the span `e` names.
    if unsafe { !percpu::owned_push(ptr, span, home, key) } {
        // SAFETY: forwarded contract.
        unsafe { free_owned_declined(ptr) }
    }
}

/// [`free_owned`] when the owned push declined the object (another slab's span, a span this
/// slab does not own, a drain at work, or rseq off): as any C free once tagged, with the
/// page-map entry read again (kept across the push, it cost `free_owned` a saved register; the
/// foreign frees of `rounds` and `larson`, which come here, took the same time either way).
/// Out of line, so that `free_owned` needs no registers for this path's calls.
///
/// # Safety
/// As for [`free_owned`].
#[inline(never)]
unsafe fn free_owned_declined(ptr: *mut u8) {
    let e = PAGEMAP.get(ptr as usize);
    // Fallback mode: onto its span's list under the owning slab's lock.
    // SAFETY: forwarded contract; `e` is the object's entry, which names its span.
    if unsafe { percpu::free_owned_locked(ptr, pagemap::span_of(e) as *mut Span) } {
        return;
    }
    let c = pagemap::class_of(e);
    // The foreign objects counted: a class whose owned pushes decline another slab's objects
    // is churned across CPUs (`percpu::note_owned_declined`).
    // SAFETY: forwarded contract.
    unsafe { free_marked(ptr, c, e, || percpu::note_owned_declined(c)) }
}

/// The rest of a C [`free_small`] once the object is tagged free: the push with owner return's
/// home test, and what follows it; `foreign` runs first when the home test finds the object
/// another slab's ([`free_owned_declined`] counts those).
///
/// # Safety
/// `ptr` is an object of class `c`, tagged free, that nobody uses; `e` as for [`free_small`].
#[inline(always)]
unsafe fn free_marked(ptr: *mut u8, c: usize, e: usize, foreign: impl FnOnce()) {
    match percpu::push_homed(c, ptr, pagemap::home_bits_unmasked(e)) {
        arch::Push::Done => {}
        // SAFETY: forwarded contract.
        arch::Push::Full => unsafe { free_small_cold(c, ptr) },
        arch::Push::Foreign => {
            foreign();
            // SAFETY: forwarded contract; the object is tagged free now.
            unsafe { free_foreign(c, ptr) }
        }
    }
}

/// Pushes `ptr`, a free object of class `c` (already tagged if it is to be), onto this slab's
/// cache with no home test; a full stack, set-up or the fallback go to [`free_small_cold`].
///
/// # Safety
/// `ptr` is a free object of class `c` that nobody uses.
#[inline(always)]
unsafe fn push_here(c: usize, ptr: *mut u8) {
    if !percpu::push(c, ptr) {
        // SAFETY: forwarded contract.
        unsafe { free_small_cold(c, ptr) }
    }
}

/// [`free_small`] of an object whose span's home is another slab: pushes it here when owner
/// return keeps it (`percpu::keeps_foreign`); else reads the page map again (the entry is not
/// kept live across the push, which would cost `free` saved registers) and appends the object
/// to the thread's outbox (`percpu::send_home`), or, when that cannot be done in a few
/// instructions, hands it to `percpu::free_foreign`.
///
/// Not `#[cold]`: every foreign free of a thread that hands objects back comes here, and a
/// lean function `free` jumps to (no saved registers, no call on the append, no read of the
/// span record) took a producer on one CPU and its consumer on another 0.82–0.92x the time of
/// the path through `percpu::free_foreign` alone (docs/benchmarks.md, "Session 24").
///
/// # Safety
/// `ptr` is an object of class `c` in a live small span, tagged free, that nobody uses.
#[inline(never)]
unsafe fn free_foreign(c: usize, ptr: *mut u8) {
    if percpu::keeps_foreign(c) {
        // Kept where it is freed: pushed here at once, without the page map's second read
        // (session 34: a thread whose cache holds another slab's objects of the class it
        // allocates, after a move, went this way on each of their frees).
        // SAFETY: forwarded contract.
        return unsafe { push_here(c, ptr) };
    }
    // errno: kept by `percpu::free_foreign` around its paths that may make system calls.
    let e = PAGEMAP.get(ptr as usize);
    debug_assert!(pagemap::class_of(e) == c && pagemap::home_bits(e) != 0);
    let span = pagemap::span_of(e) as *const Span;
    // SAFETY: forwarded contract; the bits come from the entry just read, which names a home:
    // the push found one there, and a carved page's home bits change only from one home to
    // another while objects are out (`central::take_span_to_own`, with a slab's id).
    if unsafe { !percpu::send_home(c, ptr, pagemap::home_bits(e)) } {
        // SAFETY: forwarded contract: the entry names the object's live small span.
        unsafe { percpu::free_foreign(c, ptr, span) }
    }
}

/// C frees only (`TAG`): aborts if the small object carries its free tag (see `free_tag`),
/// else tags it. The allocation path clears the tag when it hands the object out again.
///
/// # Safety
/// `ptr` is an object of a small class (at least 16 bytes).
#[inline(always)]
unsafe fn mark_freed<const TAG: bool>(ptr: *mut u8, who: &str) {
    // SAFETY: the caller's contract: a small object, whose second word is ours once freed.
    // The caller loaded (acquire) and checked the page-map entry (`checked_class`, on its own
    // or through `lookup`), as `mark_free_with` asks.
    if TAG && unsafe { !free_tag::mark_free_with(ptr, free_tag::key()) } {
        bad_pointer(who, "double free detected", ptr);
    }
}

/// Frees a block `realloc` moved out of its class straight to its span (see `realloc_move_small`),
/// checked and marked like any C free.
///
/// # Safety
/// `ptr` is a live object of class `c`, already copied out, that nobody uses any more.
#[cold]
#[inline(never)]
unsafe fn free_grown_out<const TAG: bool>(ptr: *mut u8, c: usize, who: &str) {
    // SAFETY: forwarded contract.
    unsafe { mark_freed::<TAG>(ptr, who) };
    let _errno = os::ErrnoKeeper::new();
    percpu::maybe_tick();
    // SAFETY: forwarded contract.
    unsafe { central::free_to_spans(c, &[ptr]) };
}

/// A small free the per-CPU push did not take: overflow, set-up, fallback.
///
/// # Safety
/// As for [`free_small`].
#[cold]
#[inline(never)]
unsafe fn free_small_cold(c: usize, ptr: *mut u8) {
    // SAFETY: forwarded contract.
    if unsafe { percpu::free_to_magazine(c, ptr) } {
        return; // no system call on this path: errno needs no keeping
    }
    let _errno = os::ErrnoKeeper::new();
    // SAFETY: forwarded contract.
    unsafe { percpu::free_slow(c, ptr) };
}

/// True when `s`, the span the page map gives for `ptr`, is a live large or huge object
/// starting at `ptr` — not an interior pointer, a page of a small span not carved yet, or a
/// freed span.
///
/// # Safety
/// `s` came from the page map: a span record, live or stale, always readable. For a verdict
/// that stays true, the caller holds the heap lock.
#[inline]
unsafe fn is_live_large(s: *mut Span, ptr: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        (*s).start == ptr as usize && matches!((*s).state, SpanState::Large | SpanState::Huge)
    }
}

/// Aborts naming `who` and `ptr`, which [`is_live_large`] rejected.
///
/// # Safety
/// As for [`is_live_large`]; call it without holding the heap lock.
#[cold]
#[inline(never)]
unsafe fn reject_large(s: *mut Span, ptr: *mut u8, who: &str) -> ! {
    // SAFETY: the caller's contract.
    let (start, state) = unsafe { ((*s).start, (*s).state) };
    if start == ptr as usize && state == SpanState::Free {
        bad_pointer(who, "double free detected", ptr)
    }
    bad_pointer(who, "invalid pointer", ptr)
}

/// Frees a large or huge object after validating it under the heap lock.
#[cold]
#[inline(never)]
fn free_large(ptr: *mut u8, s: *mut Span, who: &str) {
    free_large_with(ptr, s, who, false)
}

/// [`free_large`]; with `outgrown`, a large span's pages go back to the OS at once
/// (`PageHeap::free_span_released`: `realloc` moved the block into a huge mapping).
fn free_large_with(ptr: *mut u8, s: *mut Span, who: &str, outgrown: bool) {
    let _errno = os::ErrnoKeeper::new();
    percpu::maybe_tick();
    let mut heap = HEAP.lock();
    // SAFETY: `s` came from the page map; it is checked to be a live large or huge span
    // starting at `ptr` under the heap lock before anything is freed.
    unsafe {
        if !is_live_large(s, ptr) {
            drop(heap);
            reject_large(s, ptr, who);
        }
        if (*s).calloc_probe {
            // A `calloc` block left lazy: how much of it the program touched. No later `calloc`
            // measures it once freed (the word holds the size asked for, not the span's:
            // compared by address). `mincore` takes a call per 2 MiB, so it runs with the heap
            // unlocked, and the block is checked again after: a second `free` of it may have
            // come meanwhile.
            (*s).calloc_probe = false;
            let bytes = (*s).pages * PAGE;
            let w = CALLOC_PROBE.load(Ordering::Relaxed);
            if w & PROBE_ADDRESS == ptr as u64 {
                let _ = CALLOC_PROBE.compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
            drop(heap);
            measure_zeroed_use(ptr, bytes);
            heap = HEAP.lock();
            if !is_live_large(s, ptr) {
                drop(heap);
                reject_large(s, ptr, who);
            }
        }
        match (*s).state {
            SpanState::Large if outgrown => {
                heap.free_span_released(s);
            }
            SpanState::Large => {
                heap.free_span(s);
            }
            _ => heap.free_huge(s),
        }
    }
}

/// Frees `ptr` (any pointer this allocator returned), aborting with a one-line message naming
/// `who` for a pointer it never returned or one freed twice.
///
/// The checks abort through [`free_rejected`], which `free` jumps to: with a call there (the
/// abort's, as `checked_class` and `mark_freed` make it), `free` set up a stack frame on every
/// path. A C free checks and sets the free tag once, before it chooses its path.
///
/// # Safety
/// Nothing may use the object afterwards.
#[inline(always)]
unsafe fn free_inner<const TAG: bool>(ptr: *mut u8, who: &str) {
    // Null needs no test of its own here: no page of a small class is at address 0, so null
    // (like every pointer that is not a small object) takes `free_not_small`.
    let e = PAGEMAP.get(ptr as usize);
    let c = pagemap::class_of(e);
    if c == 0 {
        return free_not_small(ptr, e, who);
    }
    // An object boundary, in the part of the page where objects of the class exist
    // (`check_object`'s test).
    if !pagemap::is_object_start(ptr as usize, e, c) {
        return free_rejected(who, "invalid pointer", ptr);
    }
    if !TAG {
        // SAFETY: `ptr` starts an object of class `c` (entry `e`), checked above.
        return unsafe { free_small::<TAG>(ptr, c, e, who) };
    }
    let key = free_tag::key();
    // SAFETY: `ptr` starts an object of class `c`, checked above: a small one, whose second
    // word is ours once freed; the entry was loaded (acquire) and checked, as
    // `mark_free_with` asks.
    if unsafe { !free_tag::mark_free_with(ptr, key) } {
        return free_rejected(who, "double free detected", ptr);
    }
    if percpu::owned_routes(c) {
        // Owned spans (`owned_spans=on`, the classes of 288-960 B, and the small classes this
        // thread routed once idle).
        // SAFETY: an object of class `c`, tagged free with `key`; `e` is its entry.
        return unsafe { free_owned(ptr, e, key) };
    }
    if arch::noted_ptr() == ptr as usize {
        // Freeing what this thread allocated last (a temporary buffer): its class, noted
        // at allocation, is `c`; taken from the note (`confirmed_class`: compared with `c`
        // and chosen in one block of assembly) the push need not wait for the page-map
        // loads (docs/design.md, "Fast path"). Owner return keeps an object of the class
        // the thread allocated last where it is freed (`percpu::keeps_foreign`), so the
        // push has no home test: an object of another slab's span goes here at once, not
        // through `free_foreign` to the same end (a stale note's object stays too, see
        // `keeps_foreign`).
        // SAFETY: an object of class `c` (which `confirmed_class` returns), tagged free.
        return unsafe { push_here(arch::confirmed_class(c), ptr) };
    }
    // SAFETY: an object of class `c` (entry `e`), tagged free.
    unsafe { free_marked(ptr, c, e, || {}) }
}

/// [`free_inner`]'s abort: `bad_pointer`, behind a function that returns nothing (it never
/// returns), so that `free` reaches it with a jump and needs no stack frame for a call. Typed
/// `()`, not `!`, on purpose: a call to a function that never returns is not a tail call, and
/// brought `free`'s frame back (checked in the release library's disassembly; no test sees it).
#[cold]
#[inline(never)]
fn free_rejected(who: &str, what: &str, ptr: *mut u8) {
    bad_pointer(who, what, ptr)
}

/// [`free_inner`] of a pointer whose page-map entry `e` names no size class: null (nothing
/// to do), a large or huge object, or a pointer we never handed out (abort).
#[cold]
#[inline(never)]
fn free_not_small(ptr: *mut u8, e: usize, who: &str) {
    if ptr.is_null() {
        return;
    }
    if e == 0 {
        bad_pointer(who, "invalid pointer", ptr);
    }
    free_large(ptr, pagemap::span_of(e) as *mut Span, who)
}

/// A C `calloc` above this size takes a large span (whole pages, which the page heap knows to
/// be zero when fresh or released) even where a size class would hold it, so that its
/// untouched pages stay lazy, as glibc's blocks from fresh memory do (above its `mmap`
/// threshold, and those it carves from a heap top it just grew): a class's object is cleared
/// with `memset`, which makes every page resident. A program that `calloc`s 2,000 blocks of
/// 256 KiB and writes a byte of each reached 514 MB of peak RSS that way, glibc 9 MB (a breaker
/// run, session 71); Node.js's `ArrayBuffer`s, mostly above 64 KiB and barely written, peaked
/// at 1.31x glibc's RSS with 128 KiB here and 1.13x with 64 KiB (session 72). Lower costs
/// time: 8 threads `calloc`ing and freeing blocks of 16-64 KiB took 1.24x the CPU time with
/// 16 KiB here (the page heap's lock; with 64 KiB, level), and blocks of 64-128 KiB are
/// level with either (the clearing costs more than the lock). C only: Rust's sized `dealloc`
/// takes the class from the layout, so its blocks must stay in their classes.
const CALLOC_LAZY_ABOVE: usize = 64 << 10;

/// Whether the last zeroed large block measured (one `calloc` left lazy, measured at the next
/// zeroed `calloc` or at its free) had at least half its pages touched. Starts false: a
/// program's first zeroed block stays lazy.
static CALLOC_DENSE: AtomicBool = AtomicBool::new(false);
/// Zeroed large blocks handed out while [`CALLOC_DENSE`] held: every [`CALLOC_PROBE_EVERY`]th
/// of them is left lazy, to measure again.
static CALLOC_SINCE_PROBE: AtomicU32 = AtomicU32::new(0);
/// While the program's zeroed blocks are used densely, one in this many is still left lazy.
const CALLOC_PROBE_EVERY: u32 = 8;

/// Whether `calloc` (and Rust's `alloc_zeroed`) faults a fresh zeroed block below 32 MiB in
/// writable at once (`MADV_POPULATE_WRITE`) rather than leaving its pages to fault in on first use.
/// Populating is what made the runner's `calloc-big` (buffers written whole) 0.62-0.65x the CPU
/// time of lazy pages (session 71; 0.81x its best peer in session 7, from 1.36x), but it makes
/// every page resident: a program that `calloc`s 40 blocks of 16 MiB and writes a byte of each
/// reached 658 MB of peak RSS against glibc's 1.7 MB, and Node.js workers passing `ArrayBuffer`s
/// 1.7-1.9x glibc's (a breaker run, session 71). So a block is populated only while the last block
/// left lazy was found (at the next zeroed `calloc` or at its free) with at least half its pages
/// resident ([`measure_zeroed_use`]), and even then one in [`CALLOC_PROBE_EVERY`] is left lazy to
/// measure again. A heuristic over the whole process: either answer is correct.
fn populates_zeroed() -> bool {
    CALLOC_DENSE.load(Ordering::Relaxed)
        && CALLOC_SINCE_PROBE.fetch_add(1, Ordering::Relaxed) % CALLOC_PROBE_EVERY
            != CALLOC_PROBE_EVERY - 1
}

/// The last zeroed block left lazy and not measured yet ([`probe_word`]), or 0.
static CALLOC_PROBE: AtomicU64 = AtomicU64::new(0);
/// The address bits of a [`probe_word`] (user addresses have 48 bits).
const PROBE_ADDRESS: u64 = (1 << 48) - 1;

/// A zeroed block of `size` bytes at `p` (below 32 MiB) as one word: its address, and its OS
/// pages above bit 48.
fn probe_word(p: *mut u8, size: usize) -> u64 {
    debug_assert!(p as u64 & !PROBE_ADDRESS == 0);
    const { assert!(HUGE_MIN / os::OS_PAGE < 1 << 16) };
    p as u64 | (size.div_ceil(os::OS_PAGE) as u64) << 48
}

/// Measures the last zeroed block left lazy, if it is still waiting ([`CALLOC_PROBE`]), before
/// the next zeroed block is handed out: a program that writes each block whole before it asks
/// for the next is seen dense after one block, not only at the first free. The block may have
/// been freed since (its free clears the word first, but a race may lose that): `mincore` then
/// reads whatever the range holds now, or refuses an unmapped one; the answer is a hint.
fn measure_calloc_probe() {
    let w = CALLOC_PROBE.swap(0, Ordering::Relaxed);
    if w != 0 {
        let (p, pages) = ((w & PROBE_ADDRESS) as *const u8, (w >> 48) as usize);
        measure_zeroed_use(p, pages * os::OS_PAGE);
    }
}

/// Records how densely the program used a zeroed block left lazy (`calloc_probe`), the
/// `bytes` at `p`: dense when at least half its OS pages are resident now (`mincore`; nothing
/// is recorded if the range is no longer mapped).
fn measure_zeroed_use(p: *const u8, bytes: usize) {
    if let Some(resident) = os::resident_pages(p, bytes) {
        CALLOC_DENSE.store(2 * resident >= bytes / os::OS_PAGE, Ordering::Relaxed);
    }
}

/// Bytes usable at `ptr` (at least what was requested).
///
/// # Safety
/// `ptr` is null or a live allocation of this allocator.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        return 0;
    }
    let _g = guard::enter("malloc_usable_size");
    let (c, s) = lookup(ptr, "malloc_usable_size");
    if c != 0 {
        size_of(c)
    } else {
        // SAFETY: `s` came from the page map (a readable record); checked to be the live
        // large or huge span starting at `ptr`.
        unsafe {
            if !is_live_large(s, ptr) {
                reject_large(s, ptr, "malloc_usable_size");
            }
            (*s).usable
        }
    }
}

/// `malloc`: at least `size` bytes aligned to 16 (8 for sizes ≤ 8); a unique pointer for 0;
/// null with `errno = ENOMEM` when impossible.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    let _g = guard::enter("malloc");
    if size <= size_class::C_TABLE_MAX {
        let c = size_class::c_table_class(size);
        return alloc_c_table_class(c, || malloc_cold(size, c));
    }
    core::hint::cold_path();
    let c = size_class::c_class_above_table(size);
    alloc_class::<true>(c, || malloc_cold(size, c))
}

/// [`alloc_class`] for a C request of class `c` from `size_class::c_table_class` (up to 1 KiB,
/// so below 64): one test of the thread's owned routes for every class
/// ([`percpu::owned_routes_small`]), before the stack pop, sends a class owned spans serve to
/// [`alloc_owned_out`]. `alloc_class` tests the classes every thread routes by range before
/// the pop, and a small class a thread routed once idle only after a stack pop that fails: a
/// second section on each of its allocations. Here the stack classes run as many instructions
/// as there (the routes word's load and bit test take the place of the range compare; the
/// routed branch is marked cold, so the stack path runs straight through), and a routed
/// class's allocation one section: one thread's `mixed-bursts` 0.955x the CPU time, the
/// allocation phase of `burst_phases`' moving band 0.943x (docs/benchmarks.md, "Session 69").
#[inline(always)]
fn alloc_c_table_class(c: usize, cold: impl FnOnce() -> *mut u8) -> *mut u8 {
    if percpu::owned_routes_small(c) {
        core::hint::cold_path();
        return alloc_owned_out(c);
    }
    let p = percpu::pop(c);
    if !p.is_null() {
        return handed_out::<true>(p, c);
    }
    cold()
}

/// `malloc` past its fast path ([`alloc_cold`] at `malloc`'s alignment); `c` is
/// `c_class_for(size)`.
#[cold]
#[inline(never)]
fn malloc_cold(size: usize, c: usize) -> *mut u8 {
    debug_assert_eq!(c, size_class::c_class_for(size));
    alloc_cold::<true>(size, c_align(size), c)
}

/// `aligned_alloc`/`memalign`: `size` bytes aligned to `align`, which must be a power of two
/// (otherwise null with `EINVAL`).
pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        os::set_errno(libc::EINVAL);
        return null_mut();
    }
    let _g = guard::enter("aligned_alloc");
    alloc_inner::<true>(size, align.max(c_align(size)))
}

/// `calloc`: `n * size` zeroed bytes; null with `ENOMEM` on overflow.
///
/// A small block is `malloc`'s fast path and a clear of the bytes asked for, inlined into the
/// caller; everything else (refills, large and huge blocks, which are often known to be zero
/// already) is one call.
#[inline]
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        return oom();
    };
    let _g = guard::enter("calloc");
    let p = if total <= size_class::C_TABLE_MAX {
        let c = size_class::c_table_class(total);
        alloc_c_table_class(c, || malloc_cold(total, c))
    } else {
        core::hint::cold_path();
        let c = size_class::c_class_above_table(total);
        if c == 0 || total > CALLOC_LAZY_ABOVE {
            return calloc_cold(total);
        }
        alloc_class::<true>(c, || malloc_cold(total, c))
    };
    if !p.is_null() {
        // SAFETY: `p` holds at least `total` bytes.
        unsafe { p.write_bytes(0, total) };
    }
    p
}

/// [`calloc`] of a block too large for a size class.
#[cold]
#[inline(never)]
fn calloc_cold(total: usize) -> *mut u8 {
    alloc_zeroed_inner::<true>(total, c_align(total))
}

/// `free`: releases a pointer from any function of this API (null is a no-op). `errno` is
/// left as it was.
///
/// # Safety
/// `ptr` is null or a live allocation of this allocator that nobody uses any more.
#[inline]
pub unsafe fn free(ptr: *mut u8) {
    let _g = guard::enter("free");
    // SAFETY: forwarded contract.
    unsafe { free_inner::<true>(ptr, "free") }
}

/// `realloc` with C semantics: null `ptr` allocates; the contents up to the smaller size are
/// kept; on failure null is returned and `ptr` is untouched. (`realloc(p, 0)` as glibc — free
/// and return null — is the shim's business; here size 0 gives a minimal object.)
///
/// # Safety
/// `ptr` is null or a live allocation of this allocator.
#[inline]
pub unsafe fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    let _g = guard::enter("realloc");
    // The common case in a few instructions: a small block whose class is the class of
    // `size`, or that `size` fills at least half of, stays where it is (a buffer grown a few
    // bytes at a time mostly does); one that must change class moves without a second
    // page-map lookup and check — with a quarter of headroom when it grows
    // (`size_class::c_grown_request`), else to `size`'s own class.
    // (Null needs no test of its own: no page of a small class is at address 0, so null goes
    // to `realloc_inner`, which allocates.)
    let (c, _) = checked_class(ptr, "realloc");
    if c != 0 {
        // SAFETY: `checked_class` found `ptr` starts an object of class `c` (≥ 16 bytes).
        if unsafe { free_tag::is_free(ptr) } {
            bad_pointer("realloc", "double free detected", ptr);
        }
        if size_class::c_request_fits(size, c) {
            return ptr;
        }
        // SAFETY: checked above: a live object of class `c`.
        return unsafe { realloc_move_small::<true>(ptr, c, size, c_align(size), "realloc") };
    }
    // SAFETY: forwarded contract.
    unsafe { realloc_inner::<true>(ptr, size, c_align(size), "realloc") }
}

/// A block above this size that `realloc` moves to a larger class goes back to its span, not to
/// a cache: a buffer grown a step at a time passes through every class up to its size, and a
/// cached block in each would keep a high-water per class resident (docs/design.md, "Central
/// lists", has the measurement). Smaller blocks are cheap to cache and many.
const REALLOC_BYPASS_ABOVE: usize = 1024;

/// Resizes in place when possible (same class, or a large span that can shrink or grow into
/// its free neighbour, or a huge mapping moved by the kernel), else moves.
///
/// # Safety
/// `ptr` is null or a live allocation aligned to `align`.
unsafe fn realloc_inner<const TAG: bool>(
    ptr: *mut u8,
    size: usize,
    align: usize,
    who: &str,
) -> *mut u8 {
    if ptr.is_null() {
        return alloc_inner::<TAG>(size, align);
    }
    let (c, s) = lookup(ptr, who);
    if c != 0 {
        // C only (`TAG`): a freed (or carved, never handed out) object must not be resized in
        // place and handed back as if live.
        // SAFETY: `lookup` checked `ptr` starts an object of class `c` (at least 16 bytes).
        if TAG && unsafe { free_tag::is_free(ptr) } {
            bad_pointer(who, "double free detected", ptr);
        }
        if size <= size_of(c) && class_for(size, align) == c {
            return ptr;
        }
        // SAFETY: `lookup` checked `ptr` starts an object of class `c`; live by contract.
        return unsafe { realloc_move_small::<TAG>(ptr, c, size, align, who) };
    }
    let old_usable = {
        let mut heap = HEAP.lock();
        // SAFETY: `s` came from the page map (a readable record); unless it is the live large
        // or huge span starting at `ptr` we abort before using it. We hold the heap lock while
        // resizing it.
        unsafe {
            if !is_live_large(s, ptr) {
                drop(heap);
                reject_large(s, ptr, who);
            }
            let usable = (*s).usable;
            // A C block of whole pages shrunk to a small size stays too while it keeps more
            // than half its pages, as a small block does (`size_class::c_request_fits`); a
            // Rust block must move, since its `dealloc` takes a small size's class from the
            // layout.
            let c_small_shrink = TAG && size <= MAX_SMALL && (*s).state == SpanState::Large;
            if align <= PAGE && (size > MAX_SMALL || c_small_shrink) {
                let pages = size.div_ceil(PAGE);
                match (*s).state {
                    // Within the span (its growth margin kept unless it shrinks by more than
                    // half), or grown into the free span right after it.
                    SpanState::Large if pages <= (*s).pages && pages * 2 > (*s).pages => {
                        return ptr;
                    }
                    SpanState::Large
                        if size > MAX_SMALL
                            && size < HUGE_MIN
                            && heap.resize_in_place(s, pages) =>
                    {
                        (*s).usable = (*s).bytes();
                        return ptr;
                    }
                    SpanState::Huge if size >= HUGE_MIN && size <= usable && size > usable / 2 => {
                        return ptr
                    }
                    SpanState::Huge if size >= HUGE_MIN && heap.resize_huge(s, size) => {
                        return (*s).start as *mut u8;
                    }
                    _ => {}
                }
            }
            usable
        }
    };
    // A large block that must move to grow gets a geometric margin, so growing step by step
    // moves it O(log) times, not once per step.
    let new = if size > old_usable && size > MAX_SMALL && align <= PAGE {
        let margin = old_usable + (old_usable >> page_heap::GROWTH_MARGIN_SHIFT);
        alloc_large_with(size, align, margin)
    } else {
        alloc_inner::<TAG>(size, align)
    };
    if !new.is_null() {
        // A block grown out of the heap into a huge mapping leaves its span's pages behind for
        // good: they go back to the OS now (`PageHeap::free_span_released` says why).
        let outgrown = size >= HUGE_MIN;
        // SAFETY: both blocks are live and distinct; we copy what both can hold. The old block
        // was looked up and checked above, so it is freed without a second lookup.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr, new, old_usable.min(size));
            free_large_with(ptr, s, who, outgrown);
        }
    }
    new
}

/// Moves a small block of class `c` to a new block of `size` bytes aligned to `align` (which
/// `c` does not fit): copies what both hold and frees the old block. Null (the old block
/// untouched) when no memory is left.
///
/// # Safety
/// `ptr` is a live object of class `c` (its pointer and, when `TAG`, its free tag already
/// checked); after a non-null return the caller no longer uses `ptr`.
#[inline(never)]
unsafe fn realloc_move_small<const TAG: bool>(
    ptr: *mut u8,
    c: usize,
    size: usize,
    align: usize,
    who: &str,
) -> *mut u8 {
    let old_usable = size_of(c);
    // A C block moved to grow gets a quarter of headroom (`c_grown_request` says why; only C,
    // whose `free` finds the class in the page map).
    let request = if TAG && size > old_usable && size <= MAX_SMALL {
        size_class::c_grown_request(c, size)
    } else {
        size
    };
    debug_assert!(
        TAG || request == size,
        "a Rust block must keep its size's class"
    );
    // A refused headroom sets `errno`, which a `realloc` that then succeeds at the exact size
    // must not show (a review found ENOMEM left after a success, session 73).
    let errno = (request != size).then(os::errno);
    let mut new = alloc_inner::<TAG>(request, align);
    if new.is_null() {
        if let Some(errno) = errno {
            // No memory for the headroom (an address-space limit): the exact size may still
            // fit, as the large path's margin falls back too (`alloc_large_with`).
            new = alloc_inner::<TAG>(size, align);
            if !new.is_null() {
                os::set_errno(errno);
            }
        }
    }
    if !new.is_null() {
        // SAFETY: both blocks are live and distinct; we copy what both can hold; the caller
        // checked the old block, so it is freed without a second lookup.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr, new, old_usable.min(size));
            if size > old_usable && old_usable > REALLOC_BYPASS_ABOVE {
                // Grown out of its class: a buffer growing step by step leaves each class it
                // passes through and rarely comes back at once, so the block goes back to its
                // span, not to a cache that would keep one such block per class resident.
                free_grown_out::<TAG>(ptr, c, who);
            } else {
                free_small::<TAG>(ptr, c, 0, who);
            }
        }
    }
    new
}

/// Returns to the OS every page the allocator holds free, after draining every per-CPU cache
/// and transfer stack, and unmaps free runs of a whole chunk (32 MiB) or more. Returns the
/// bytes released.
pub fn trim() -> usize {
    let _g = guard::enter("malloc_trim");
    // Whole free chunks go back as address space too (an `RLIMIT_AS` program that freed
    // everything can then map a block of any size again).
    trim_with(percpu::drain_all, page_heap::GROW_BYTES)
}

/// [`trim`]'s work, with the per-CPU caches emptied by `drain` and the free runs of
/// `unmap_from` bytes or more unmapped; also for a caller already inside the allocator
/// ([`gave_back_after_refusal`]). Returns the bytes released.
fn trim_with(drain: fn() -> usize, unmap_from: usize) -> usize {
    // Spans emptied by the drains may be released as they come back (past the heap's dirty
    // bound), so count everything released from here on.
    let before = HEAP.lock().stats().released_total;
    drain();
    central::flush_transfer();
    let mut heap = HEAP.lock();
    heap.release_free(u64::MAX);
    heap.note_trimmed();
    heap.unmap_free(unmap_from);
    heap.stats().released_total - before
}

// SAFETY: every method returns memory meeting the layout (class sizes and alignments are
// checked in `size_class`), or null; `dealloc`/`realloc` accept exactly what `alloc` returned.
unsafe impl GlobalAlloc for RseqMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _g = guard::enter("alloc");
        // The common case's class inline, the rest out of line: with `class_for`'s call for
        // the rest in its middle, this path saved three registers a call, and the criterion
        // `batch` and `fast_path` cells took 1.04-1.20x the time (docs/benchmarks.md,
        // "Session 35").
        let (size, align) = (layout.size(), layout.align());
        match size_class::class_for_common(size, align) {
            Some(c) => alloc_class::<false>(c, || alloc_cold::<false>(size, align, c)),
            None => alloc_rust_rest(size, align),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _g = guard::enter("dealloc");
        // The layout gives the class without a page-map lookup: Rust promises it matches.
        match size_class::class_for_common(layout.size(), layout.align()) {
            // SAFETY: GlobalAlloc's contract: `ptr` was allocated with this layout.
            Some(c) if !cfg!(debug_assertions) => unsafe {
                free_small::<false>(ptr, c, 0, "dealloc")
            },
            // SAFETY: as above.
            _ => unsafe { dealloc_rust_rest(ptr, layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _g = guard::enter("alloc_zeroed");
        alloc_zeroed_inner::<false>(layout.size(), layout.align())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _g = guard::enter("realloc");
        // As in `dealloc`: the layout gives the class, and a size of the same class stays in
        // place without a page-map lookup (debug builds take the checked path).
        let c = class_for(layout.size(), layout.align());
        if c != 0 && !cfg!(debug_assertions) && class_for(new_size, layout.align()) == c {
            return ptr;
        }
        // SAFETY: GlobalAlloc's contract: `ptr` is live with `layout`.
        unsafe { realloc_inner::<false>(ptr, new_size, layout.align(), "realloc") }
    }
}

/// Rust's `alloc` of a request past [`size_class::class_for_common`]: out of line, so that the
/// common case's path saves one register, not three.
#[inline(never)]
fn alloc_rust_rest(size: usize, align: usize) -> *mut u8 {
    alloc_inner::<false>(size, align)
}

/// Rust's `dealloc` past [`size_class::class_for_common`] (and of every object in debug
/// builds): out of line, as [`alloc_rust_rest`], so that the common case saves no register.
///
/// # Safety
/// GlobalAlloc's contract: `ptr` was allocated with `layout` and is not used afterwards.
#[inline(never)]
unsafe fn dealloc_rust_rest(ptr: *mut u8, layout: Layout) {
    let c = class_for(layout.size(), layout.align());
    if c != 0 && !cfg!(debug_assertions) {
        // SAFETY: forwarded contract.
        unsafe { free_small::<false>(ptr, c, 0, "dealloc") }
    } else {
        // SAFETY: as above.
        unsafe { dealloc_checked(ptr) }
    }
}

/// `dealloc` of a large object, or of any object in debug builds, where the page map validates
/// the pointer first.
///
/// # Safety
/// As for [`free_inner`].
#[cold]
#[inline(never)]
unsafe fn dealloc_checked(ptr: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe { free_inner::<false>(ptr, "dealloc") }
}

/// Start-up, from the loader's constructors (`.init_array`), before `main`: registers the fork
/// handlers, loads the options, prints the start-up line if asked, and asks for the background
/// thread if the options do (it starts once the program has a second thread).
mod init {
    use super::*;

    extern "C" fn init() {
        percpu::install_fork_handlers();
        config::load();
        report::at_start();
        if config::get().background_thread {
            percpu::want_background_thread();
        }
    }

    #[used]
    #[link_section = ".init_array"]
    static INIT: extern "C" fn() = init;
}

#[doc(hidden)]
/// Test hook: allocates from inside an allocator entry point, which the re-entrancy guard must
/// turn into an abort in debug builds. Never call it otherwise.
pub fn __reentrancy_probe() -> *mut u8 {
    let _g = guard::enter("probe");
    malloc(16)
}

/// Internals for the cargo-fuzz targets under `fuzz/` (feature `fuzzing`, off by default; not
/// a stable API): exercises over private structures and the allocator's executable invariants.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::page_heap::check::{fuzz as page_heap, Broken};

    /// Checks the executable invariants of the whole allocator: the page heap, every class's
    /// central list, every ready slab. The slabs only at rest: call it where no other thread
    /// allocates or frees.
    pub fn check_invariants() -> Result<(), Broken> {
        crate::HEAP.lock().check_invariants()?;
        crate::central::check::check_all()?;
        crate::percpu::check_slabs()
    }
}
