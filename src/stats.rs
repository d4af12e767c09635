//! Statistics: counters gathered from every layer into a plain struct, without allocating
//! (`report` prints them).
//!
//! May call: every layer below the public API (read-only, except that it hands the calling
//! thread's fallback-mode magazine back first), `os`.

use crate::central::CENTRAL;
use crate::os;
use crate::page_heap::HEAP;
use crate::percpu::{self, RseqMode};
use crate::size_class::{size_of, NUM_CLASSES};
use crate::sync::Ordering;

/// Per-CPU cache figures are reported for at most this many slabs.
pub const MAX_REPORTED_CPUS: usize = 64;

/// A snapshot of the allocator's state. Figures from different layers are read one after the
/// other, not atomically together.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Bytes in objects handed to users (small objects by class size, large by span).
    pub allocated: usize,
    /// Bytes in spans in use (carved small spans plus large and huge objects).
    pub active: usize,
    /// Resident set size of the whole process (`/proc/self/statm`), 0 if unreadable.
    pub resident: usize,
    /// The most `active` has been: a bound on the most ever allocated (tracking `allocated`
    /// itself would cost the fast path).
    pub peak_active: usize,
    /// The resident set size's high-water mark (`VmHWM` in `/proc/self/status`), 0 if
    /// unreadable.
    pub peak_resident: usize,
    /// Address space the page heap and huge objects mapped.
    pub mapped: usize,
    /// Bytes in free spans whose pages were handed back to the OS.
    pub released: usize,
    /// Bytes in free spans (released or not).
    pub free: usize,
    /// Bytes mapped for span records, plus fallback-mode magazine storage.
    pub metadata: usize,
    /// Size of each class (index 0 unused).
    pub class_size: [usize; NUM_CLASSES],
    /// Objects of each class with users.
    pub class_in_use: [usize; NUM_CLASSES],
    /// Objects of each class in per-CPU caches and transfer stacks.
    pub class_cached: [usize; NUM_CLASSES],
    /// Bytes cached in each per-CPU slab (first [`MAX_REPORTED_CPUS`]).
    pub cpu_cache_bytes: [usize; MAX_REPORTED_CPUS],
    /// Number of slabs (possible CPU or concurrency ids).
    pub slabs: usize,
    /// Slabs touched so far.
    pub slabs_in_use: usize,
    /// The rseq mode.
    pub rseq_mode: RseqMode,
    /// Slabs are indexed by `mm_cid` (else by `cpu_id`).
    pub uses_mm_cid: bool,
    /// rseq critical sections aborted and restarted.
    pub restarts: u64,
    /// Of `restarts`, those of the batch sections (refill, overflow and drain batches, and the
    /// relocation of a class's stack).
    pub batch_restarts: u64,
    /// Slab-lock acquisitions of the locked fallback path (each serves one operation, or a
    /// refill or flush of a thread's magazine; magazine hits take none). 0 with rseq.
    pub fallback_ops: usize,
    /// Drains of other CPUs' caches skipped because the kernel lacks the rseq membarrier.
    pub drains_skipped: usize,
    /// Owner return: objects a C `free` on one slab sent to their span's home slab's inbox.
    pub sent_home: usize,
    /// Owner return: objects bound for a home whose inbox was full, cached where freed instead.
    pub sent_home_declined: usize,
    /// Owner return: objects bound for another slab that were freed where they were because
    /// the freeing thread had no outbox and no memory for one could be had (the address
    /// space or the commit limit ran out; also for the C library's block that arms the
    /// thread's exit, without which an outbox would be stranded when the thread ends).
    pub sent_home_no_outbox: usize,
    /// Objects moved from a per-CPU class that looked idle to the central lists, so that a
    /// class overflowing past `cpu_cache_bytes` could take its capacity (docs/design.md,
    /// "Capacity").
    pub evicted: usize,
    /// Growths of per-CPU classes past their base maximum into the burst tier, when one
    /// thread's bursts outgrew a class's stack (docs/design.md, "Capacity").
    pub burst_growths: usize,
    /// Spans per-CPU slabs took to own (`owned_spans=on`; docs/design.md, "Owned spans"); 0
    /// when owned spans are off.
    pub owned_spans_taken: usize,
    /// Wholly free owned spans given back whole to the page heap (every object out of the span
    /// back on its list): a free's when keeping is off (a bound of 0), the oldest kept span past
    /// the bound, a kept span another class could not take over (docs/design.md, "Kept
    /// spans"), or one that frees on other CPUs left wholly free, past the bound (docs/design.md,
    /// "Spans freed whole on other CPUs").
    pub owned_spans_given_back: usize,
    /// Kept owned spans a slab turned over to another of its classes without the page heap
    /// (docs/design.md, "Kept spans").
    pub owned_spans_reclassed: usize,
    /// Small classes (32-256 B) threads routed to owned spans once their slab's stack of the
    /// class was idle, one per thread and class each time (a class unrouted and routed again
    /// counts again; docs/design.md, "Small classes routed once idle").
    pub owned_classes_routed: usize,
    /// Small classes threads stopped routing to owned spans because their owned pushes kept
    /// declining (the class churned across CPUs), one per thread and class each time
    /// (docs/design.md, "Small classes routed once idle").
    pub owned_classes_unrouted: usize,
    /// Maintenance ticks run so far (each drains the per-CPU caches that stayed idle, flushes
    /// idle transfer stacks and inboxes, and releases pages free for `decay_ms`): at most one
    /// per tick period, a quarter of `decay_ms` within 10 ms to 1 s, run by a slow path that
    /// finds one due or by the background thread (docs/tuning.md, `decay_ms`). A `fork`
    /// child's count includes its parent's before the fork.
    pub maintenance_ticks: u64,
    /// Of `maintenance_ticks`, those the background thread ran (`background_thread=on`); the
    /// thread ticks an idle program's memory back without waiting for an allocation. Never
    /// above `maintenance_ticks`; in a `fork` child it stays at the parent's count (the
    /// thread is not recreated there).
    pub background_ticks: u64,
}

