//! The page map: a lock-free two-level radix map from any address to the span that owns it.
//!
//! Owns: one entry per 8 KiB page of the 48-bit user address space, holding the owning span's
//! metadata pointer (bits 7–47), the page's size class in the low 7 bits (class 0 = not a
//! small-object page) and, for small-object pages, the page's index inside its span in bits
//! 48–54, its span's home slab ([`home_bits`]) in bits 55–61 and two carving flags in bits 62
//! and 63 — so `free` can check that a pointer starts an object, and see whether it goes
//! home, without touching the span. Leaves are mapped on first use; the root lives in `.bss`,
//! so untouched parts cost no memory. Looking up any address — ours, interior, foreign or garbage — reads only the root and
//! (if present) a leaf, never the address itself, so it cannot fault.
//!
//! Beside the entries, each leaf keeps one *mark* bit per page for the page heap, which marks
//! the first page of every free run it lists ([`PageMap::set_mark`]): a run merged with its
//! neighbours maps only its first and last pages to its record, and the marks are how an
//! address inside it finds the run ([`PageMap::mark_at_or_below`]).
//!
//! Invariants: an entry is written only by the thread that owns the span's pages at that
//! moment: under the page heap lock or while creating the span, and for a small span's pages
//! under its class lock (carving, a change of home) or while the span is unreachable (an
//! owned span, retired, turned over to another class); entries are published with release
//! stores and read with acquire loads; marks are written and read under the page heap lock
//! only; leaves are never freed.
//!
//! May call: `os`, `arch` (`opaque` only), `size_class`, `sync`.

use crate::os;
use crate::size_class::{CLASS_FIELD_VALUES, CLASS_SIZE, NUM_CLASSES, PAGE, PAGE_SHIFT};
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

const ADDRESS_BITS: usize = 48;
const PAGE_BITS: usize = ADDRESS_BITS - PAGE_SHIFT; // 35
const LEAF_BITS: usize = 18;
const ROOT_BITS: usize = PAGE_BITS - LEAF_BITS; // 17
const LEAF_LEN: usize = 1 << LEAF_BITS;
const ROOT_LEN: usize = 1 << ROOT_BITS;

/// Entries store a span pointer (aligned to 128) plus a class in the low bits.
pub const CLASS_MASK: usize = 127;
const _: () = assert!(
    CLASS_FIELD_VALUES == CLASS_MASK + 1,
    "class-indexed tables cover the field"
);
const SPAN_MASK: usize = ((1 << 48) - 1) & !CLASS_MASK;
const INDEX_SHIFT: u32 = 48;
const INDEX_MASK: usize = 0x7f;

/// Where an entry keeps its span's home bits (see [`home_bits`]).
const HOME_SHIFT: u32 = 55;
/// The home bits: a flag (a span with a home) and the home slab's low 6 bits.
pub const HOME_MASK: usize = 0x7f;
/// In the home bits: the span has a home.
pub const HOMED: usize = 0x40;

const _: () = {
    // Every small span's page index fits the index field.
    let mut c = 1;
    while c < NUM_CLASSES {
        assert!(crate::size_class::pages_for_class(c) <= INDEX_MASK + 1);
        c += 1;
    }
    assert!(INDEX_SHIFT as usize + 7 == HOME_SHIFT as usize && HOME_SHIFT + 7 == 62);
};

/// Set in the entry of a small span's page once its second half (its second 4 KiB, the
/// kernel's page) is carved: an object starting there is not an object before.
pub const SECOND_HALF: usize = 1 << 62;

/// log2 of the half page that carving proceeds by (the kernel's page).
pub const HALF_SHIFT: usize = PAGE_SHIFT - 1;

/// Set in the entry of a small span's last page: the span ends with that page, so an object
/// starting there must also end there (the span's tail, past its last whole object, may hold
/// what looks like an object boundary).
pub const LAST_PAGE: usize = 1 << 63;

