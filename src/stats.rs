//! Statistics: counters gathered from every layer into a plain struct, without allocating, and
//! printed at exit when `stats=text|json` is set.
//!
//! May call: every layer below the public API (read-only, except that it hands the calling
//! thread's fallback-mode magazine back first), `os`, `config`.

use crate::central::CENTRAL;
use crate::config::{self, StatsAtExit};
use crate::cpu_cache::{self, RseqMode};
use crate::os::{self, Msg};
use crate::page_heap::HEAP;
use crate::size_class::{size_of, NUM_CLASSES};

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
    /// Slab-lock acquisitions of the locked fallback path (each serves one operation, or a
    /// refill or flush of a thread's magazine; magazine hits take none). 0 with rseq.
    pub fallback_ops: usize,
    /// Drains of other CPUs' caches skipped because the kernel lacks the rseq membarrier.
    pub drains_skipped: usize,
}

impl Stats {
    /// Bytes cached in each reported per-CPU slab (the first `min(slabs, MAX_REPORTED_CPUS)`).
    pub fn cpu_caches(&self) -> &[usize] {
        &self.cpu_cache_bytes[..self.slabs.min(MAX_REPORTED_CPUS)]
    }
}

/// Gathers the statistics.
pub fn stats() -> Stats {
    // Fallback mode: the caller's magazine goes back first, so that what it holds does not
    // count as allocated (other threads' magazines, a few KiB each, still do).
    crate::cpu_cache::flush_own_magazine();
    let heap = HEAP.lock().stats();
    let mut s = Stats {
        allocated: 0,
        active: heap.small_spans + heap.large_in_use,
        resident: resident_bytes(),
        mapped: heap.mapped,
        released: heap.released(),
        free: heap.free,
        metadata: heap.metadata,
        class_size: [0; NUM_CLASSES],
        class_in_use: [0; NUM_CLASSES],
        class_cached: [0; NUM_CLASSES],
        cpu_cache_bytes: [0; MAX_REPORTED_CPUS],
        slabs: cpu_cache::slab_count(),
        slabs_in_use: cpu_cache::slabs_in_use(),
        rseq_mode: cpu_cache::mode(),
        uses_mm_cid: cpu_cache::uses_mm_cid(),
        restarts: crate::arch::restarts(),
        fallback_ops: cpu_cache::fallback_ops(),
        drains_skipped: cpu_cache::DRAINS_SKIPPED.load(core::sync::atomic::Ordering::Relaxed),
    };
    let mut small = 0;
    // Fallback mode's magazine storage is the allocator's own metadata, not the program's.
    let (mag_class, magazines) = cpu_cache::magazine_storage();
    for (c, central) in CENTRAL.iter().enumerate().skip(1) {
        let out = central
            .out_of_spans
            .load(core::sync::atomic::Ordering::Relaxed);
        let cached = central.cached.load(core::sync::atomic::Ordering::Relaxed)
            + cpu_cache::cached_objects(c);
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
    cpu_cache::cached_bytes_per_slab(&mut s.cpu_cache_bytes);
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

/// The single-number figures, named as both reports print them.
fn scalars(s: &Stats) -> [(&'static str, u64); 12] {
    [
        ("allocated", s.allocated as u64),
        ("active", s.active as u64),
        ("resident", s.resident as u64),
        ("mapped", s.mapped as u64),
        ("released", s.released as u64),
        ("free", s.free as u64),
        ("metadata", s.metadata as u64),
        ("restarts", s.restarts),
        ("fallback_ops", s.fallback_ops as u64),
        ("drains_skipped", s.drains_skipped as u64),
        ("slabs", s.slabs as u64),
        ("slabs_in_use", s.slabs_in_use as u64),
    ]
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

/// Where a report goes: the allocator's stderr channel, or a file of its own.
#[derive(Clone, Copy)]
enum Sink {
    Stderr,
    File(i32),
}

impl Sink {
    /// Writes `m` as one line, with one `write(2)`.
    fn line<const N: usize>(self, m: &Msg<N>) {
        match self {
            Sink::Stderr => os::write_stderr(m),
            Sink::File(fd) => os::output::write_fd(fd, m.line().as_bytes()),
        }
    }
}

/// A report line's start: `rseqmalloc[<pid>]: `.
fn prefix(m: &mut Msg) -> &mut Msg {
    m.str("rseqmalloc[").dec(os::pid() as u64).str("]: ")
}

/// Prints `s` as text, one line per figure.
fn print_text(s: &Stats, to: Sink) {
    let line = |name: &str, v: u64| {
        let mut m = Msg::new();
        prefix(&mut m).str(name).str(" ").dec(v);
        to.line(&m);
    };
    let mut m = Msg::new();
    prefix(&mut m)
        .str("rseq mode ")
        .str(s.rseq_mode.name())
        .str(if s.uses_mm_cid {
            " (mm_cid)"
        } else {
            " (cpu_id)"
        });
    to.line(&m);
    for (name, v) in scalars(s) {
        line(name, v);
    }
    for (i, b) in s.cpu_caches().iter().enumerate() {
        let mut m = Msg::new();
        prefix(&mut m)
            .str("cpu ")
            .dec(i as u64)
            .str(" cache_bytes ")
            .dec(*b as u64);
        to.line(&m);
    }
    for c in 1..NUM_CLASSES {
        if s.class_in_use[c] + s.class_cached[c] > 0 {
            let mut m = Msg::new();
            prefix(&mut m)
                .str("class ")
                .dec(s.class_size[c] as u64)
                .str(" in_use ")
                .dec(s.class_in_use[c] as u64)
                .str(" cached ")
                .dec(s.class_cached[c] as u64);
            to.line(&m);
        }
    }
}

/// Bytes of the JSON report at most: 100 classes of at most 70 bytes, 64 cpu figures of at
/// most 21, the scalars and the rest well under 2 KiB.
const JSON_MAX: usize = 16 << 10;

/// Prints `s` as one JSON object on one line, written at once.
fn print_json(s: &Stats, to: Sink) {
    let mut m = Msg::<JSON_MAX>::empty();
    m.str("{\"rseqmalloc\":{\"rseq_mode\":\"")
        .str(s.rseq_mode.name())
        .str("\",\"uses_mm_cid\":")
        .str(if s.uses_mm_cid { "true" } else { "false" });
    for (k, v) in scalars(s) {
        m.str(",\"").str(k).str("\":").dec(v);
    }
    m.str(",\"cpu_cache_bytes\":[");
    for (i, b) in s.cpu_caches().iter().enumerate() {
        if i > 0 {
            m.str(",");
        }
        m.dec(*b as u64);
    }
    m.str("],\"classes\":[");
    for c in 1..NUM_CLASSES {
        if c > 1 {
            m.str(",");
        }
        m.str("{\"size\":")
            .dec(s.class_size[c] as u64)
            .str(",\"in_use\":")
            .dec(s.class_in_use[c] as u64)
            .str(",\"cached\":")
            .dec(s.class_cached[c] as u64)
            .str("}");
    }
    m.str("]}}");
    to.line(&m);
}

/// Opens `stats_file` for this process: `%p` becomes the pid, `%%` a `%`.
fn open_stats_file(pattern: &[u8]) -> Option<i32> {
    let mut path = [0u8; 4200];
    let mut n = 0;
    let mut i = 0;
    while i < pattern.len() {
        let mut pid = Msg::<32>::empty();
        let piece: &[u8] = match (pattern[i], pattern.get(i + 1)) {
            (b'%', Some(b'p')) => {
                i += 2;
                pid.dec(os::pid() as u64).as_bytes()
            }
            (b'%', Some(b'%')) => {
                i += 2;
                b"%"
            }
            _ => {
                i += 1;
                &pattern[i - 1..i]
            }
        };
        path.get_mut(n..n + piece.len())?.copy_from_slice(piece);
        n += piece.len();
    }
    *path.get_mut(n)? = 0;
    let path = core::ffi::CStr::from_bytes_until_nul(&path).ok()?;
    os::create_file(path)
}

extern "C" fn at_exit() {
    let opts = config::get();
    let mut to = Sink::Stderr;
    if let Some(pattern) = opts.stats_file {
        match open_stats_file(pattern) {
            Some(fd) => to = Sink::File(fd),
            None => {
                let mut m = Msg::new();
                m.str("rseqmalloc: cannot create stats_file '")
                    .escaped(pattern, 160)
                    .str("'; the report follows on stderr");
                os::write_stderr(&m);
            }
        }
    }
    let s = stats();
    match opts.stats {
        StatsAtExit::Text => print_text(&s, to),
        StatsAtExit::Json => print_json(&s, to),
        StatsAtExit::None => {}
    }
    if let Sink::File(fd) = to {
        os::close(fd);
    }
}

/// Registers the exit report when `stats=text|json` is set.
pub fn register_at_exit() {
    if config::get().stats != StatsAtExit::None {
        // SAFETY: registering a valid function pointer.
        unsafe { libc::atexit(at_exit) };
    }
}