impl Stats {
    /// What indexes the per-CPU slabs: `"mm_cid"` (concurrency ids) or `"cpu_id"`.
    pub fn id_kind(&self) -> &'static str {
        if self.uses_mm_cid {
            "mm_cid"
        } else {
            "cpu_id"
        }
    }

    /// Bytes cached in each reported per-CPU slab (the first `min(slabs, MAX_REPORTED_CPUS)`).
    pub fn cpu_caches(&self) -> &[usize] {
        &self.cpu_cache_bytes[..self.slabs.min(MAX_REPORTED_CPUS)]
    }
}

/// Gathers the statistics.
pub fn stats() -> Stats {
    // The caller's magazine (fallback mode) and outbox (owner return) go back first, so that
    // what they hold does not count as allocated (other threads' magazines and outboxes, a few
    // KiB each at most, still do).
    crate::percpu::flush_own();
    let (sent_home, sent_home_declined) = percpu::owner_return_figures();
    let heap = HEAP.lock().stats();
    let (maintenance_ticks, background_ticks) = percpu::tick_counts();
    let mut s = Stats {
        allocated: 0,
        active: heap.small_spans + heap.large_in_use,
        resident: resident_bytes(),
        peak_active: heap.peak_active,
        peak_resident: peak_resident_bytes(),
        mapped: heap.mapped,
        released: heap.released(),
        free: heap.free,
        metadata: heap.metadata,
        class_size: [0; NUM_CLASSES],
        class_in_use: [0; NUM_CLASSES],
        class_cached: [0; NUM_CLASSES],
        cpu_cache_bytes: [0; MAX_REPORTED_CPUS],
        slabs: percpu::slab_count(),
        slabs_in_use: percpu::slabs_in_use(),
        rseq_mode: percpu::mode(),
        uses_mm_cid: percpu::uses_mm_cid(),
        restarts: crate::arch::restarts(),
        batch_restarts: crate::arch::batch_restarts(),
        fallback_ops: percpu::fallback_ops(),
        drains_skipped: percpu::DRAINS_SKIPPED.load(Ordering::Relaxed),
        sent_home,
        sent_home_declined,
        sent_home_no_outbox: percpu::NO_OUTBOX.load(Ordering::Relaxed),
        evicted: percpu::EVICTED.load(Ordering::Relaxed),
        burst_growths: percpu::BURST_GROWTHS.load(Ordering::Relaxed),
        owned_spans_taken: percpu::OWNED_TAKEN.load(Ordering::Relaxed),
        owned_spans_given_back: percpu::OWNED_GIVEN_BACK.load(Ordering::Relaxed),
        owned_spans_reclassed: percpu::OWNED_RECLASSED.load(Ordering::Relaxed),
        owned_classes_routed: percpu::OWNED_ROUTED.load(Ordering::Relaxed),
        owned_classes_unrouted: percpu::OWNED_UNROUTED.load(Ordering::Relaxed),
        maintenance_ticks,
        background_ticks,
    };
    let mut small = 0;
    // The per-CPU layer's per-thread storage (magazines, outboxes) is the allocator's own
    // metadata, not the program's.
    let (mag_class, magazines) = percpu::thread_storage();
    for (c, central) in CENTRAL.iter().enumerate().skip(1) {
        let out = central.out_of_spans.load(Ordering::Relaxed);
        let cached = crate::central::cached(c) + percpu::cached_objects(c);
        s.class_size[c] = size_of(c);
        s.class_cached[c] = cached;
        s.class_in_use[c] = out.saturating_sub(cached);
        if c == mag_class {
            s.class_in_use[c] = s.class_in_use[c].saturating_sub(magazines);
            s.metadata += magazines * size_of(c);
        }
        small += s.class_in_use[c] * size_of(c);
    }
    s.allocated = small + heap.large_in_use;
    percpu::cached_bytes_per_slab(&mut s.cpu_cache_bytes);
    s
}

/// The process's resident set size from `/proc/self/statm`.
pub fn resident_bytes() -> usize {
    let mut buf = [0u8; 128];
    let Some(n) = os::read_small_file(c"/proc/self/statm", &mut buf) else {
        return 0;
    };
    let mut fields = buf[..n].split(|&b| b == b' ');
    let _size = fields.next();
    let pages = fields.next().map_or(0, |f| {
        f.iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0usize, |a, &d| a * 10 + (d - b'0') as usize)
    });
    pages * os::OS_PAGE
}

/// The resident set size's high-water mark from `/proc/self/status` (`VmHWM:  1234 kB`).
fn peak_resident_bytes() -> usize {
    os::status_bytes(b"VmHWM:")
}

impl RseqMode {
    /// The mode's name as the reports, the JSON and `rseqmalloc_rseq_mode()` spell it:
    /// `"uninitialized"`, `"glibc"`, `"own"` or `"fallback"`.
    pub const fn name(self) -> &'static str {
        match self.c_name().to_str() {
            Ok(s) => s,
            Err(_) => "",
        }
    }

    /// [`RseqMode::name`] as a NUL-terminated static string, for C.
    pub const fn c_name(self) -> &'static core::ffi::CStr {
        match self {
            RseqMode::Uninitialized => c"uninitialized",
            RseqMode::Glibc => c"glibc",
            RseqMode::Own => c"own",
            RseqMode::Fallback => c"fallback",
        }
    }
}