/// The entry for page `index` of the span whose record is at `span`, with size class `class`.
#[inline]
pub fn entry(span: usize, class: usize, index: usize) -> usize {
    debug_assert!(span & !SPAN_MASK == 0 && class <= CLASS_MASK && index <= INDEX_MASK);
    span | class | index << INDEX_SHIFT
}

/// The span record address an entry names (0 for none).
#[inline(always)]
pub fn span_of(e: usize) -> usize {
    e & SPAN_MASK
}

/// The size class an entry names (0: not a small-object page).
#[inline(always)]
pub fn class_of(e: usize) -> usize {
    e & CLASS_MASK
}

/// The page's index inside its span (small-object pages only).
#[inline(always)]
pub fn page_index(e: usize) -> usize {
    (e >> INDEX_SHIFT) & INDEX_MASK
}

/// The entry bits that record home slab `home` of a small span (`span::NO_HOME`: none): the
/// [`HOMED`] flag and the home's low 6 bits, so that `free` tells an object of another slab
/// from the entry it reads anyway. Homes 64 apart share their bits; a free that takes another
/// slab's object for its own merely keeps it where it was freed.
#[inline]
pub fn home_field(home: u32) -> usize {
    if home == crate::span::NO_HOME {
        0
    } else {
        (HOMED | (home as usize & (HOMED - 1))) << HOME_SHIFT
    }
}

/// Entry `e` without its home bits (every other field as it was).
#[inline]
pub fn without_home(e: usize) -> usize {
    e & !(HOME_MASK << HOME_SHIFT)
}

/// An entry's home bits: 0 (no home), or [`HOMED`] plus the home slab's low 6 bits.
#[inline(always)]
pub fn home_bits(e: usize) -> usize {
    (e >> HOME_SHIFT) & HOME_MASK
}

/// The home slab that an entry's home bits `bits` ([`home_bits`], naming a home) give when
/// the process has `slabs` slabs: exact while `slabs` is at most 64, where the low 6 bits are
/// the whole home; `None` above that, where homes 64 apart share their bits and the span's
/// record must be read (`Span::home`). Lets a foreign `free` skip that record, which other
/// CPUs' refills write (`percpu::send_home`).
#[inline(always)]
pub fn exact_home(bits: usize, slabs: usize) -> Option<u32> {
    debug_assert!(bits & HOMED != 0, "home bits {bits:#x} name no home");
    (slabs <= HOMED).then_some((bits & (HOMED - 1)) as u32)
}

/// An entry's home bits with the two carving flags above them (bits 7 and 8): what `free`
/// hands the push's home test, which reads only bits 0–6 ([`home_bits`] without the mask,
/// one instruction less on `free`'s path).
#[inline(always)]
pub fn home_bits_unmasked(e: usize) -> usize {
    e >> HOME_SHIFT
}

/// Where an object of class `c` may start in a small-object page whose entry is `e`: below
/// this in-page offset (bytes). That is the page, or its first half while the second half is
/// not carved ([`SECOND_HALF`]), less `size - 1` on the span's last page ([`LAST_PAGE`]), so
/// that the object ends inside the span. One table load instead of two tests on `free`'s path.
#[inline(always)]
pub fn start_limit(e: usize, c: usize) -> usize {
    START_CHECK.limit[(e >> 62) * CLASS_FIELD_VALUES + c] as usize
}

/// Whether `addr`, in a small-object page of class `c` (not 0) whose entry is `e`, starts an
/// object that exists: an object boundary (its offset in the span a multiple of the class
/// size, `size_class::divides`), in the part of the page where objects of the class exist
/// ([`start_limit`]). Both
/// tables are read from one object ([`START_CHECK`]), so `free` forms one address for them.
#[inline(always)]
pub fn is_object_start(addr: usize, e: usize, c: usize) -> bool {
    let in_page = addr & (PAGE - 1);
    let off = (page_index(e) << PAGE_SHIFT) | in_page;
    // Non-short-circuit `&` (the compiler still branches on each test, to the same place).
    crate::size_class::divides(off, START_CHECK.divisor[c]) & (in_page < start_limit(e, c))
}

