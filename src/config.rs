//! Options: `key=value` items from a compiled-in string (`rseqmalloc_options`, see
//! [`compiled_in_options`](crate::os::compiled_in_options)) and then from
//! `RSEQMALLOC_OPTIONS`, read once without allocating; a few of them can also be changed while
//! the program runs ([`set_runtime`]).
//!
//! Owns: the option values, the table of keys ([`KEYS`]: accepted values, default, meaning),
//! parsing, the warnings about bad items, `help`. An unknown key or a malformed value prints one
//! warning line naming it (and what is accepted) and keeps the previous value; parsing never
//! fails the program.
//!
//! May call: `os`, `sync`.

use crate::os::{self, Msg};
use crate::sync::{AtomicBool, AtomicU64, AtomicU8, Backoff, Ordering};

/// What to print at exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatsAtExit {
    /// Nothing (default).
    None,
    /// A human-readable report.
    Text,
    /// One JSON object on one line.
    Json,
}

/// Transparent huge page policy for the page heap's chunks (`huge_pages`). Huge pages cut a
/// big heap's page faults by up to 512x and its TLB misses; each 2 MiB page that is only partly
/// used costs resident memory, and on a guest whose kernel reports free memory to its host a
/// fresh 2 MiB page can cost far more than 512 small faults (docs/design.md, "Huge pages").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HugePages {
    /// No advice: the system policy (`/sys/kernel/mm/transparent_hugepage/enabled`) decides.
    /// The default.
    System = 0,
    /// `madvise(MADV_HUGEPAGE)` on every chunk the heap maps after its first
    /// (`page_heap::HUGE_AUTO_FROM_CHUNK`): a heap that never grew past 32 MiB keeps 4 KiB
    /// pages; once it has, every later chunk is advised (even after `trim` unmapped some),
    /// at the cost of a few partly used 2 MiB pages (a few percent of a big heap).
    Auto = 1,
    /// `madvise(MADV_HUGEPAGE)` on every chunk.
    Always = 2,
    /// `madvise(MADV_NOHUGEPAGE)` on every chunk.
    Never = 3,
}

impl HugePages {
    /// The policy stored as `v` (`self as u8`); `System` for any other value.
    const fn from_u8(v: u8) -> Self {
        match v {
            1 => HugePages::Auto,
            2 => HugePages::Always,
            3 => HugePages::Never,
            _ => HugePages::System,
        }
    }
}

/// The options in force (see the crate documentation's table, or `RSEQMALLOC_OPTIONS=help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Use rseq when available (`rseq=on|off`).
    pub rseq: bool,
    /// Free pages are returned to the OS after this many ms (`decay_ms`, 0 = at once).
    pub decay_ms: u64,
    /// Upper bound of one per-CPU cache in bytes (`cpu_cache_bytes`, accepts k/m/g suffixes),
    /// outside the burst tier, whose classes may hold twice as much more.
    pub cpu_cache_bytes: u64,
    /// Free pages the page heap keeps resident at most before releasing at once (`dirty_max`,
    /// bytes with k/m/g suffixes; `u64::MAX`, unbounded, by default: decay alone).
    pub dirty_max: u64,
    /// Huge page policy (`huge_pages=system|auto|always|never`).
    pub huge_pages: HugePages,
    /// Statistics at exit (`stats=none|text|json`).
    pub stats: StatsAtExit,
    /// Where the statistics at exit go (`stats_file=PATH`, `%p` for the pid): a file instead of
    /// stderr; `stats=text` if `stats` is not set.
    pub stats_file: Option<&'static [u8]>,
    /// The text report lists every size class in use (`stats_classes=on`; JSON always does).
    pub stats_classes: bool,
    /// One line at start-up: version, rseq mode, id kind, options (`verbose=on`).
    pub verbose: bool,
    /// Run maintenance (decay, idle drains) from a background thread (`background_thread=on`),
    /// started once the program has a second thread (docs/tuning.md).
    pub background_thread: bool,
    /// Use `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` to drain other CPUs' caches
    /// (`membarrier=on|off`); `off` behaves as on a kernel without it.
    pub membarrier: bool,
    /// `librseqmalloc.so` only: `dlopen` drops `RTLD_DEEPBIND`, so that the library opened
    /// binds `malloc` and friends to the process's allocator (`deepbind=strip`, the default);
    /// `deepbind=keep` passes the flag on.
    pub strip_deepbind: bool,
    /// Owner return (`owner_return=on|off`): a C `free` of an object another CPU's cache
    /// carved sends it back there (rseq modes; docs/design.md, "Owner return").
    pub owner_return: bool,
    /// Owned spans (`owned_spans=on|off`, on by default): C allocations and frees of the classes
    /// of 288 B to 960 B (and, on a thread, of 32-256 B once its CPU's stack of the class was
    /// seen idle) use spans each CPU's slab owns, one critical section per `malloc` and per
    /// `free` on the owner's CPU (the rseq modes with the membarrier, and fallback mode, which
    /// runs the sections' steps under the slab's lock; docs/design.md, "Owned spans").
    pub owned_spans: bool,
}

