//! Run-time options from `RSEQMALLOC_OPTIONS="key=value,..."`, read once without allocating.
//!
//! Owns: the option values and their parsing. An unknown key or a malformed value prints one
//! warning line on stderr naming it and keeps the default; parsing never fails the program.
//!
//! May call: `os`, `sync`.

use crate::os::{self, Msg};
use crate::sync::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// What to print on stderr at exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsAtExit {
    /// Nothing (default).
    None,
    /// A human-readable report.
    Text,
    /// One JSON object.
    Json,
}

/// Transparent huge page policy for the page heap's chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// Leave the system default.
    Default,
    /// `madvise(MADV_HUGEPAGE)`.
    Always,
    /// `madvise(MADV_NOHUGEPAGE)`.
    Never,
}

/// The parsed options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Use rseq when available (`rseq=on|off`).
    pub rseq: bool,
    /// Free pages are returned to the OS after this many ms (`decay_ms`, 0 = at once).
    pub decay_ms: u64,
    /// Upper bound of one per-CPU cache in bytes (`cpu_cache_bytes`, accepts k/m suffixes).
    pub cpu_cache_bytes: u64,
    /// Free pages the page heap keeps resident at most before releasing at once (`dirty_max`,
    /// bytes with k/m/g suffixes; `u64::MAX`, unbounded, by default: decay alone).
    pub dirty_max: u64,
    /// Huge page policy (`huge_pages=default|always|never`).
    pub huge_pages: HugePages,
    /// Statistics at exit (`stats=none|text|json`).
    pub stats: StatsAtExit,
    /// Where the statistics at exit go (`stats_file=PATH`, `%p` for the pid): a file instead of
    /// stderr; `stats=text` if `stats` is not set.
    pub stats_file: Option<&'static [u8]>,
    /// Run maintenance (decay, idle drains) from a background thread (`background_thread=on`).
    pub background_thread: bool,
    /// Use `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` to drain other CPUs' caches
    /// (`membarrier=on|off`); `off` behaves as on a kernel without it.
    pub membarrier: bool,
}

/// The defaults, also what a malformed value falls back to.
pub const DEFAULTS: Options = Options {
    rseq: true,
    decay_ms: 1000,
    cpu_cache_bytes: 512 << 10,
    dirty_max: u64::MAX,
    huge_pages: HugePages::Default,
    stats: StatsAtExit::None,
    stats_file: None,
    background_thread: false,
    membarrier: true,
};

static LOADED: AtomicU8 = AtomicU8::new(0);
static RSEQ: AtomicU8 = AtomicU8::new(1);
static DECAY_MS: AtomicU64 = AtomicU64::new(DEFAULTS.decay_ms);
static CPU_CACHE_BYTES: AtomicU64 = AtomicU64::new(DEFAULTS.cpu_cache_bytes);
static DIRTY_MAX: AtomicU64 = AtomicU64::new(DEFAULTS.dirty_max);
static HUGE: AtomicU8 = AtomicU8::new(0);
static STATS: AtomicU8 = AtomicU8::new(0);
static BACKGROUND: AtomicU8 = AtomicU8::new(0);
static MEMBARRIER: AtomicU8 = AtomicU8::new(1);
static WARNINGS: AtomicU32 = AtomicU32::new(0);

/// Longest `stats_file` path (with its NUL).
const PATH_MAX: usize = 4096;

/// The `stats_file` path, absolute, written once by `load` before the options are published.
struct PathSlot {
    buf: core::cell::UnsafeCell<[u8; PATH_MAX]>,
    len: core::cell::UnsafeCell<usize>,
}

// SAFETY: written by one thread before LOADED is published as 2 (release), read only after
// LOADED is seen as 2 (acquire).
unsafe impl Sync for PathSlot {}

static STATS_FILE: PathSlot = PathSlot {
    buf: core::cell::UnsafeCell::new([0; PATH_MAX]),
    len: core::cell::UnsafeCell::new(0),
};

