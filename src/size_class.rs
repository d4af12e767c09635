//! Size classes: compile-time tables mapping a request to a class and a class to its size,
//! span length, batch size and per-CPU capacity.
//!
//! Owns: the class geometry. Classes are 16, 32, 48, 64 bytes, then eight classes per power of
//! two (spacing 1/8 of the lower bound) up to [`MAX_SMALL`], so a request above 64 B wastes at
//! most 12.5 % and the lookup is a few shifts with no loop. Above 1 KiB every class that is not
//! a power of two is one cache line smaller than that grid's step ([`LINE_OFFSET`]), an odd
//! number of lines, so a span's objects' first lines fall in as many cache sets as there are
//! objects (up to 64). Class 0 means "not small".
//!
//! May call: nothing (pure data).

/// Allocator page: the unit of spans and of the page map.
pub const PAGE_SHIFT: usize = 13;
/// 8 KiB.
pub const PAGE: usize = 1 << PAGE_SHIFT;

/// Largest size served from size classes (256 KiB); above it, whole spans.
pub const MAX_SMALL: usize = 256 << 10;
/// Number of classes including the unused class 0.
pub const NUM_CLASSES: usize = 101;

/// Size of each class in bytes (`CLASS_SIZE[0]` = 0).
pub const CLASS_SIZE: [u32; NUM_CLASSES] = build_sizes();
/// Pages per span of each class once the heap is large (spans of at least 64 KiB).
pub static CLASS_PAGES: [u16; NUM_CLASSES] = build_pages(MIN_SPAN_PAGES);
/// Pages per span of each class while the heap is small (spans of at least one page), so a
/// program touching many classes does not pay 64 KiB for each.
pub static CLASS_PAGES_SMALL_HEAP: [u16; NUM_CLASSES] = build_pages(1);
/// Objects moved at once between a per-CPU cache and the central lists.
pub static CLASS_BATCH: [u16; NUM_CLASSES] = build_batch();
/// Maximum number of objects a per-CPU cache holds for each class: 256 KiB worth (half the
/// default `cpu_cache_bytes`), at least 2, at most 4096 — so a burst of up to 4096 small
/// objects, or 256 KiB of larger ones, stays in the per-CPU cache.
pub static CLASS_CAPACITY: [u16; NUM_CLASSES] = build_capacity();
/// Largest size a class may have for its per-CPU cache to go past [`CLASS_CAPACITY`] for a
/// burst ([`CLASS_BURST_CAPACITY`]).
pub const BURST_CLASS_MAX: usize = 4096;
/// Maximum number of objects a per-CPU cache holds for each class while one thread's bursts
/// outgrow [`CLASS_CAPACITY`] (the burst tier, `percpu::slab`, "Capacity policy"): four times
/// `CLASS_CAPACITY` (so two doublings reach it exactly: 1 MiB worth, at most 16,384 objects)
/// for classes up to [`BURST_CLASS_MAX`]; the same as `CLASS_CAPACITY` above it. So a burst of
/// 10,000 objects of up to 64 B, or of 1,000 of 1 KiB, fits one per-CPU cache, as it fits a
/// gperftools thread cache (up to 8,192 objects of a class, 4 MiB a thread).
pub static CLASS_BURST_CAPACITY: [u16; NUM_CLASSES] = build_burst_capacity();
/// What no entry of [`CLASS_BURST_CAPACITY`] exceeds: four times the largest base maximum.
pub const MAX_BURST_CAPACITY: usize = 16384;
const _: () = {
    let t = build_burst_capacity();
    let mut c = 1;
    while c < NUM_CLASSES {
        assert!(t[c] as usize <= MAX_BURST_CAPACITY);
        c += 1;
    }
};
/// For `realloc`'s in-place test ([`c_request_fits`]): the C requests of at least 1 byte
/// (aligned to 8 up to 8 bytes, to 16 above, as glibc aligns; size 0 is the shim's, which
/// frees) that a block of class `c` keeps in place: those that map to `c`, and every smaller
/// one down to half of `c`'s size — the sizes `lo ..= CLASS_SIZE[c]`, where `lo` is half of
/// `c`'s size, or 1 for the smallest class, whose requests all map to it. Entry `c` holds `lo`
/// in its low 32 bits and the count `CLASS_SIZE[c] - lo + 1` in its high 32 bits. The count
/// is 0 for the classes whose size is not a multiple of 16 (72, 88, 104, 120 B), which no C
/// request maps to, and for every value of a page-map entry's class field that is no class
/// (so the lookup needs no bounds check).
///
/// Why down to half (as tcmalloc and mimalloc; jemalloc moves a shrink into a smaller class,
/// glibc splits the chunk): a block `realloc` moves to grow lands a quarter or more above its
/// old size ([`c_grown_request`]), and the steps that follow must find it in place; and a
/// container shrunk to fit after doubling (`shrink_to_fit`) is rarely below half, so it is not
/// copied to save at most half a block that is often freed soon after. A block shrunk below
/// half moves to the class its new size maps to. The worst case is C code that fills a
/// fixed buffer and then `realloc`s it to the exact length it used: such a string now keeps
/// up to twice its length for as long as it lives (one class below, about 1.27x, until
/// session 27).
const C_RANGE: [u64; CLASS_FIELD_VALUES] = build_c_range();
/// `ceil(2^64 / size)`, for the divisibility test ([`divides`]) and [`object_index`].
///
/// One entry for every value a page-map entry's class field can hold (0 past the last class,
/// which no object starts in), so `free`'s check (which reads a copy of it,
/// `pagemap::is_object_start`) indexes it without a bounds check.
pub const CLASS_DIVISOR: [u64; CLASS_FIELD_VALUES] = build_divisor();
/// Values of a page-map entry's 7-bit class field (`pagemap::CLASS_MASK + 1`).
pub const CLASS_FIELD_VALUES: usize = 128;