/// The defaults, also what a malformed value leaves in place.
pub const DEFAULTS: Options = Options {
    rseq: true,
    decay_ms: 1000,
    cpu_cache_bytes: 512 << 10,
    dirty_max: u64::MAX,
    huge_pages: HugePages::System,
    stats: StatsAtExit::None,
    stats_file: None,
    stats_classes: false,
    verbose: false,
    background_thread: false,
    membarrier: true,
    strip_deepbind: true,
    owner_return: true,
    owned_spans: true,
};

/// One option key, as `help` and the warnings describe it.
pub struct Key {
    /// The key.
    pub name: &'static str,
    /// The values it accepts.
    pub accepts: &'static str,
    /// Its default, as written in an option string.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
    /// Whether [`set_runtime`] may change it while the program runs.
    pub runtime: bool,
}

/// Every key, in the order `help` lists them.
pub const KEYS: [Key; 14] = [
    Key {
        name: "rseq",
        accepts: "on|off",
        default: "on",
        meaning: "off forces the locked fallback path (per-CPU slabs under locks)",
        runtime: false,
    },
    Key {
        name: "decay_ms",
        accepts: "milliseconds",
        default: "1000",
        meaning: "free pages go back to the OS after this long (0: at once)",
        runtime: true,
    },
    Key {
        name: "cpu_cache_bytes",
        accepts: "bytes >= 4k, k/m/g suffixes",
        default: "512k",
        meaning: "byte bound of one per-CPU cache",
        runtime: true,
    },
    Key {
        name: "dirty_max",
        accepts: "bytes with k/m/g suffixes, or unbounded",
        default: "unbounded",
        meaning: "free pages kept resident at most; past it a freed span is released at once",
        runtime: true,
    },
    Key {
        name: "huge_pages",
        accepts: "system|auto|always|never",
        default: "system",
        meaning: "madvise (NO)HUGEPAGE on heap chunks mapped from now on (auto: past the first)",
        runtime: true,
    },
    Key {
        name: "stats",
        accepts: "none|text|json",
        default: "none",
        meaning: "print statistics at exit",
        runtime: true,
    },
    Key {
        name: "stats_file",
        accepts: "a path; %p is the pid",
        default: "unset",
        meaning: "write the statistics at exit to this file instead of stderr (implies stats=text)",
        runtime: false,
    },
    Key {
        name: "stats_classes",
        accepts: "on|off",
        default: "off",
        meaning: "the text report lists every size class in use (JSON always does)",
        runtime: true,
    },
    Key {
        name: "verbose",
        accepts: "on|off",
        default: "off",
        meaning: "one line at start-up: version, rseq mode, id kind, options in effect",
        runtime: false,
    },
    Key {
        name: "background_thread",
        accepts: "on|off",
        default: "off",
        meaning: "a thread runs the decay tick too, so an idle program gives memory back",
        runtime: false,
    },
    Key {
        name: "membarrier",
        accepts: "on|off",
        default: "on",
        meaning: "off drains as on a kernel without the rseq membarrier (testing)",
        runtime: false,
    },
    Key {
        name: "deepbind",
        accepts: "strip|keep",
        default: "strip",
        meaning: "librseqmalloc.so: dlopen drops RTLD_DEEPBIND so the library shares this malloc; \
                  keep passes it on (blocks crossing between library and program then abort)",
        runtime: false,
    },
    Key {
        name: "owner_return",
        accepts: "on|off",
        default: "on",
        meaning: "a C free of an object another CPU's cache carved sends it back there \
                  (off: it stays in the freeing CPU's cache)",
        runtime: false,
    },
    Key {
        name: "owned_spans",
        accepts: "on|off",
        default: "on",
        meaning:
            "C allocations and frees of the classes of 288-960 B (of 32-256 B once idle) use spans \
                  each CPU's cache owns (rseq modes with the membarrier, fallback mode; \
                  ignored elsewhere)",
        runtime: false,
    },
];

