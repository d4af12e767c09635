//! glibc's own malloc extensions: `malloc_trim`, `mallopt`, `mallinfo`, `mallinfo2`,
//! `malloc_info`, `malloc_stats`, so that a program calling them never reaches glibc's
//! allocator. Each answers from rseqmalloc's figures in glibc's shape (see each function).

use core::ffi::{c_int, c_void};
use rseq::ffi::{print_stderr, Msg};

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

/// glibc's `struct mallinfo`: [`Mallinfo2`]'s fields as `int` (truncated, as glibc does).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo {
    /// See [`Mallinfo2::arena`].
    pub arena: c_int,
    /// See [`Mallinfo2::ordblks`].
    pub ordblks: c_int,
    /// See [`Mallinfo2::smblks`].
    pub smblks: c_int,
    /// See [`Mallinfo2::hblks`].
    pub hblks: c_int,
    /// See [`Mallinfo2::hblkhd`].
    pub hblkhd: c_int,
    /// See [`Mallinfo2::usmblks`].
    pub usmblks: c_int,
    /// See [`Mallinfo2::fsmblks`].
    pub fsmblks: c_int,
    /// See [`Mallinfo2::uordblks`].
    pub uordblks: c_int,
    /// See [`Mallinfo2::fordblks`].
    pub fordblks: c_int,
    /// See [`Mallinfo2::keepcost`].
    pub keepcost: c_int,
}

/// `mallinfo(3)` (deprecated in glibc, still exported): [`mallinfo2`]'s figures, each
/// truncated to `int` as glibc does.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallinfo() -> Mallinfo {
    // SAFETY: always safe.
    let m = unsafe { mallinfo2() };
    Mallinfo {
        arena: m.arena as c_int,
        ordblks: m.ordblks as c_int,
        smblks: m.smblks as c_int,
        hblks: m.hblks as c_int,
        hblkhd: m.hblkhd as c_int,
        usmblks: m.usmblks as c_int,
        fsmblks: m.fsmblks as c_int,
        uordblks: m.uordblks as c_int,
        fordblks: m.fordblks as c_int,
        keepcost: m.keepcost as c_int,
    }
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
    print_stderr(&m);
}

/// `malloc_stats(3)`: a few lines on stderr (descriptor 2 as it is now, as glibc's) in glibc's
/// format, each written whole with one `write(2)`, without allocating.
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
    print_stderr(&m);
    stats_line("system bytes", s.mapped);
    stats_line("in use bytes", s.allocated);
    stats_line("active bytes", s.active);
    stats_line("resident bytes", s.resident);
    stats_line("free bytes", s.free);
    stats_line("released bytes", s.released);
    stats_line("metadata bytes", s.metadata);
}

/// glibc's `mallopt` parameters (`<malloc.h>`).
const M_MXFAST: c_int = 1;
const M_TRIM_THRESHOLD: c_int = -1;

/// `mallopt(3)`: accepts every parameter glibc 2.36 does and returns what it returns: 1, or 0
/// for an `M_MXFAST` above 160 bytes (a negative one included: glibc reads it as `size_t`);
/// unknown parameters give 1 too. One has a meaning here: `M_TRIM_THRESHOLD`
/// sets the option `dirty_max` (free memory kept resident before it is given back; negative:
/// unbounded). The others (`M_TOP_PAD`, `M_MMAP_THRESHOLD`, `M_MMAP_MAX`, `M_ARENA_MAX`,
/// `M_ARENA_TEST`, `M_PERTURB`, `M_CHECK_ACTION`, `M_MXFAST`) tune structures rseqmalloc does
/// not have and change nothing.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    let as_size = value as isize as usize; // glibc's helpers take a size_t
    match param {
        M_MXFAST => c_int::from(as_size <= 80 * core::mem::size_of::<usize>() / 4),
        M_TRIM_THRESHOLD => {
            let mut item = Msg::<64>::empty();
            item.str("dirty_max=");
            if value < 0 {
                item.str("unbounded");
            } else {
                item.dec(value as u64);
            }
            // A valid value of a run-time option: cannot fail.
            let _ = rseq::ctl(item.as_bytes(), &mut []);
            1
        }
        _ => 1,
    }
}

/// A piece of `malloc_info`'s XML: a few lines, written with one `fwrite`.
type Block = Msg<1024>;

/// `malloc_info(3)`: XML of glibc's shape on `stream` (`options` must be 0, else `EINVAL` is
/// returned, as glibc does). One heap (`nr="0"`); its `<size>` entries are the size classes
/// holding cached free objects (`from`..`to` bytes, `count` objects, `total` bytes); `rest`
/// counts those objects and adds the bytes of free page runs; `system` and `aspace` are the
/// address space mapped; `fast` and `mmap` are 0 (no fast bins; huge objects count in the
/// heap).
///
/// # Safety
/// `stream` is a valid `FILE *` open for writing.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
    if options != 0 {
        return libc::EINVAL;
    }
    let s = rseq::stats();
    let put = |m: &Block| {
        let b = m.as_bytes();
        // SAFETY: the caller's stream; fwrite reads our buffer.
        unsafe { libc::fwrite(b.as_ptr().cast::<c_void>(), 1, b.len(), stream) };
    };
    let line = |m: &mut Block, text: &str| {
        m.str(text).str("\n");
    };
    let mut m = Block::empty();
    line(&mut m, "<malloc version=\"1\">");
    line(&mut m, "<heap nr=\"0\">");
    line(&mut m, "<sizes>");
    put(&m);
    let (mut count, mut bytes) = (0usize, 0usize);
    let mut from = 1;
    for c in 1..s.class_size.len() {
        let (size, cached) = (s.class_size[c], s.class_cached[c]);
        if cached > 0 {
            let mut m = Block::empty();
            m.str("  <size from=\"")
                .dec(from as u64)
                .str("\" to=\"")
                .dec(size as u64)
                .str("\" total=\"")
                .dec((cached * size) as u64)
                .str("\" count=\"")
                .dec(cached as u64)
                .str("\"/>\n");
            put(&m);
            count += cached;
            bytes += cached * size;
        }
        from = size + 1;
    }
    let totals = |m: &mut Block| {
        m.str("<total type=\"fast\" count=\"0\" size=\"0\"/>\n<total type=\"rest\" count=\"")
            .dec(count as u64)
            .str("\" size=\"")
            .dec((bytes + s.free) as u64)
            .str("\"/>\n");
    };
    let system = |m: &mut Block| {
        for (kind, ty) in [
            ("system", "current"),
            ("system", "max"),
            ("aspace", "total"),
            ("aspace", "mprotect"),
        ] {
            m.str("<")
                .str(kind)
                .str(" type=\"")
                .str(ty)
                .str("\" size=\"")
                .dec(s.mapped as u64)
                .str("\"/>\n");
        }
    };
    let mut m = Block::empty();
    line(&mut m, "</sizes>");
    totals(&mut m);
    system(&mut m);
    line(&mut m, "</heap>");
    put(&m);
    let mut m = Block::empty();
    totals(&mut m);
    line(&mut m, "<total type=\"mmap\" count=\"0\" size=\"0\"/>");
    system(&mut m);
    line(&mut m, "</malloc>");
    put(&m);
    0
}