/// How much smaller than the grid's step `2^k + j·2^(k-3)` a class above [`ODD_LINES_ABOVE`]
/// is, unless it is a power of two (`j = 8`): one cache line.
///
/// Why: a step above 1 KiB is a multiple of 128 B, so its objects start at only a few offsets
/// modulo a cache way (4 KiB for a 32 KiB 8-way L1D), and a program that reads mostly the
/// first line of each object (a B-tree page's header, a buffer's length) has those lines
/// compete for a few sets: the 4,608 B step put a span's 14 objects in 8 of 64 L1 sets. One
/// line less makes the size an odd number of lines, so consecutive objects' first lines walk
/// through the sets: a span's objects take as many sets as there are objects in it, up to all
/// 64. (Spans start at the same few offsets in a way, so objects of different spans still
/// share sets; colouring spans would put an offset into `free`'s object-start check.)
/// docs/design.md, "Size classes", has the measurements. Powers of two keep their size:
/// aligned requests need them ([`class_for`]).
pub const LINE_OFFSET: usize = 64;
/// Classes above this size (and not powers of two) are [`LINE_OFFSET`] below the grid.
pub const ODD_LINES_ABOVE: usize = 1024;

const fn size_of_class(c: usize) -> usize {
    if c == 0 {
        0
    } else if c <= 4 {
        c * 16
    } else {
        let i = c - 5; // 0-based among the geometric classes
        let k = 6 + i / 8; // lower bound 2^k
        let j = i % 8 + 1;
        let step = (1 << k) + j * (1 << (k - 3));
        if step > ODD_LINES_ABOVE && j != 8 {
            step - LINE_OFFSET
        } else {
            step
        }
    }
}

const fn build_sizes() -> [u32; NUM_CLASSES] {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        t[c] = size_of_class(c) as u32;
        c += 1;
    }
    t
}

/// Once the heap is large, spans are at least this many pages (64 KiB): one span record
/// (128 bytes) per 64 KiB keeps metadata below 0.2 % of the memory it describes (with 8 KiB
/// spans, a freed GiB of small objects left 16 MiB of records resident). The objects are carved
/// lazily, so a span's untouched tail costs nothing.
const MIN_SPAN_PAGES: usize = 8;