static LOADED: AtomicU8 = AtomicU8::new(0);
static RSEQ: AtomicBool = AtomicBool::new(DEFAULTS.rseq);
static DECAY_MS: AtomicU64 = AtomicU64::new(DEFAULTS.decay_ms);
static CPU_CACHE_BYTES: AtomicU64 = AtomicU64::new(DEFAULTS.cpu_cache_bytes);
/// The largest `cpu_cache_bytes` stored so far ([`cpu_cache_bytes_high`]).
static CPU_CACHE_BYTES_HIGH: AtomicU64 = AtomicU64::new(0);
static DIRTY_MAX: AtomicU64 = AtomicU64::new(DEFAULTS.dirty_max);
static HUGE: AtomicU8 = AtomicU8::new(DEFAULTS.huge_pages as u8);
static STATS: AtomicU8 = AtomicU8::new(0);
static STATS_CLASSES: AtomicBool = AtomicBool::new(DEFAULTS.stats_classes);
static VERBOSE: AtomicBool = AtomicBool::new(DEFAULTS.verbose);
static BACKGROUND: AtomicBool = AtomicBool::new(DEFAULTS.background_thread);
static MEMBARRIER: AtomicBool = AtomicBool::new(DEFAULTS.membarrier);
static OWNER_RETURN: AtomicBool = AtomicBool::new(DEFAULTS.owner_return);
static OWNED_SPANS: AtomicBool = AtomicBool::new(DEFAULTS.owned_spans);
static STRIP_DEEPBIND: AtomicBool = AtomicBool::new(DEFAULTS.strip_deepbind);
#[cfg(test)]
static WARNINGS: crate::sync::AtomicU32 = crate::sync::AtomicU32::new(0);

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
const QUOTED_MAX: usize = 100;

/// One warning line about `item` of the option string from `source`, then `hint`.
fn warn(source: &str, what: &str, item: &[u8], hint: &[&str]) {
    #[cfg(test)]
    WARNINGS.fetch_add(1, Ordering::Relaxed);
    let mut m = Msg::<512>::empty();
    m.str("rseqmalloc: ignoring ")
        .str(what)
        .str(" in ")
        .str(source)
        .str(": '")
        .escaped(item, QUOTED_MAX)
        .str("' (");
    for h in hint {
        m.str(h);
    }
    m.str(")");
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

/// Sets key `k` of `opts` from `v`; false if `v` is malformed, None if `k` is unknown.
/// (`stats_file`, which keeps the string, is `parse_into`'s.)
fn parse_value(k: &[u8], v: &[u8], opts: &mut Options) -> Option<bool> {
    let ok = match k {
        b"rseq" => parse_bool(v).map(|b| opts.rseq = b).is_some(),
        b"background_thread" => parse_bool(v).map(|b| opts.background_thread = b).is_some(),
        b"membarrier" => parse_bool(v).map(|b| opts.membarrier = b).is_some(),
        b"owner_return" => parse_bool(v).map(|b| opts.owner_return = b).is_some(),
        b"owned_spans" => parse_bool(v).map(|b| opts.owned_spans = b).is_some(),
        b"verbose" => parse_bool(v).map(|b| opts.verbose = b).is_some(),
        b"stats_classes" => parse_bool(v).map(|b| opts.stats_classes = b).is_some(),
        b"deepbind" => match v {
            b"strip" => Some(true),
            b"keep" => Some(false),
            _ => None,
        }
        .map(|b| opts.strip_deepbind = b)
        .is_some(),
        b"decay_ms" => parse_size(v).map(|n| opts.decay_ms = n).is_some(),
        b"cpu_cache_bytes" => parse_size(v)
            .filter(|&n| n >= 4096)
            .map(|n| opts.cpu_cache_bytes = n)
            .is_some(),
        b"dirty_max" => match v {
            b"unbounded" => Some(u64::MAX),
            _ => parse_size(v),
        }
        .map(|n| opts.dirty_max = n)
        .is_some(),
        b"huge_pages" => match v {
            b"system" | b"default" => Some(HugePages::System),
            b"auto" => Some(HugePages::Auto),
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
        _ => return None,
    };
    Some(ok)
}

/// The table entry of key `k`.
fn key(k: &[u8]) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name.as_bytes() == k)
}

