//! The allocator as this test binary's `#[global_allocator]`, under 8 threads doing 4e6
//! operations in each of the three rseq modes (a child process each): sizes log-distributed
//! from 1 B to 1 MiB, random alignments, objects freed by other threads, every byte
//! pattern-checked before free, realloc chains checked for content.

mod common;

use rseqmalloc::RseqMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Arc, Mutex};

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const THREADS: usize = 8;
/// Operations in each mode (over all threads).
const OPS: usize = 4_000_000;
const SLOTS: usize = 256;

/// xorshift64*: fast, good enough to choose sizes and slots.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// One live object: where it is, its layout and the seed of its byte pattern.
struct Obj {
    ptr: *mut u8,
    layout: Layout,
    seed: u64,
}
// SAFETY: the object is exclusively owned by whoever holds the `Obj`.
unsafe impl Send for Obj {}

/// The byte pattern: byte `i` of an object is byte `i % 8` of the little-endian word
/// `seed ^ (i / 8) * K`, so every byte depends on the object and its position, and the check
/// runs a word at a time.
fn word(seed: u64, w: usize) -> u64 {
    seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn pattern(seed: u64, i: usize) -> u8 {
    word(seed, i / 8).to_le_bytes()[i % 8]
}

fn fill(o: &Obj, from: usize) {
    // SAFETY: `o.ptr` holds `o.layout.size()` bytes we own.
    let bytes = unsafe { std::slice::from_raw_parts_mut(o.ptr, o.layout.size()) };
    let mut i = from;
    while i < bytes.len() && !i.is_multiple_of(8) {
        bytes[i] = pattern(o.seed, i);
        i += 1;
    }
    let words = (bytes.len() - i) / 8;
    for (k, chunk) in bytes[i..i + words * 8].chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&word(o.seed, i / 8 + k).to_le_bytes());
    }
    for (j, b) in bytes.iter_mut().enumerate().skip(i + words * 8) {
        *b = pattern(o.seed, j);
    }
}

fn check(o: &Obj, upto: usize) {
    // SAFETY: as in `fill`.
    let bytes = unsafe { std::slice::from_raw_parts(o.ptr, upto) };
    let words = upto / 8;
    let bad_word = bytes[..words * 8]
        .chunks_exact(8)
        .enumerate()
        .position(|(k, c)| u64::from_le_bytes(c.try_into().unwrap()) != word(o.seed, k));
    let first_bad = match bad_word {
        Some(k) => Some(
            k * 8
                + (0..8)
                    .find(|&j| bytes[k * 8 + j] != pattern(o.seed, k * 8 + j))
                    .unwrap(),
        ),
        None => (words * 8..upto).find(|&i| bytes[i] != pattern(o.seed, i)),
    };
    assert!(
        first_bad.is_none(),
        "object {:p} size {} corrupted at byte {:?}",
        o.ptr,
        o.layout.size(),
        first_bad
    );
}

fn random_layout(rng: &mut Rng) -> Layout {
    // log-uniform over [1, 2^20]: pick the octave, then a size inside it
    let octave = rng.next() % 21;
    let lo = 1u64 << octave;
    let size = (lo + rng.next() % lo).min(1 << 20) as usize;
    let align = 1usize << (rng.next() % 13); // 1 .. 4096
    let align = if rng.next().is_multiple_of(64) {
        1 << (13 + rng.next() % 8)
    } else {
        align
    }; // up to 1 MiB
    Layout::from_size_align(size, align).unwrap()
}

fn alloc_obj(rng: &mut Rng) -> Obj {
    let layout = random_layout(rng);
    // SAFETY: non-zero size.
    let ptr = unsafe { GLOBAL.alloc(layout) };
    assert!(!ptr.is_null(), "allocation of {layout:?} failed");
    assert_eq!(ptr as usize % layout.align(), 0, "misaligned {layout:?}");
    let o = Obj {
        ptr,
        layout,
        seed: rng.next(),
    };
    fill(&o, 0);
    o
}

fn free_obj(o: Obj) {
    check(&o, o.layout.size());
    // SAFETY: allocated with this layout, not used afterwards.
    unsafe { GLOBAL.dealloc(o.ptr, o.layout) };
}

const CHILD: &str = "RSEQMALLOC_GLOBAL_STRESS_CHILD";

#[test]
fn four_million_operations_over_eight_threads_in_every_mode() {
    common::run_in_modes("child_stress", CHILD, "");
}

#[test]
#[ignore = "run as a child"]
fn child_stress() {
    if !common::in_child(CHILD) {
        return;
    }
    let inboxes: Arc<Vec<Mutex<Vec<Obj>>>> =
        Arc::new((0..THREADS).map(|_| Mutex::new(Vec::new())).collect());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let inboxes = Arc::clone(&inboxes);
            std::thread::spawn(move || {
                let mut rng =
                    Rng(0x1234_5678_9abc_def1 ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut slots: Vec<Option<Obj>> = (0..SLOTS).map(|_| None).collect();
                let (mut ops, mut remote_frees, mut reallocs) = (0usize, 0usize, 0usize);
                while ops < OPS / THREADS {
                    if ops % 64 == 0 {
                        let mine = std::mem::take(&mut *inboxes[t].lock().unwrap());
                        for o in mine {
                            free_obj(o);
                            remote_frees += 1;
                            ops += 1;
                        }
                    }
                    let i = (rng.next() % SLOTS as u64) as usize;
                    match slots[i].take() {
                        None => slots[i] = Some(alloc_obj(&mut rng)),
                        Some(o) => match rng.next() % 8 {
                            0 => inboxes[(t + 1 + (rng.next() as usize % (THREADS - 1))) % THREADS]
                                .lock()
                                .unwrap()
                                .push(o),
                            1 | 2 => {
                                // realloc chain step: keep the prefix, extend the pattern
                                let new_size = random_layout(&mut rng).size();
                                // SAFETY: `o` is live with `o.layout`; new size is non-zero.
                                let p = unsafe { GLOBAL.realloc(o.ptr, o.layout, new_size) };
                                assert!(!p.is_null());
                                let n = Obj {
                                    ptr: p,
                                    layout: Layout::from_size_align(new_size, o.layout.align())
                                        .unwrap(),
                                    seed: o.seed,
                                };
                                assert_eq!(p as usize % o.layout.align(), 0);
                                check(&n, o.layout.size().min(new_size));
                                fill(&n, o.layout.size().min(new_size));
                                slots[i] = Some(n);
                                reallocs += 1;
                            }
                            _ => free_obj(o),
                        },
                    }
                    ops += 1;
                }
                for o in slots.into_iter().flatten() {
                    free_obj(o);
                }
                (remote_frees, reallocs)
            })
        })
        .collect();
    let mut remote = 0;
    let mut reallocs = 0;
    for h in handles {
        let (r, re) = h.join().unwrap();
        remote += r;
        reallocs += re;
    }
    for inbox in inboxes.iter() {
        for o in std::mem::take(&mut *inbox.lock().unwrap()) {
            free_obj(o);
        }
    }
    assert!(remote > OPS / 200, "too few cross-thread frees: {remote}");
    assert!(reallocs > OPS / 20, "too few reallocs: {reallocs}");
}