/// Smallest span (in pages, at least `min_pages`) holding at least `min_objs` objects with at
/// most 1/8 of it lost to the tail that no whole object fits in.
const fn pages_for(size: usize, min_pages: usize) -> usize {
    let min_objs = if size <= 1024 { 8 } else { 4 };
    let mut pages = min_pages;
    loop {
        let bytes = pages * PAGE;
        let objs = bytes / size;
        if objs >= min_objs && (bytes - objs * size) * 8 <= bytes {
            return pages;
        }
        pages += 1;
    }
}

const fn build_pages(min_pages: usize) -> [u16; NUM_CLASSES] {
    let mut t = [0u16; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        t[c] = pages_for(size_of_class(c), min_pages) as u16;
        c += 1;
    }
    t
}

/// Pages of class `c`'s spans once the heap is large ([`CLASS_PAGES`], as a `const fn`: the
/// most any span of the class has).
pub(crate) const fn pages_for_class(c: usize) -> usize {
    pages_for(size_of_class(c), MIN_SPAN_PAGES)
}

/// `v` within `[lo, hi]`, for the compile-time tables (`Ord::clamp` is not `const`).
pub(crate) const fn clamp(v: usize, lo: usize, hi: usize) -> usize {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

const fn build_batch() -> [u16; NUM_CLASSES] {
    let mut t = [0u16; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        t[c] = clamp((64 << 10) / size_of_class(c), 2, 32) as u16;
        c += 1;
    }
    t
}

const fn build_capacity() -> [u16; NUM_CLASSES] {
    let mut t = [0u16; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        t[c] = clamp((256 << 10) / size_of_class(c), 2, 4096) as u16;
        c += 1;
    }
    t
}

const fn build_burst_capacity() -> [u16; NUM_CLASSES] {
    let base = build_capacity();
    let mut t = [0u16; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        t[c] = if size_of_class(c) <= BURST_CLASS_MAX {
            4 * base[c]
        } else {
            base[c]
        };
        c += 1;
    }
    t
}

const fn build_c_range() -> [u64; CLASS_FIELD_VALUES] {
    let mut t = [0u64; CLASS_FIELD_VALUES];
    // The C classes (those a C request can map to) are the 16-aligned ones: requests above a
    // class's size round up to a multiple of 16, and the smallest class at or above that is
    // the next 16-aligned one. C classes are at most twice apart, so half of a class's size
    // is at or below every request that maps to it; the smallest (16 B) takes every size.
    let mut c = 1;
    while c < NUM_CLASSES {
        let s = size_of_class(c) as u64;
        if s.is_multiple_of(16) {
            let lo = if c == 1 { 1 } else { s / 2 };
            t[c] = lo | ((s - lo + 1) << 32);
        }
        c += 1;
    }
    t
}

/// Whether `realloc` keeps a block of class `c` in place for a C request of `size` bytes: the
/// request maps to `c`, or is smaller and at least half of `c`'s size (see [`C_RANGE`]), for
/// any `c` below [`CLASS_FIELD_VALUES`] (a class that does not exist keeps no request). One
/// load and one unsigned compare: `size - lo < count` wraps for sizes below the range.
#[inline(always)]
pub fn c_request_fits(size: usize, c: usize) -> bool {
    let r = C_RANGE[c];
    (size as u64).wrapping_sub(r & 0xffff_ffff) < r >> 32
}

const fn build_divisor() -> [u64; CLASS_FIELD_VALUES] {
    let mut t = [0u64; CLASS_FIELD_VALUES];
    let mut c = 1;
    while c < NUM_CLASSES {
        t[c] = u64::MAX / size_of_class(c) as u64 + 1;
        c += 1;
    }
    t
}

/// Whether `off` (bytes from a span's start, below 2^32) is a multiple of class `c`'s size
/// ([`divides`] with the class's divisor): the tests' form of the check `free` runs through
/// `pagemap::is_object_start`, which keeps the divisors beside its other table.
#[cfg(test)]
#[inline(always)]
pub fn starts_object(off: usize, c: usize) -> bool {
    divides(off, CLASS_DIVISOR[c])
}

/// Whether `off` (below 2^32) is a multiple of the size whose [`CLASS_DIVISOR`] entry is
/// `divisor`: one multiplication, `off * ceil(2^64 / size) mod 2^64 < ceil(2^64 / size)`
/// (Lemire, Kaser and Kurz, "Faster Remainder by Direct Computation", 2019: exact for every
/// 32-bit `off` and divisor). `free` runs it on every small object
/// (`pagemap::is_object_start`); the division it replaces cost a multiplication, a shift and a
/// second multiplication in a row.
#[inline(always)]
pub fn divides(off: usize, divisor: u64) -> bool {
    debug_assert!(off < 1 << 32);
    (off as u64).wrapping_mul(divisor) < divisor
}

/// `off / size` for class `c` (`off` bytes from a span's start, below 2^32): the index of the
/// object starting at `off`, with one multiplication — the high word of `off * ceil(2^64 /
/// size)`, exact for every 32-bit `off` (the same paper as [`divides`]).
#[inline(always)]
pub fn object_index(off: usize, c: usize) -> usize {
    debug_assert!(off < 1 << 32);
    ((off as u128 * CLASS_DIVISOR[c] as u128) >> 64) as usize
}

/// The class for a request of `size` bytes (1 ≤ size ≤ [`MAX_SMALL`]), alignment ≤ 8:
/// one table load up to 1 KiB, a few shifts above.
#[inline(always)]
pub const fn class_of(size: usize) -> usize {
    if size <= 1024 {
        SMALL_CLASS[(size + 7) >> 3] as usize
    } else {
        class_by_formula(size)
    }
}

/// The class of `size` computed: up to 1 KiB the grid's step at or above it
/// ([`grid_class`]); above, the class at or above it among those a line below their step.
const fn class_by_formula(size: usize) -> usize {
    debug_assert!(size <= MAX_SMALL);
    if size <= 64 {
        // 0 behaves like 1: the smallest class.
        let s = if size == 0 { 1 } else { size };
        (s + 15) >> 4
    } else if size <= ODD_LINES_ABOVE {
        grid_class(size)
    } else {
        // The class is a line below its step unless the step is a power of two: the step at
        // or above `size + 64` is the class's, except when that step is the first of an
        // octave and `size` fits the power of two below it. Kept to a few registers: `malloc`
        // inlines this for requests above 1 KiB, and a form that compared `size` with the
        // step's class size made `malloc` save a register on every call (`benches/c/ab.c`:
        // bursts of 64 objects of 2 KiB 1.2x the time, of 512 B 1.05x).
        let s = size + LINE_OFFSET;
        let k = (usize::BITS - 1 - (s - 1).leading_zeros()) as usize;
        grid_class(s) - (size <= 1 << k) as usize
    }
}

/// The class of the grid's step at or above `size` (64 < size): `k = ⌊log2(size-1)⌋`,
/// `j = ((size-1-2^k) >> (k-3)) + 1`.
const fn grid_class(size: usize) -> usize {
    let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize; // 2^k < size <= 2^(k+1)
    let j = ((size - 1 - (1 << k)) >> (k - 3)) + 1;
    4 + (k - 6) * 8 + j
}

/// `class_of` for sizes up to 1 KiB, indexed by `(size + 7) / 8` (every class boundary up
/// to 1 KiB is a multiple of 8, so the 8-byte granules never straddle two classes).
const SMALL_CLASS: [u8; 129] = {
    let mut t = [0u8; 129];
    let mut i = 0;
    while i < 129 {
        t[i] = class_by_formula(if i == 0 { 1 } else { i * 8 }) as u8;
        i += 1;
    }
    t
};

/// The class of a C request (`malloc`'s alignment: 8 up to 8 bytes, 16 above) for sizes up to
/// 1 KiB, indexed by `(size + 15) / 16`: `class_for(16 * i, 16)`, and the smallest class for
/// index 0 (size 0) and 1 (sizes 1..=16, which need 8 or 16).
const C_SMALL_CLASS: [u8; C_TABLE_MAX / 16 + 1] = {
    let mut t = [0u8; C_TABLE_MAX / 16 + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = class_for(if i == 0 { 1 } else { i * 16 }, 16) as u8;
        i += 1;
    }
    t
};

/// The class for a C request of `size` bytes (aligned as `malloc` aligns: 8 up to 8 bytes, 16
/// above), or 0 when it must be served as a whole span: `class_for(size, c_align(size))`, in
/// one compare and one table load up to 1 KiB. `malloc` and `calloc` make that compare
/// themselves and call [`c_table_class`] or [`c_class_above_table`] (their paths differ past
/// it); this is the definition they follow, which `malloc_cold` debug-asserts.
#[inline(always)]
pub const fn c_class_for(size: usize) -> usize {
    if size <= C_TABLE_MAX {
        return c_table_class(size);
    }
    core::hint::cold_path();
    c_class_above_table(size)
}

/// The largest C request [`c_table_class`] answers.
pub const C_TABLE_MAX: usize = 1024;

/// [`c_class_for`] of a request of at most [`C_TABLE_MAX`] bytes: one table load. The class is
/// below 64 (`percpu::owned_routes_small`, which `malloc`'s fast path calls, relies on it;
/// checked at compile time).
#[inline(always)]
pub const fn c_table_class(size: usize) -> usize {
    debug_assert!(size <= C_TABLE_MAX);
    C_SMALL_CLASS[(size + 15) >> 4] as usize
}

const _: () = {
    let mut i = 0;
    while i < C_SMALL_CLASS.len() {
        assert!(C_SMALL_CLASS[i] > 0 && C_SMALL_CLASS[i] < 64);
        i += 1;
    }
};

/// [`c_class_for`] of a request above [`C_TABLE_MAX`] bytes: the formula, inlined
/// ([`class_for_rest_inlined`]), since a call from `malloc`'s cold block would cost `malloc` a
/// stack frame.
#[inline(always)]
pub const fn c_class_above_table(size: usize) -> usize {
    debug_assert!(size > C_TABLE_MAX);
    class_for_rest_inlined(size, 16)
}

/// What `realloc` asks for when it moves a small C block of class `c` to grow it to `size`
/// bytes (at most [`MAX_SMALL`]): at least a quarter more than the block holds,
/// `max(size, old + old / 4)` with `old` = class `c`'s size, capped at [`MAX_SMALL`] (a larger
/// jump, as a container that doubles its capacity makes, gets `size` itself).
///
/// Classes are 12.5 % apart above 128 B, so a buffer grown a few bytes at a time would move
/// (and be copied) at every class, 8 times per doubling: about 11x its final size copied in
/// all. With a quarter of headroom, rounded up to a class, it moves about three times per
/// doubling: a buffer grown 8 B at a time to 64 KiB is copied 3.4x its final size (the rule
/// gperftools' tcmalloc uses, 3.2x there; one class of headroom, this function's rule until
/// session 27, copied 6.0x and moved 1.2–1.5x as often between 256 B and 4 KiB).
/// [`c_request_fits`] keeps the block in place for every size down to half its class, so the
/// steps that follow stay. The cost: a block that grew by a step holds up to a quarter (plus
/// the class rounding, which dominates for the smallest classes: 17 B lands in 32 B) more
/// than it needs until it is freed or shrunk below half. When the headroom cannot be had
/// (no memory), `realloc` asks for `size` alone. C only: Rust's `dealloc` takes the class
/// from the layout's size, so a Rust block must stay in the class its size maps to.
#[inline]
pub fn c_grown_request(c: usize, size: usize) -> usize {
    debug_assert!(size <= MAX_SMALL && size > size_of(c));
    let old = size_of(c);
    size.max(old + old / 4).min(MAX_SMALL)
}

/// The class for a request with an alignment (a power of two), or 0 when it must be served
/// as a whole span (too large, aligned beyond a page, or aligned and smaller as a span).
///
/// Rounding the size up to the alignment lands on a class whose size is a multiple of it up to
/// 64 B (classes up to 1 KiB in `(2^k, 2^(k+1)]` are multiples of `2^(k-3)`, those above it
/// multiples of 64), and spans start on page boundaries, so every object of the class is
/// aligned. Above 1 KiB an alignment of 128 B or more takes the power-of-two class at or above
/// the rounded size (the others are odd multiples of 64: [`LINE_OFFSET`]), or a whole span
/// (page-aligned, whole 8 KiB pages) when that is smaller: `posix_memalign(4096, 20 KiB)` takes
/// 24 KiB of pages, not the 32 KiB class.
#[inline(always)]
pub const fn class_for(size: usize, align: usize) -> usize {
    // The common case first, in two compares and a table load.
    if let Some(c) = class_for_common(size, align) {
        return c;
    }
    class_for_rest(size, align)
}

/// [`class_for`]'s common case alone: the class of a request of at most 1 KiB aligned to at
/// most 8 bytes (two compares and a table load), or `None` for any other request.
#[inline(always)]
pub const fn class_for_common(size: usize, align: usize) -> Option<usize> {
    if size <= 1024 && align <= 8 {
        Some(SMALL_CLASS[(size + 7) >> 3] as usize)
    } else {
        None
    }
}

/// [`class_for`] beyond its common case; the compiler decides whether to inline it (Rust's
/// allocation paths).
const fn class_for_rest(size: usize, align: usize) -> usize {
    class_for_rest_inlined(size, align)
}

/// [`class_for_rest`], always inlined: [`c_class_for`]'s cold block.
#[inline(always)]
const fn class_for_rest_inlined(size: usize, align: usize) -> usize {
    if align <= 8 {
        if size <= MAX_SMALL {
            return class_of(size);
        }
        return 0;
    }
    if align > PAGE {
        return 0;
    }
    // Size 0 behaves like 1, so that it too rounds up to a class aligned for `align`.
    let size = if size == 0 { 1 } else { size };
    let rounded = size.wrapping_add(align - 1) & !(align - 1);
    if rounded > MAX_SMALL || rounded < size {
        return 0;
    }
    let c = class_of(rounded);
    if align <= LINE_OFFSET || rounded <= ODD_LINES_ABOVE {
        return c;
    }
    // Above 1 KiB only the powers of two are multiples of 128; `rounded`'s is at most
    // `MAX_SMALL`.
    let c = if (CLASS_SIZE[c] as usize).is_multiple_of(align) {
        c
    } else {
        class_of(rounded.next_power_of_two())
    };
    if rounded.next_multiple_of(PAGE) < CLASS_SIZE[c] as usize {
        return 0;
    }
    c
}

/// Size in bytes of class `c`.
#[inline(always)]
pub fn size_of(c: usize) -> usize {
    CLASS_SIZE[c] as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_class_for_is_class_for_at_malloc_alignment() {
        let sizes = (0..=MAX_SMALL + 64).chain([usize::MAX - 15, usize::MAX - 8, usize::MAX]);
        for size in sizes {
            assert_eq!(
                c_class_for(size),
                class_for(size, crate::c_align(size)),
                "size {size}"
            );
        }
    }

    #[test]
    fn c_range_holds_the_c_requests_of_each_class_and_the_smaller_ones_down_to_half() {
        // The C classes: those some C request maps to.
        let c_classes: std::vec::Vec<usize> = (1..NUM_CLASSES)
            .filter(|&c| (1..=MAX_SMALL).any(|s| c_class_for(s) == c))
            .collect();
        for size in 1..=MAX_SMALL {
            let c = class_for(size, crate::c_align(size));
            for d in 1..NUM_CLASSES {
                let fits = c_classes.contains(&d)
                    && (d == c || (size <= size_of(d) && 2 * size >= size_of(d)));
                assert_eq!(
                    c_request_fits(size, d),
                    fits,
                    "size {size}: class {c}, tested {d}"
                );
            }
            for d in NUM_CLASSES..CLASS_FIELD_VALUES {
                assert!(!c_request_fits(size, d), "size {size}, no class {d}");
            }
        }
        for d in 0..CLASS_FIELD_VALUES {
            assert!(!c_request_fits(0, d), "size 0, class {d}");
            assert!(!c_request_fits(usize::MAX, d), "size usize::MAX, class {d}");
            assert!(
                !c_request_fits(MAX_SMALL + 1, d),
                "past MAX_SMALL, class {d}"
            );
        }
    }

    #[test]
    fn a_c_block_grown_gets_a_quarter_of_headroom_and_fits_the_sizes_between() {
        for c in (1..NUM_CLASSES).filter(|&c| c_request_fits(size_of(c), c)) {
            let old = size_of(c);
            for size in old + 1..=MAX_SMALL.min(2 * old + 1000) {
                let r = c_grown_request(c, size);
                let g = c_class_for(r);
                // The smallest C class holding both `size` and a quarter more than the old
                // block (or the largest small class), found by a search of the table.
                let want = size.max(old + old / 4).min(MAX_SMALL);
                let tightest = (1..NUM_CLASSES)
                    .filter(|&d| c_request_fits(size_of(d), d) && size_of(d) >= want)
                    .min_by_key(|&d| size_of(d))
                    .expect("a class holds MAX_SMALL");
                assert_eq!(g, tightest, "class {c}, size {size}");
                // Headroom, not more: past the 16-B-spaced classes a class step is at most
                // 12.5 %, so the new block holds at most 12.5 % above max(size, old × 1.25).
                if old >= 128 {
                    assert!(
                        size_of(g) * 1000 <= size.max(old + old / 4) * 1125 + 1000,
                        "class {c}, size {size}: {} B",
                        size_of(g)
                    );
                }
                assert!(c_request_fits(size, g), "class {c}, size {size}");
                assert!(c_request_fits(size_of(g), g), "class {c}, size {size}");
                if size < old + old / 4 {
                    assert!(c_request_fits(old + 1, g), "class {c}, size {size}");
                }
            }
        }
    }

    #[test]
    fn lookup_is_the_tightest_class_for_every_size() {
        // Against a search of the class table, every size: the table up to 1 KiB, the
        // formula (odd-line classes) above it.
        for size in 0..=MAX_SMALL {
            let tightest = CLASS_SIZE[1..].partition_point(|&s| (s as usize) < size.max(1)) + 1;
            assert_eq!(class_of(size), tightest, "size {size}");
            assert_eq!(class_by_formula(size), tightest, "size {size}");
        }
    }

    #[test]
    fn table_is_monotonic_and_ends_at_max_small() {
        for c in 2..NUM_CLASSES {
            assert!(CLASS_SIZE[c] > CLASS_SIZE[c - 1], "class {c}");
        }
        assert_eq!(CLASS_SIZE[NUM_CLASSES - 1] as usize, MAX_SMALL);
        assert_eq!(class_of(MAX_SMALL), NUM_CLASSES - 1);
    }

    #[test]
    fn every_size_fits_waste_bound_alignment_and_monotonicity() {
        let mut prev = 0;
        for size in 1..=MAX_SMALL {
            let c = class_of(size);
            let cs = size_of(c);
            assert!((1..NUM_CLASSES).contains(&c));
            assert!(cs >= size, "size {size} -> class size {cs}");
            assert!(c >= prev, "class must not shrink as size grows ({size})");
            // the class below is too small, so this is the tightest class
            assert!(
                c == 1 || size_of(c - 1) < size,
                "size {size} not in its tightest class"
            );
            if size > 64 {
                assert!(
                    (cs - size) * 8 <= size,
                    "waste above 12.5 % at {size}: class {cs}"
                );
            } else {
                assert_eq!(cs % 16, 0);
                assert!(cs - size < 16);
            }
            // Alignment: objects sit at multiples of the class size from a page boundary, so
            // every class is 8-aligned, and a request asking for 16 (C's malloc above 8 bytes)
            // lands on a 16-aligned class.
            assert!(cs.is_multiple_of(8), "class {cs} is not 8-aligned");
            let c16 = class_for(size, 16);
            assert!(size_of(c16).is_multiple_of(16) && size_of(c16) >= size);
            prev = c;
        }
    }

    #[test]
    fn first_lines_of_a_spans_objects_above_1_kib_fall_in_as_many_cache_sets() {
        // 64 sets of 64-byte lines: a 4 KiB way, as a 32 KiB 8-way L1D. Objects at multiples
        // of the class size from a span's start, which is page-aligned.
        const SETS: usize = 64;
        for c in 1..NUM_CLASSES {
            let size = size_of(c);
            if size <= ODD_LINES_ABOVE || size.is_power_of_two() {
                continue;
            }
            assert!(
                size.is_multiple_of(LINE_OFFSET) && (size / LINE_OFFSET) % 2 == 1,
                "class {size} is not an odd number of lines"
            );
            // So a span's objects' first lines fall in as many sets as there are objects, up
            // to all 64 (the 4,608 B step put 14 objects in 8 sets).
            for pages in [CLASS_PAGES[c], CLASS_PAGES_SMALL_HEAP[c]] {
                let objects = pages as usize * PAGE / size;
                let mut hit = [false; SETS];
                for i in 0..objects {
                    hit[(i * size / LINE_OFFSET) % SETS] = true;
                }
                let sets = hit.iter().filter(|&&h| h).count();
                assert_eq!(
                    sets,
                    objects.min(SETS),
                    "class {size}: first lines share sets"
                );
            }
        }
    }

    #[test]
    fn aligned_requests_land_on_the_tightest_aligned_class() {
        for align_shift in 0..=PAGE_SHIFT {
            let align = 1 << align_shift;
            // The classes whose size is a multiple of `align` (up to 8 B every class is: the
            // alignment C's and Rust's small requests get anyway).
            let aligned: std::vec::Vec<usize> = (1..NUM_CLASSES)
                .filter(|&c| align <= 8 || size_of(c).is_multiple_of(align))
                .collect();
            for size in 0..=MAX_SMALL {
                let c = class_for(size, align);
                let rounded = size.max(1).next_multiple_of(align);
                let tightest = aligned.iter().copied().find(|&d| size_of(d) >= rounded);
                // Above 1 KiB an aligned request (128 B or more) takes whole pages when they
                // hold less than its tightest class.
                let span_smaller = |t: usize| {
                    align > 64 && rounded > 1024 && rounded.next_multiple_of(PAGE) < size_of(t)
                };
                match tightest {
                    Some(t) if !span_smaller(t) => {
                        assert_eq!(c, t, "size {size} align {align}");
                        assert!(
                            rounded <= 64 || size_of(c) <= 2 * rounded,
                            "size {size} align {align}: more than twice the rounded size"
                        );
                    }
                    _ => assert_eq!(c, 0, "size {size} align {align}"),
                }
            }
        }
        assert_eq!(class_for(100, PAGE * 2), 0);
        assert_eq!(class_for(usize::MAX, 16), 0);
        for align_shift in 4..=PAGE_SHIFT {
            let c = class_for(0, 1 << align_shift);
            assert!(
                c != 0 && size_of(c).is_multiple_of(1 << align_shift),
                "size 0, align 2^{align_shift}"
            );
        }
        assert_eq!(class_for(usize::MAX - 3, 4096), 0);
        assert_eq!(class_for(MAX_SMALL + 1, 8), 0);
    }

    #[test]
    fn spans_batches_and_object_starts_are_sane() {
        for c in 1..NUM_CLASSES {
            let size = size_of(c);
            for pages in [CLASS_PAGES[c], CLASS_PAGES_SMALL_HEAP[c]] {
                let bytes = pages as usize * PAGE;
                assert!(bytes / size >= 4);
                assert!((bytes % size) * 8 <= bytes);
            }
            let bytes = CLASS_PAGES[c] as usize * PAGE;
            assert!(CLASS_BATCH[c] >= 2 && CLASS_BATCH[c] <= 32);
            assert!(CLASS_CAPACITY[c] >= CLASS_BATCH[c].min(2));
            // Every 8-byte step of the span, and next to each object boundary.
            for off in (0..bytes).step_by(8) {
                assert_eq!(starts_object(off, c), off % size == 0, "class {c}, {off}");
                assert_eq!(object_index(off, c), off / size, "class {c}, {off}");
            }
            for start in (0..bytes).step_by(size) {
                for off in start.saturating_sub(9)..start + 9 {
                    assert_eq!(starts_object(off, c), off % size == 0, "class {c}, {off}");
                }
            }
        }
    }
}