/// An item's key and value, white space around each removed; None without `=`.
fn key_value(item: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = item.iter().position(|&b| b == b'=')?;
    Some((item[..eq].trim_ascii(), item[eq + 1..].trim_ascii()))
}

/// Parses an option string (from `source`, named in warnings) into `opts`: items separated by
/// commas, white space around items, keys and values ignored. Warns about every bad item.
/// Returns whether the string asked for `help`. Pure apart from the warnings, so tests can call
/// it directly.
pub fn parse_into(s: &'static [u8], source: &str, opts: &mut Options) -> bool {
    let mut help = false;
    for item in s.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue;
        }
        if item == b"help" {
            help = true;
            continue;
        }
        let Some((k, v)) = key_value(item) else {
            warn(
                source,
                "malformed item",
                item,
                &["not key=value; previous value kept; ", SEE_HELP],
            );
            continue;
        };
        let parsed = if k == b"stats_file" {
            let ok = !v.is_empty() && v.len() < PATH_MAX - 1;
            if ok {
                opts.stats_file = Some(v);
            }
            Some(ok)
        } else {
            parse_value(k, v, opts)
        };
        match parsed {
            Some(true) => {}
            Some(false) => {
                let accepts = key(k).map_or("", |k| k.accepts);
                warn(
                    source,
                    "malformed value",
                    item,
                    &["accepted: ", accepts, "; previous value kept"],
                );
            }
            None => warn(source, "unknown key", item, &["no such key; ", SEE_HELP]),
        }
    }
    help
}

const SEE_HELP: &str = "RSEQMALLOC_OPTIONS=help lists the keys";

/// Writes the value of key `k` in `o` as an option string would give it; false for an unknown
/// key.
pub fn write_value<const N: usize>(m: &mut Msg<N>, k: &[u8], o: &Options) -> bool {
    let on_off = |b: bool| if b { "on" } else { "off" };
    let size = |m: &mut Msg<N>, v: u64| {
        if v == u64::MAX {
            m.str("unbounded");
        } else if v != 0 && v.is_multiple_of(1 << 30) {
            m.dec(v >> 30).str("g");
        } else if v != 0 && v.is_multiple_of(1 << 20) {
            m.dec(v >> 20).str("m");
        } else if v != 0 && v.is_multiple_of(1 << 10) {
            m.dec(v >> 10).str("k");
        } else {
            m.dec(v);
        }
    };
    match k {
        b"rseq" => m.str(on_off(o.rseq)),
        b"decay_ms" => m.dec(o.decay_ms),
        b"cpu_cache_bytes" => {
            size(m, o.cpu_cache_bytes);
            m
        }
        b"dirty_max" => {
            size(m, o.dirty_max);
            m
        }
        b"huge_pages" => m.str(match o.huge_pages {
            HugePages::System => "system",
            HugePages::Auto => "auto",
            HugePages::Always => "always",
            HugePages::Never => "never",
        }),
        b"stats" => m.str(match o.stats {
            StatsAtExit::None => "none",
            StatsAtExit::Text => "text",
            StatsAtExit::Json => "json",
        }),
        b"stats_file" => match o.stats_file {
            Some(p) => m.escaped(p, 200),
            None => m.str("unset"),
        },
        b"stats_classes" => m.str(on_off(o.stats_classes)),
        b"verbose" => m.str(on_off(o.verbose)),
        b"background_thread" => m.str(on_off(o.background_thread)),
        b"membarrier" => m.str(on_off(o.membarrier)),
        b"owner_return" => m.str(on_off(o.owner_return)),
        b"owned_spans" => m.str(on_off(o.owned_spans)),
        b"deepbind" => m.str(if o.strip_deepbind { "strip" } else { "keep" }),
        _ => return false,
    };
    true
}

/// Writes every option of `o` as `key=value,…`.
pub fn write_options<const N: usize>(m: &mut Msg<N>, o: &Options) {
    for (i, k) in KEYS.iter().enumerate() {
        if k.name == "stats_file" && o.stats_file.is_none() {
            continue;
        }
        if i > 0 {
            m.str(",");
        }
        m.str(k.name).str("=");
        write_value(m, k.name.as_bytes(), o);
    }
}