impl PathSlot {
    /// Stores `path`, made absolute against the current directory if it is relative (so a
    /// program that changes directory still writes where it was asked); None if it does not
    /// fit.
    ///
    /// # Safety
    /// Only by `load`, before LOADED is 2.
    unsafe fn set(&self, path: &[u8]) -> Option<&'static [u8]> {
        // SAFETY: the caller is the only one touching the slot now.
        let buf = unsafe { &mut *self.buf.get() };
        let mut n = 0;
        if path[0] != b'/' {
            if !os::current_dir(&mut buf[..PATH_MAX - path.len() - 1]) {
                return None;
            }
            n = buf.iter().position(|&b| b == 0)?;
            if n > 1 {
                buf[n] = b'/';
                n += 1;
            }
        }
        if n + path.len() >= PATH_MAX {
            return None;
        }
        buf[n..n + path.len()].copy_from_slice(path);
        n += path.len();
        buf[n] = 0;
        // SAFETY: as above.
        unsafe { *self.len.get() = n };
        // SAFETY: as in `get`.
        unsafe { self.get() }
    }

    /// The stored path, if any.
    ///
    /// # Safety
    /// Only after LOADED is 2.
    unsafe fn get(&self) -> Option<&'static [u8]> {
        // SAFETY: written before LOADED was published, never again.
        let n = unsafe { *self.len.get() };
        // SAFETY: as above.
        (n > 0).then(|| unsafe { &(&*self.buf.get())[..n] })
    }
}

/// The longest part of an item a warning quotes (escaped), so the line stays whole.
const QUOTED_MAX: usize = 120;

fn warn(what: &str, item: &[u8]) {
    WARNINGS.fetch_add(1, Ordering::Relaxed);
    let mut m = Msg::new();
    m.str("rseqmalloc: ignoring ")
        .str(what)
        .str(" in RSEQMALLOC_OPTIONS: '")
        .escaped(item, QUOTED_MAX)
        .str("' (default kept)");
    os::write_stderr(&m);
}

fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"on" | b"true" | b"yes" => Some(true),
        b"0" | b"off" | b"false" | b"no" => Some(false),
        _ => None,
    }
}

fn parse_size(v: &[u8]) -> Option<u64> {
    let (digits, mult) = match v.last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |a, &d| a * 10 + (d - b'0') as u64);
    n.checked_mul(mult)
}

/// Parses an option string into `opts`, warning about every bad item. Pure apart from the
/// warnings, so tests can call it directly.
pub fn parse_into(s: &'static [u8], opts: &mut Options) {
    for item in s.split(|&b| b == b',') {
        if item.is_empty() {
            continue;
        }
        let Some(eq) = item.iter().position(|&b| b == b'=') else {
            warn("malformed item", item);
            continue;
        };
        let (k, v) = (&item[..eq], &item[eq + 1..]);
        let ok = match k {
            b"rseq" => parse_bool(v).map(|b| opts.rseq = b).is_some(),
            b"background_thread" => parse_bool(v).map(|b| opts.background_thread = b).is_some(),
            b"membarrier" => parse_bool(v).map(|b| opts.membarrier = b).is_some(),
            b"decay_ms" => parse_size(v).map(|n| opts.decay_ms = n).is_some(),
            b"cpu_cache_bytes" => parse_size(v)
                .filter(|&n| n >= 4096)
                .map(|n| opts.cpu_cache_bytes = n)
                .is_some(),
            b"dirty_max" => parse_size(v).map(|n| opts.dirty_max = n).is_some(),
            b"huge_pages" => match v {
                b"default" => Some(HugePages::Default),
                b"always" | b"on" => Some(HugePages::Always),
                b"never" | b"off" => Some(HugePages::Never),
                _ => None,
            }
            .map(|h| opts.huge_pages = h)
            .is_some(),
            b"stats" => match v {
                b"none" | b"off" => Some(StatsAtExit::None),
                b"text" => Some(StatsAtExit::Text),
                b"json" => Some(StatsAtExit::Json),
                _ => None,
            }
            .map(|s| opts.stats = s)
            .is_some(),
            b"stats_file" => (!v.is_empty() && v.len() < PATH_MAX)
                .then(|| opts.stats_file = Some(v))
                .is_some(),
            _ => {
                warn("unknown key", item);
                continue;
            }
        };
        if !ok {
            warn("malformed value", item);
        }
    }
}