/// The two tables of `free`'s object-start check together ([`is_object_start`]): a table each
/// costs `free` the address of each (one instruction apiece), one object costs it one
/// (docs/benchmarks.md, "Session 61"). A `const`, so that the shim addresses it rip-relative (a
/// `static` of this crate would be reached through the GOT); the language does not promise that
/// its two uses in one function name one object, but the compiler emits one (one `lea` in
/// `free`, checked in the release library's disassembly).
#[repr(C)]
struct StartCheck {
    /// `size_class::CLASS_DIVISOR`.
    divisor: [u64; CLASS_FIELD_VALUES],
    /// [`start_limit`]'s table, built by [`start_limits`].
    limit: [u16; CLASS_FIELD_VALUES * 4],
}

const START_CHECK: StartCheck = StartCheck {
    divisor: crate::size_class::CLASS_DIVISOR,
    limit: start_limits(),
};

/// [`start_limit`]'s table, indexed by `(LAST_PAGE, SECOND_HALF as two bits) * 128 + class`, for
/// every value of the class field (0 past the last class: nothing starts there), so `free`
/// indexes it without a bounds check. Flags first: `free` gets the index from the entry's top
/// bits with a shift and a mask; class first (`class * 4 + flags`) compiles to `shld`, which
/// AMD's Zen 3 runs from microcode (in one process against the class-first build, 16-byte
/// bursts of 64 took 0.98x the time; docs/benchmarks.md, "Session 21").
const fn start_limits() -> [u16; CLASS_FIELD_VALUES * 4] {
    let mut t = [0u16; CLASS_FIELD_VALUES * 4];
    let mut c = 1;
    while c < NUM_CLASSES {
        let mut flags = 0;
        while flags < 4 {
            let mut limit = if flags & 1 != 0 { PAGE } else { PAGE / 2 };
            if flags & 2 != 0 {
                limit = match (PAGE + 1).checked_sub(CLASS_SIZE[c] as usize) {
                    Some(end) if end < limit => end,
                    Some(_) => limit,
                    None => 0,
                };
            }
            t[flags * CLASS_FIELD_VALUES + c] = limit as u16;
            flags += 1;
        }
        c += 1;
    }
    t
}

struct Leaf {
    entries: [AtomicUsize; LEAF_LEN],
    /// One bit per page (bit `l % 64` of word `l / 64` for entry `l`): the page heap's marks.
    marks: [AtomicU64; LEAF_LEN / 64],
}

/// The map itself; there is one, [`PAGEMAP`].
pub struct PageMap {
    root: [AtomicPtr<Leaf>; ROOT_LEN],
}

/// The process's page map.
pub static PAGEMAP: PageMap = PageMap {
    root: [const { AtomicPtr::new(core::ptr::null_mut()) }; ROOT_LEN],
};

/// The root slot and the leaf index of `addr`'s page; `None` above the 48-bit address space.
/// The bound is tested on the root slot, which `get` computes anyway: a shift and a compare,
/// where a test of `addr >> 48` took two instructions more on `free`'s path (`arch::opaque`
/// keeps the compiler from turning the compare back into that test; docs/benchmarks.md,
/// "Session 61").
#[inline(always)]
fn split(addr: usize) -> Option<(usize, usize)> {
    const { assert!(ROOT_LEN << (PAGE_SHIFT + LEAF_BITS) == 1 << ADDRESS_BITS) };
    let r = crate::arch::opaque(addr >> (PAGE_SHIFT + LEAF_BITS));
    if r >= ROOT_LEN {
        return None;
    }
    Some((r, (addr >> PAGE_SHIFT) & (LEAF_LEN - 1)))
}