/// Prints every key, what it accepts, its default and meaning, one line each.
fn print_help() {
    let mut m = Msg::<512>::empty();
    m.str("rseqmalloc: RSEQMALLOC_OPTIONS=\"key=value,...\" (or a compiled-in rseqmalloc_options string, which RSEQMALLOC_OPTIONS overrides); keys:");
    os::write_stderr(&m);
    for k in &KEYS {
        let mut m = Msg::<512>::empty();
        m.str("rseqmalloc:   ")
            .str(k.name)
            .str("=")
            .str(k.accepts)
            .str(" (default ")
            .str(k.default)
            .str(if k.runtime {
                ", changeable at run time"
            } else {
                ""
            })
            .str("): ")
            .str(k.meaning);
        os::write_stderr(&m);
    }
}

/// A compiled-in options string, laid out as C's `const char *`. [`options!`](crate::options!)
/// no longer builds one (it defines the symbol in assembly, weak, and uses only the helpers
/// below); a hand-written `#[no_mangle] static rseqmalloc_options: CompiledOptions` still works
/// but, being a strong definition, does not build under `lto = "fat"`: use the macro.
#[repr(transparent)]
pub struct CompiledOptions(*const core::ffi::c_char);

// SAFETY: the pointer comes from a `&'static CStr`: immutable and valid for the whole program.
unsafe impl Sync for CompiledOptions {}

impl CompiledOptions {
    /// The options string `s` (`key=value,...`).
    pub const fn new(s: &'static core::ffi::CStr) -> Self {
        CompiledOptions(s.as_ptr())
    }

    /// For [`options!`](crate::options!): whether `s` ends with its only NUL byte.
    #[doc(hidden)]
    pub const fn nul_only_at_end(s: &str) -> bool {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if (b[i] == 0) != (i + 1 == b.len()) {
                return false;
            }
            i += 1;
        }
        !b.is_empty()
    }

    /// For [`options!`](crate::options!): the bytes of `s` as an array (`N` = `s.len()`).
    #[doc(hidden)]
    pub const fn bytes<const N: usize>(s: &str) -> [u8; N] {
        let b = s.as_bytes();
        assert!(b.len() == N);
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = b[i];
            i += 1;
        }
        out
    }
}

/// Compiles default options into a Rust program, like jemalloc's `malloc_conf`:
/// `rseqmalloc::options!("decay_ms=250,stats=text");` at the top level of the binary crate.
///
/// They apply before `RSEQMALLOC_OPTIONS`, which overrides them key by key. It defines the
/// symbol `rseqmalloc_options`, a `const char *` as C programs define it
/// (`const char *rseqmalloc_options = "...";`); define it once per program, in the binary, not
/// in a library. The definition is weak: the library refers to the symbol weakly, and under
/// `lto = "fat"` both meet in one object, where a strong definition does not assemble
/// ("rseqmalloc_options changed binding to STB_GLOBAL"). Being weak, a second definition is no
/// longer a link error: a strong one in an object the program links wins, one in a static
/// archive is not pulled in for it (the weak one already satisfies the reference), and of two
/// weak ones the linker keeps the first.
#[macro_export]
macro_rules! options {
    ($s:literal) => {
        #[doc(hidden)]
        mod __rseqmalloc_options {
            const TEXT: &str = ::core::concat!($s, "\0");
            const _: () = ::core::assert!(
                $crate::CompiledOptions::nul_only_at_end(TEXT),
                "rseqmalloc::options!: the string holds a NUL byte"
            );
            static BYTES: [u8; TEXT.len()] = $crate::CompiledOptions::bytes(TEXT);
            ::core::arch::global_asm!(
                ".pushsection .data.rel.ro.rseqmalloc_options,\"aw\",%progbits",
                ".balign 8",
                ".weak rseqmalloc_options",
                ".type rseqmalloc_options,%object",
                ".size rseqmalloc_options, 8",
                "rseqmalloc_options:",
                ".8byte {text}",
                ".popsection",
                text = sym BYTES,
            );
        }
    };
}

