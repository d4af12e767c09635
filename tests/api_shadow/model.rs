//! The `api_shadow` model: a sequence of calls to the crate's C-shaped public functions
//! (`malloc`, `calloc`, `realloc`, `aligned_alloc`, `free`, `usable_size`, `trim`, and the per-CPU
//! budget set at run time through `ctl`) decoded from
//! bytes, each checked against a shadow of every live block: no two live blocks overlap, each is
//! aligned as promised, `usable_size` is at least the size asked for, contents are kept (across
//! `realloc` up to the smaller size), `calloc` memory reads as zero, and bad input gets NULL and
//! the documented `errno` without touching anything. Shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/api_shadow.rs` and the seeded runs of `tests/api_shadow.rs`.

use std::collections::BTreeMap;

/// Kinds of operation, for the counts [`run`] returns.
pub const KINDS: [&str; 9] = [
    "malloc",
    "calloc",
    "realloc",
    "aligned_alloc",
    "free",
    "usable_size",
    "trim",
    "bad input",
    "cpu_cache_bytes",
];

/// Per-CPU budgets the model sets at run time (`ctl("cpu_cache_bytes=…")`), lowering and
/// raising it under the caches' feet.
const CPU_CACHE_BYTES: [&[u8]; 4] = [
    b"cpu_cache_bytes=4k",
    b"cpu_cache_bytes=64k",
    b"cpu_cache_bytes=512k",
    b"cpu_cache_bytes=2m",
];

/// Blocks live at once, at most; huge ones (16 MiB and more) among them; bytes live, at most.
const LIVE: usize = 64;
const LIVE_HUGE: usize = 2;
const LIVE_BYTES: usize = 256 << 20;
/// Blocks up to this size have every byte written and checked; larger ones the first and last
/// 4 KiB and one word in each 4 KiB between.
const WHOLE: usize = 16 << 10;

struct Block {
    size: usize,
    seed: u64,
}

/// The bytes of a fuzz input, read as numbers (zero once they run out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> usize {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b as usize
    }

    fn word(&mut self) -> usize {
        self.byte() | self.byte() << 8 | self.byte() << 16
    }

    /// A size: mostly small, sometimes up to a few MiB, rarely huge.
    fn size(&mut self) -> usize {
        let (kind, n) = (self.byte(), self.word());
        match kind % 16 {
            0..=5 => n % 65,
            6..=9 => n % 1025,
            10..=12 => n % (32 << 10),
            13 | 14 => n % (512 << 10),
            _ if kind / 16 == 0 => (16 << 20) + n % (32 << 20),
            _ => n % (4 << 20),
        }
    }
}

/// The offsets of a block of `size` bytes that are written and checked.
fn checked(size: usize) -> impl Iterator<Item = usize> {
    let whole = size <= WHOLE;
    let (head, middle_end, tail) = if whole {
        (size, 0, size)
    } else {
        (4096, size - 4096, size - 4096)
    };
    let middle = (4096..middle_end).step_by(4096).flat_map(|i| i..i + 8);
    (0..head).chain(middle).chain(tail..size)
}

fn pattern(seed: u64, i: usize) -> u8 {
    (seed.rotate_left((i % 64) as u32) as u8) ^ (i / 64) as u8
}

fn fill(p: *mut u8, size: usize, seed: u64) {
    for i in checked(size) {
        // SAFETY: `i < size`, inside a live block of `size` bytes the model owns.
        unsafe { p.add(i).write(pattern(seed, i)) };
    }
}

/// The first offset below `upto` where the block does not hold its pattern (or zero).
fn first_bad(p: *mut u8, size: usize, upto: usize, seed: Option<u64>) -> Option<usize> {
    checked(size).filter(|&i| i < upto).find(|&i| {
        // SAFETY: as in `fill`.
        let b = unsafe { p.add(i).read() };
        b != seed.map_or(0, |s| pattern(s, i))
    })
}