impl PageMap {
    /// The entry for the page holding `addr`, or 0 when no span ever claimed it.
    #[inline(always)]
    pub fn get(&self, addr: usize) -> usize {
        let Some((r, l)) = split(addr) else { return 0 };
        let leaf = self.root[r].load(Ordering::Acquire);
        if leaf.is_null() {
            return 0;
        }
        // SAFETY: a non-null root slot points at a leaf mapped by `leaf_for` and never freed.
        unsafe { (*leaf).entries[l].load(Ordering::Acquire) }
    }

    /// The leaf for root slot `r`, mapping it on first use. `None` if the OS refused.
    fn leaf_for(&self, r: usize) -> Option<&Leaf> {
        let mut leaf = self.root[r].load(Ordering::Acquire);
        if leaf.is_null() {
            let fresh = os::map(core::mem::size_of::<Leaf>(), os::OS_PAGE).ok()? as *mut Leaf;
            match self.root[r].compare_exchange(
                core::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => leaf = fresh,
                Err(winner) => {
                    // SAFETY: `fresh` was mapped above and never published.
                    unsafe { os::unmap(fresh.cast(), core::mem::size_of::<Leaf>()) };
                    leaf = winner;
                }
            }
        }
        // SAFETY: published leaves are zero-initialised mappings (a valid all-zero array of
        // atomics) that live for the rest of the process.
        Some(unsafe { &*leaf })
    }

    /// Makes sure every leaf covering `[addr, addr + len)` exists, so later `set`s cannot fail.
    pub fn reserve(&self, addr: usize, len: usize) -> bool {
        let (Some((first, _)), Some((last, _))) = (split(addr), split(addr + len - 1)) else {
            return false;
        };
        (first..=last).all(|r| self.leaf_for(r).is_some())
    }

    /// The leaf holding the page of `addr`, which must exist ([`PageMap::reserve`]), and the
    /// page's index in it; `None` for an address outside the map.
    #[inline]
    fn reserved(&self, addr: usize) -> Option<(&Leaf, usize)> {
        let Some((r, l)) = split(addr) else {
            debug_assert!(false, "address outside the page map");
            return None;
        };
        let leaf = self.root[r].load(Ordering::Acquire);
        if leaf.is_null() {
            debug_assert!(false, "pagemap leaf not reserved");
            return None;
        }
        // SAFETY: a published leaf is never freed (`leaf_for`).
        Some((unsafe { &*leaf }, l))
    }

    /// Sets the entry of the page holding `addr`. The leaf must exist ([`PageMap::reserve`]).
    #[inline]
    pub fn set(&self, addr: usize, entry: usize) {
        if let Some((leaf, l)) = self.reserved(addr) {
            leaf.entries[l].store(entry, Ordering::Release);
        }
    }

    /// Gives the entries of `pages` pages starting at `addr` that name a class (a small span's
    /// carved pages) the home field `home` ([`home_field`]), keeping their other bits; the
    /// others stay as they are. The caller holds the lock that guards those entries' writers
    /// (for a small span no slab owns, its class lock; an owned span's owner carves without it,
    /// `central::carve_owned`).
    pub fn set_home_carved(&self, addr: usize, pages: usize, home: usize) {
        debug_assert!(home & !(HOME_MASK << HOME_SHIFT) == 0);
        for i in 0..pages {
            if let Some((leaf, l)) = self.reserved(addr + (i << PAGE_SHIFT)) {
                let e = leaf.entries[l].load(Ordering::Relaxed);
                if class_of(e) != 0 {
                    let e = without_home(e) | home;
                    leaf.entries[l].store(e, Ordering::Release);
                }
            }
        }
    }

    /// Sets the entries of `pages` pages starting at `addr` to `entry`.
    pub fn set_range(&self, addr: usize, pages: usize, entry: usize) {
        for i in 0..pages {
            self.set(addr + (i << PAGE_SHIFT), entry);
        }
    }