/// Reads the options once (later calls return at once): the compiled-in string, then
/// `RSEQMALLOC_OPTIONS`, over the defaults.
pub fn load() {
    if LOADED.load(Ordering::Acquire) == 2 {
        return;
    }
    if LOADED
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread is parsing; it takes microseconds (unless it was preempted).
        let mut backoff = Backoff::new();
        while LOADED.load(Ordering::Acquire) != 2 {
            backoff.snooze();
        }
        return;
    }
    os::output::capture_stderr();
    let mut o = DEFAULTS;
    let mut help = false;
    if let Some(s) = os::compiled_in_options() {
        help |= parse_into(s, "rseqmalloc_options", &mut o);
    }
    if let Some(s) = os::getenv(b"RSEQMALLOC_OPTIONS") {
        help |= parse_into(s, "RSEQMALLOC_OPTIONS", &mut o);
    }
    if help {
        print_help();
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
    store(&o);
    RSEQ.store(o.rseq, Ordering::Relaxed);
    VERBOSE.store(o.verbose, Ordering::Relaxed);
    BACKGROUND.store(o.background_thread, Ordering::Relaxed);
    MEMBARRIER.store(o.membarrier, Ordering::Relaxed);
    OWNER_RETURN.store(o.owner_return, Ordering::Relaxed);
    OWNED_SPANS.store(o.owned_spans, Ordering::Relaxed);
    STRIP_DEEPBIND.store(o.strip_deepbind, Ordering::Relaxed);
    LOADED.store(2, Ordering::Release);
}

/// Stores the options that may change at run time.
fn store(o: &Options) {
    DECAY_MS.store(o.decay_ms, Ordering::Relaxed);
    CPU_CACHE_BYTES.store(o.cpu_cache_bytes, Ordering::Relaxed);
    CPU_CACHE_BYTES_HIGH.fetch_max(o.cpu_cache_bytes, Ordering::Relaxed);
    DIRTY_MAX.store(o.dirty_max, Ordering::Relaxed);
    HUGE.store(o.huge_pages as u8, Ordering::Relaxed);
    STATS.store(o.stats as u8, Ordering::Relaxed);
    STATS_CLASSES.store(o.stats_classes, Ordering::Relaxed);
}

/// The largest `cpu_cache_bytes` in force at any time so far, in bytes: what the per-CPU
/// caches' capacities may still add up to. A bound lowered at run time applies as capacities
/// grow and to a slab laid out again (any drain: idle, `flush`, `purge`/`trim`); capacities laid
/// out under an earlier, larger bound keep their size until then (`percpu`'s slab check allows
/// for it).
#[cfg(any(test, feature = "fuzzing"))]
pub fn cpu_cache_bytes_high() -> u64 {
    load();
    CPU_CACHE_BYTES_HIGH
        .load(Ordering::Relaxed)
        .max(CPU_CACHE_BYTES.load(Ordering::Relaxed))
}

/// The options in force (loading them if needed).
pub fn get() -> Options {
    load();
    Options {
        rseq: RSEQ.load(Ordering::Relaxed),
        decay_ms: DECAY_MS.load(Ordering::Relaxed),
        cpu_cache_bytes: CPU_CACHE_BYTES.load(Ordering::Relaxed),
        dirty_max: DIRTY_MAX.load(Ordering::Relaxed),
        huge_pages: HugePages::from_u8(HUGE.load(Ordering::Relaxed)),
        stats: match STATS.load(Ordering::Relaxed) {
            1 => StatsAtExit::Text,
            2 => StatsAtExit::Json,
            _ => StatsAtExit::None,
        },
        // SAFETY: LOADED is 2 (`load` above), so the slot is written and never changes.
        stats_file: unsafe { STATS_FILE.get() },
        stats_classes: STATS_CLASSES.load(Ordering::Relaxed),
        verbose: VERBOSE.load(Ordering::Relaxed),
        background_thread: BACKGROUND.load(Ordering::Relaxed),
        membarrier: MEMBARRIER.load(Ordering::Relaxed),
        owner_return: OWNER_RETURN.load(Ordering::Relaxed),
        owned_spans: OWNED_SPANS.load(Ordering::Relaxed),
        strip_deepbind: STRIP_DEEPBIND.load(Ordering::Relaxed),
    }
}