/// Reads `RSEQMALLOC_OPTIONS` once (later calls return at once).
pub fn load() {
    if LOADED.load(Ordering::Acquire) == 2 {
        return;
    }
    if LOADED
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread is parsing; it takes microseconds.
        while LOADED.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
        return;
    }
    os::output::capture_stderr();
    let mut o = DEFAULTS;
    if let Some(s) = os::getenv(b"RSEQMALLOC_OPTIONS") {
        parse_into(s, &mut o);
    }
    if let Some(path) = o.stats_file {
        // SAFETY: only this thread writes the slot, before LOADED says 2.
        o.stats_file = unsafe { STATS_FILE.set(path) };
        if o.stats == StatsAtExit::None {
            o.stats = StatsAtExit::Text;
        }
    }
    if o.stats != StatsAtExit::None && o.stats_file.is_none() {
        os::output::keep_stderr(); // the report at exit goes to the original stderr
    }
    RSEQ.store(o.rseq as u8, Ordering::Relaxed);
    DECAY_MS.store(o.decay_ms, Ordering::Relaxed);
    CPU_CACHE_BYTES.store(o.cpu_cache_bytes, Ordering::Relaxed);
    DIRTY_MAX.store(o.dirty_max, Ordering::Relaxed);
    HUGE.store(o.huge_pages as u8, Ordering::Relaxed);
    STATS.store(o.stats as u8, Ordering::Relaxed);
    BACKGROUND.store(o.background_thread as u8, Ordering::Relaxed);
    MEMBARRIER.store(o.membarrier as u8, Ordering::Relaxed);
    LOADED.store(2, Ordering::Release);
}

/// The options in force (loading them if needed).
pub fn get() -> Options {
    load();
    Options {
        rseq: RSEQ.load(Ordering::Relaxed) != 0,
        decay_ms: DECAY_MS.load(Ordering::Relaxed),
        cpu_cache_bytes: CPU_CACHE_BYTES.load(Ordering::Relaxed),
        dirty_max: DIRTY_MAX.load(Ordering::Relaxed),
        huge_pages: match HUGE.load(Ordering::Relaxed) {
            1 => HugePages::Always,
            2 => HugePages::Never,
            _ => HugePages::Default,
        },
        stats: match STATS.load(Ordering::Relaxed) {
            1 => StatsAtExit::Text,
            2 => StatsAtExit::Json,
            _ => StatsAtExit::None,
        },
        // SAFETY: LOADED is 2 (`load` above), so the slot is written and never changes.
        stats_file: unsafe { STATS_FILE.get() },
        background_thread: BACKGROUND.load(Ordering::Relaxed) != 0,
        membarrier: MEMBARRIER.load(Ordering::Relaxed) != 0,
    }
}

/// The options in force: `RSEQMALLOC_OPTIONS` over the defaults, read once (at start-up, or by
/// the first allocation if that comes earlier).
pub fn options() -> Options {
    get()
}

/// Warnings printed so far.
#[cfg(test)]
pub fn warnings() -> u32 {
    WARNINGS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_options_parse() {
        let mut o = DEFAULTS;
        parse_into(
            b"rseq=off,decay_ms=0,cpu_cache_bytes=1m,dirty_max=2m,huge_pages=never,stats=json,background_thread=on,membarrier=off",
            &mut o,
        );
        assert_eq!(
            o,
            Options {
                rseq: false,
                decay_ms: 0,
                cpu_cache_bytes: 1 << 20,
                dirty_max: 2 << 20,
                huge_pages: HugePages::Never,
                stats: StatsAtExit::Json,
                stats_file: None,
                background_thread: true,
                membarrier: false,
            }
        );
    }

    #[test]
    fn bad_options_warn_and_keep_defaults() {
        let before = warnings();
        let mut o = DEFAULTS;
        parse_into(
            b"bogus=1,rseq=maybe,decay_ms=12x,cpu_cache_bytes=1,noequals,,stats=loud",
            &mut o,
        );
        assert_eq!(o, DEFAULTS);
        assert_eq!(warnings() - before, 6);
    }
}