    /// Sets (`on`) or clears the mark of the page holding `addr`. The leaf must exist
    /// ([`PageMap::reserve`]); the caller holds the page heap lock, which guards every mark.
    pub fn set_mark(&self, addr: usize, on: bool) {
        let Some((leaf, l)) = self.reserved(addr) else {
            return;
        };
        let word = &leaf.marks[l / 64];
        let bit = 1u64 << (l % 64);
        let w = word.load(Ordering::Relaxed);
        word.store(if on { w | bit } else { w & !bit }, Ordering::Relaxed);
    }

    /// The address of the highest marked page at or below the page holding `addr` and not
    /// below the page holding `floor`, or `None`; reads at most `(addr - floor) / 512 KiB + 2`
    /// words of marks (a missing leaf reads as unmarked and is skipped whole). Under the page
    /// heap lock.
    pub fn mark_at_or_below(&self, addr: usize, floor: usize) -> Option<usize> {
        let (Some(_), Some(_)) = (split(addr), split(floor)) else {
            return None;
        };
        let (top, bottom) = (addr >> PAGE_SHIFT, floor >> PAGE_SHIFT);
        let mut page = top;
        loop {
            let (r, l) = (page >> LEAF_BITS, page & (LEAF_LEN - 1));
            let leaf = self.root[r].load(Ordering::Acquire);
            // The first page this step looked at: the word's, or the whole missing leaf's.
            let first = if leaf.is_null() {
                page & !(LEAF_LEN - 1)
            } else {
                // The marks of this word at or below `page`.
                let below = u64::MAX >> (63 - l % 64);
                // SAFETY: published leaves are never freed (see `leaf_for`).
                let w = unsafe { (*leaf).marks[l / 64].load(Ordering::Relaxed) } & below;
                if w != 0 {
                    let found = (page & !63) + (63 - w.leading_zeros() as usize);
                    return (found >= bottom).then_some(found << PAGE_SHIFT);
                }
                page & !63
            };
            if first <= bottom || first == 0 {
                return None;
            }
            page = first - 1;
        }
    }