/// The options in force: the compiled-in `rseqmalloc_options` string, then
/// `RSEQMALLOC_OPTIONS`, over the defaults — read once, at start-up or at the first
/// allocation if that comes earlier — and any change made since with [`crate::ctl`].
pub fn options() -> Options {
    get()
}

/// Why [`set_runtime`] refused an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetError {
    /// No such key.
    UnknownKey,
    /// Not `key=value`, or a value the key does not accept.
    Malformed,
    /// The key is read at start-up only.
    NotAtRunTime,
}

/// Changes one option (`key=value`) while the program runs; only keys marked `runtime` in
/// [`KEYS`].
pub fn set_runtime(item: &[u8]) -> Result<(), SetError> {
    let (k, v) = key_value(item).ok_or(SetError::Malformed)?;
    let entry = key(k).ok_or(SetError::UnknownKey)?;
    if !entry.runtime {
        return Err(SetError::NotAtRunTime);
    }
    let mut o = get();
    match parse_value(k, v, &mut o) {
        Some(true) => {
            store(&o);
            Ok(())
        }
        _ => Err(SetError::Malformed),
    }
}

/// Warnings printed so far.
#[cfg(test)]
pub fn warnings() -> u32 {
    WARNINGS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `huge_pages` takes every policy by name; `default` is `system`, the default.
    #[test]
    fn huge_page_policies_parse() {
        assert_eq!(DEFAULTS.huge_pages, HugePages::System);
        for (v, want) in [
            (&b"huge_pages=auto"[..], HugePages::Auto),
            (b"huge_pages=default", HugePages::System),
            (b"huge_pages=always", HugePages::Always),
            (b"huge_pages=never", HugePages::Never),
            (b"huge_pages=system", HugePages::System),
        ] {
            let mut o = Options {
                huge_pages: HugePages::Never,
                ..DEFAULTS
            };
            if want == HugePages::Never {
                o.huge_pages = HugePages::Auto;
            }
            assert!(!parse_into(v, "test", &mut o));
            assert_eq!(o.huge_pages, want, "{v:?}");
            // And through the byte the run-time options are kept in.
            assert_eq!(HugePages::from_u8(want as u8), want);
        }
    }

    #[test]
    fn good_options_parse() {
        let mut o = DEFAULTS;
        let help = parse_into(
            b"rseq=off,decay_ms=0,cpu_cache_bytes=1m,dirty_max=2m,huge_pages=never,stats=json,\
              stats_classes=on,verbose=on,background_thread=on,membarrier=off,deepbind=keep,\
              owner_return=off,owned_spans=off",
            "test",
            &mut o,
        );
        assert!(!help);
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
                stats_classes: true,
                verbose: true,
                background_thread: true,
                membarrier: false,
                strip_deepbind: false,
                owner_return: false,
                owned_spans: false,
            }
        );
    }

    #[test]
    fn items_are_trimmed_and_help_is_seen() {
        let mut o = DEFAULTS;
        let before = warnings();
        let help = parse_into(b" stats = text , rseq=off ,\thelp , ", "test", &mut o);
        assert!(help);
        assert_eq!(warnings(), before);
        assert_eq!((o.stats, o.rseq), (StatsAtExit::Text, false));
    }

    #[test]
    fn bad_options_warn_and_keep_defaults() {
        let before = warnings();
        let mut o = DEFAULTS;
        parse_into(
            b"bogus=1,rseq=maybe,decay_ms=12x,cpu_cache_bytes=1,noequals,,stats=loud",
            "test",
            &mut o,
        );
        assert_eq!(o, DEFAULTS);
        assert_eq!(warnings() - before, 6);
    }

    #[test]
    fn the_options_line_reads_back_as_the_same_options() {
        let mut o = DEFAULTS;
        parse_into(
            b"decay_ms=250,dirty_max=3g,cpu_cache_bytes=4100",
            "test",
            &mut o,
        );
        let mut m = Msg::<1024>::empty();
        write_options(&mut m, &o);
        let line: &'static [u8] = std::vec::Vec::leak(m.as_bytes().to_vec());
        let mut again = DEFAULTS;
        let before = warnings();
        parse_into(line, "test", &mut again);
        assert_eq!(warnings(), before, "{:?}", core::str::from_utf8(line));
        assert_eq!(again, o);
        assert!(line.starts_with(b"rseq=on,decay_ms=250,cpu_cache_bytes=4100,dirty_max=3g,"));
    }
}