fn errno() -> i32 {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

/// The alignment `malloc` promises for `size`.
fn c_align(size: usize) -> usize {
    if size <= 8 {
        8
    } else {
        16
    }
}

struct Shadow {
    live: BTreeMap<usize, Block>,
    bytes: usize,
    next_seed: u64,
}

impl Shadow {
    /// Takes in a block just returned for `size` bytes aligned to `align`: checks it, fills it
    /// (unless `zeroed`, which is checked instead) and records it.
    fn add(&mut self, p: *mut u8, size: usize, align: usize, zeroed: bool, what: &str) {
        let a = p as usize;
        assert!(!p.is_null(), "{what}({size}) returned NULL");
        assert!(
            a.is_multiple_of(align),
            "{what}({size}): {p:?} not aligned to {align}"
        );
        // SAFETY: a live block of this allocator.
        let usable = unsafe { rseqmalloc::usable_size(p) };
        assert!(usable >= size, "{what}({size}): usable_size {usable}");
        let end = a + size.max(1);
        if let Some((&b, blk)) = self.live.range(..end).next_back() {
            assert!(
                b + blk.size.max(1) <= a,
                "{what}({size}) = {p:?} overlaps the live block {b:#x} of {} bytes",
                blk.size
            );
        }
        if zeroed {
            assert_eq!(
                first_bad(p, size, size, None),
                None,
                "{what}({size}) not zeroed"
            );
        }
        self.next_seed += 1;
        let seed = self.next_seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        fill(p, size, seed);
        self.bytes += size;
        self.live.insert(a, Block { size, seed });
    }

    /// Checks a live block still holds its pattern (up to `upto` bytes).
    fn check(&self, a: usize, upto: usize, what: &str) {
        let b = &self.live[&a];
        if let Some(i) = first_bad(a as *mut u8, b.size, upto, Some(b.seed)) {
            panic!(
                "{what}: byte {i} of the live block {a:#x} ({} bytes) changed",
                b.size
            );
        }
    }

    fn remove(&mut self, a: usize) -> Block {
        let b = self.live.remove(&a).unwrap();
        self.bytes -= b.size;
        b
    }

    /// The address of the `i`-th live block (modulo how many there are), if any.
    fn pick(&self, i: usize) -> Option<usize> {
        let n = self.live.len();
        (n > 0).then(|| *self.live.keys().nth(i % n).unwrap())
    }

    fn huge(&self) -> usize {
        self.live.values().filter(|b| b.size >= 16 << 20).count()
    }

    /// Whether a new block of `size` bytes fits the model's bounds.
    fn room(&self, size: usize) -> bool {
        self.live.len() < LIVE
            && self.bytes + size <= LIVE_BYTES
            && (size < 16 << 20 || self.huge() < LIVE_HUGE)
    }
}

/// Runs the calls `data` encodes, checking each one and then `check` (the allocator's own
/// invariants, where the caller can reach them); frees every block left at the end. Panics on
/// the first violation. Returns how many calls of each of [`KINDS`] ran.
pub fn run(data: &[u8], check: &dyn Fn()) -> [usize; KINDS.len()] {
    let mut input = Input(data);
    let mut s = Shadow {
        live: BTreeMap::new(),
        bytes: 0,
        next_seed: 0,
    };
    let mut done = [0; KINDS.len()];
    // The per-CPU budget in force now, restored at the end: each input starts from the same
    // options (a fuzzer's later inputs, and reproducing one, do not depend on earlier ones).
    let mut was = [0u8; 32];
    let n = rseqmalloc::ctl(b"cpu_cache_bytes", &mut was).expect("ctl(cpu_cache_bytes)");
    let restore = [b"cpu_cache_bytes=".as_slice(), &was[..n]].concat();
    while !input.0.is_empty() {
        let op = input.byte() % 10;
        let kind = match op {
            0 | 1 => {
                let size = input.size();
                if !s.room(size) {
                    continue;
                }
                s.add(
                    rseqmalloc::malloc(size),
                    size,
                    c_align(size),
                    false,
                    "malloc",
                );
                0
            }
            2 => {
                let (n, size) = (1 + input.byte() % 8, input.size());
                let (elem, total) = (size / n, size / n * n);
                if !s.room(total) {
                    continue;
                }
                s.add(
                    rseqmalloc::calloc(n, elem),
                    total,
                    c_align(total),
                    true,
                    "calloc",
                );
                1
            }
            3 => {
                let (i, size) = (input.byte(), input.size());
                let old = if input.byte() % 8 == 0 {
                    None
                } else {
                    s.pick(i)
                };
                let grow = old.map_or(size, |a| size.saturating_sub(s.live[&a].size));
                if !s.room(grow) {
                    continue;
                }
                let Some(a) = old else {
                    // SAFETY: realloc of NULL allocates.
                    let p = unsafe { rseqmalloc::realloc(std::ptr::null_mut(), size) };
                    s.add(p, size, c_align(size), false, "realloc(NULL)");
                    continue;
                };
                s.check(a, usize::MAX, "before realloc");
                let b = s.remove(a);
                // SAFETY: a live block of this allocator, not used after this call.
                let p = unsafe { rseqmalloc::realloc(a as *mut u8, size) };
                if let Some(i) = first_bad(p, b.size, b.size.min(size), Some(b.seed)) {
                    panic!(
                        "realloc({a:#x}, {size}) from {} bytes lost byte {i}",
                        b.size
                    );
                }
                s.add(p, size, c_align(size), false, "realloc");
                2
            }
            4 => {
                let (shift, size) = (input.byte() % 23, input.size());
                let align = 1usize << shift;
                if !s.room(size) {
                    continue;
                }
                let p = rseqmalloc::aligned_alloc(align, size);
                s.add(p, size, align.max(c_align(size)), false, "aligned_alloc");
                3
            }
            5 | 6 => {
                let Some(a) = s.pick(input.byte()) else {
                    continue;
                };
                s.check(a, usize::MAX, "before free");
                s.remove(a);
                // SAFETY: a live block, not used after this call.
                unsafe { rseqmalloc::free(a as *mut u8) };
                4
            }
            7 => {
                let Some(a) = s.pick(input.byte()) else {
                    continue;
                };
                // SAFETY: a live block.
                let usable = unsafe { rseqmalloc::usable_size(a as *mut u8) };
                assert!(usable >= s.live[&a].size, "usable_size({a:#x}) = {usable}");
                s.check(a, usize::MAX, "usable_size");
                5
            }
            8 => match input.byte() % 4 {
                0 => {
                    rseqmalloc::trim();
                    6
                }
                1 => {
                    let set = CPU_CACHE_BYTES[input.byte() % CPU_CACHE_BYTES.len()];
                    assert_eq!(rseqmalloc::ctl(set, &mut [0u8; 8]), Ok(0), "ctl({set:?})");
                    8
                }
                _ => continue,
            },
            _ => {
                bad_input(&mut input, &s);
                7
            }
        };
        done[kind] += 1;
        check();
    }
    let all: Vec<usize> = s.live.keys().copied().collect();
    for a in all {
        s.check(a, usize::MAX, "at the end");
        s.remove(a);
        // SAFETY: a live block, not used after this call.
        unsafe { rseqmalloc::free(a as *mut u8) };
    }
    assert_eq!(rseqmalloc::ctl(&restore, &mut [0u8; 8]), Ok(0));
    check();
    done
}

/// Calls that must fail without touching anything: NULL and `ENOMEM` for impossible sizes and
/// overflowing `calloc`, NULL and `EINVAL` for an alignment that is not a power of two, a
/// failed `realloc` leaving its block as it was; `free(NULL)` does nothing.
fn bad_input(input: &mut Input, s: &Shadow) {
    let k = input.byte();
    let impossible = usize::MAX - (k << 12);
    let expect = |p: *mut u8, e: i32, what: &str| {
        assert!(p.is_null(), "{what} returned {p:?}");
        assert_eq!(errno(), e, "{what}: errno");
        set_errno(0);
    };
    set_errno(0);
    match k % 5 {
        0 => expect(
            rseqmalloc::malloc(impossible),
            libc::ENOMEM,
            "malloc(impossible)",
        ),
        1 => expect(
            rseqmalloc::calloc(usize::MAX / 2 + 1 + k, 2 + k % 7),
            libc::ENOMEM,
            "calloc(overflowing)",
        ),
        2 => {
            let align = 3 + 2 * (k / 5) + (k & 1 << 5);
            expect(
                rseqmalloc::aligned_alloc(align, 16),
                libc::EINVAL,
                "aligned_alloc(odd)",
            );
        }
        3 => {
            if let Some(a) = s.pick(k) {
                // SAFETY: a live block; on failure realloc leaves it live and unchanged.
                let p = unsafe { rseqmalloc::realloc(a as *mut u8, impossible) };
                expect(p, libc::ENOMEM, "realloc(impossible)");
                s.check(a, usize::MAX, "after a failed realloc");
            }
        }
        _ => {
            // SAFETY: free(NULL) is a no-op.
            unsafe { rseqmalloc::free(std::ptr::null_mut()) };
            assert_eq!(errno(), 0, "free(NULL) changed errno");
        }
    }
}