    /// Tests and fuzzing: how many pages of `[addr, addr + len)` (whole pages) carry a mark,
    /// counted a word of marks at a time.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn marks_within(&self, addr: usize, len: usize) -> usize {
        let (mut page, end) = (addr >> PAGE_SHIFT, (addr + len) >> PAGE_SHIFT);
        let mut n = 0;
        while page < end {
            let (r, l) = (page >> LEAF_BITS, page & (LEAF_LEN - 1));
            // The pages of this word from `page` on, up to `end`.
            let take = (64 - l % 64).min(end - page);
            let leaf = self.root[r].load(Ordering::Acquire);
            if !leaf.is_null() {
                // SAFETY: published leaves are never freed (see `leaf_for`).
                let w = unsafe { (*leaf).marks[l / 64].load(Ordering::Relaxed) } >> (l % 64);
                // `take` is 1 to 64: its low `take` bits.
                n += (w & u64::MAX >> (64 - take)).count_ones() as usize;
            }
            page += take;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry's home bits give back every home exactly while there are at most 64 slabs,
    /// and never a guess above that.
    #[test]
    fn exact_home_is_the_home_up_to_64_slabs_and_nothing_above() {
        for slabs in [1usize, 2, 3, 63, 64, 65, 128, 4096] {
            for home in 0..slabs.min(200) as u32 {
                let bits = home_bits(home_field(home));
                let want = (slabs <= 64).then_some(home);
                assert_eq!(
                    exact_home(bits, slabs),
                    want,
                    "home {home} of {slabs} slabs"
                );
            }
        }
    }

    /// `free`'s one-table check is the two tests it stands for: an object boundary in the span
    /// (`size_class::starts_object`) below the page's start limit, for every class, page flag
    /// and in-page offset of a few pages.
    #[test]
    fn is_object_start_is_the_boundary_test_and_the_start_limit() {
        for c in 1..CLASS_FIELD_VALUES {
            for flags in 0..4usize {
                for index in [0, 1, 5, 127] {
                    let e = entry(128, c, index) | flags << 62;
                    for in_page in (0..PAGE).step_by(8) {
                        let addr = 0x7f00_0000_0000 + index * PAGE + in_page;
                        let off = index * PAGE + in_page;
                        assert_eq!(
                            is_object_start(addr, e, c),
                            crate::size_class::starts_object(off, c) && in_page < start_limit(e, c),
                            "class {c}, flags {flags}, page {index}, at {in_page}"
                        );
                    }
                }
            }
        }
    }

    /// A page-map entry whose class field names no class (a corrupted entry) admits no
    /// object: `free`'s check indexes both tables with the raw field, without a bounds check.
    #[test]
    fn class_field_values_past_the_last_class_admit_nothing() {
        for c in NUM_CLASSES..CLASS_FIELD_VALUES {
            for flags in 0..4usize {
                assert_eq!(start_limit(flags << 62, c), 0, "class field {c}");
            }
            for off in [0, 16, 4096, 1 << 20] {
                assert!(!crate::size_class::starts_object(off, c), "class field {c}");
            }
        }
    }

    #[test]
    fn start_limit_admits_exactly_the_objects_that_exist() {
        // An object starting at `in_page` of a page exists when it is in a carved half and,
        // on the span's last page, ends inside the page.
        for (c, &size) in CLASS_SIZE.iter().enumerate().skip(1) {
            let size = size as usize;
            for last in [false, true] {
                for second in [false, true] {
                    let e = entry(128, c, 0)
                        | if last { LAST_PAGE } else { 0 }
                        | if second { SECOND_HALF } else { 0 };
                    for in_page in 0..PAGE {
                        let carved = second || in_page < PAGE / 2;
                        let inside = !last || in_page + size <= PAGE;
                        assert_eq!(
                            in_page < start_limit(e, c),
                            carved && inside,
                            "class {c}, last {last}, second half {second}, at {in_page}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_and_garbage_addresses_are_not_ours() {
        let local = 5u64;
        for a in [
            0usize,
            1,
            4095,
            &local as *const u64 as usize,
            usize::MAX,
            1 << 47,
            (1 << 48) + 8,
            0xdead_beef_0000,
        ] {
            assert_eq!(PAGEMAP.get(a), 0, "{a:#x}");
        }
    }

    #[test]
    fn set_and_get_cover_interior_addresses() {
        let base = os::map(1 << 20, 1 << 20).unwrap() as usize;
        assert!(PAGEMAP.reserve(base, 1 << 20));
        let fake = entry(0x1000 * 128, 5, 0);
        PAGEMAP.set_range(base, 4, fake);
        assert_eq!(PAGEMAP.get(base), fake);
        // The same page above the 48-bit address space is not ours (the bound `split` tests
        // on the root slot).
        for high in [1 << 48, 1 << 56, 1 << 63] {
            assert_eq!(PAGEMAP.get(base | high), 0, "{:#x}", base | high);
        }
        assert_eq!(PAGEMAP.get(base + 3 * (1 << PAGE_SHIFT) + 77), fake);
        assert_eq!(PAGEMAP.get(base + 4 * (1 << PAGE_SHIFT)), 0);
        for i in 0..4 {
            PAGEMAP.set(base + (i << PAGE_SHIFT), entry(0x1000 * 128, 9, i));
        }
        let e = PAGEMAP.get(base + 2 * (1 << PAGE_SHIFT) + 5);
        assert_eq!(
            (span_of(e), class_of(e), page_index(e)),
            (0x1000 * 128, 9, 2)
        );
        PAGEMAP.set_range(base, 4, 0);
        assert_eq!(PAGEMAP.get(base + 100), 0);
    }
}
