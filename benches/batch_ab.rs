//! `batch_ab`: criterion's `batch` cells (n allocations of one size, then their frees; sizes
//! 16, 64, 256 and 1024 B, n = 1 to 4096) measured by alternation inside one process.
//!
//! On a noisy machine criterion measures one cell after another, and the host's slow phases
//! land on some allocators' cells and not on others: the `mimalloc` crate's own 16 B × 16
//! cell read 70.6 and 126.7 ns a burst of 16 in two runs of session 36. Here every round times
//! one block of each allocator in turn (in an order shuffled each round, so no allocator
//! always runs after the same one), and the ratio of rseqmalloc's block to a peer's in the same
//! round is the unit of comparison, so a slow phase of the host lengthens both sides of a
//! ratio. Each cell prints every allocator's median cost per object (one allocation and its
//! free, in ns) and rseqmalloc's median per-round ratio to each peer with its 10th–90th
//! percentile range. A summary gives issue 12's `batch` targets: at or below the `mimalloc`
//! crate while n × size fits the per-CPU byte budget (`cpu_cache_bytes`, 512 KiB by default),
//! at most 1.3x past it (both from the ratios, when mimalloc is among the peers), and flat in n
//! (rseqmalloc's median against its own n = 16 median, within 1.3x).
//!
//! Every object gets its index written at allocation and checked before its free: the burst is
//! `burst.rs`' `batch_of`, the code criterion's `batch` group times, which calls each allocator as
//! a program calls its global allocator through a non-inlined `__rust_alloc` (one direct call each
//! for `alloc` and `dealloc`, the alignment a value the compiler cannot see). Each block takes its
//! pointer array at a fresh cache line of a page (below, `measure`), where criterion keeps one
//! array; since session 37's mends to the harness that moves nothing measurable, and the two
//! harnesses agree by median within about 3 %. The binary itself runs on the system allocator.
//!
//! ```sh
//! cargo bench -p rseqmalloc-benches --bench batch_ab                  # all 24 cells, ~10 s
//! cargo bench -p rseqmalloc-benches --bench batch_ab -- --rounds 301 16B
//! cargo bench -p rseqmalloc-benches --bench batch_ab -- --peers mimalloc --n 16,32,48,64 16B
//! ```
//! Arguments:
//! - `--rounds R`: rounds a cell (default 101).
//! - `--peers a,b`: which of mimalloc, jemalloc and glibc alternate with rseqmalloc (default all
//!   three; with fewer, less time passes between two blocks of one allocator).
//! - `--alone NAME`: time one allocator by itself (rseqmalloc or a peer): its medians only, no
//!   ratios and no summary, to tell what the alternation does to it.
//! - `--n a,b,…`: burst lengths in place of criterion's.
//! - `--block OBJECTS`: objects a timed block allocates and frees (default 65,536).
//! - Anything else is a filter, a substring of a cell's name (`16B/64`); a cell runs when any
//!   filter matches it. No cell matching is an error.

#[expect(
    dead_code,
    reason = "`global_realloc` is for alloc.rs's `realloc_grow` group"
)]
mod burst;

use burst::{align8, batch_of, BATCH_NS, BATCH_SIZES, JEMALLOC, MIMALLOC, RSEQ};
use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Instant;

/// The allocators' names, rseqmalloc first: every ratio is rseqmalloc's time over another's.
/// [`block_of`] calls them by these indices.
const ALLOCATORS: [&str; 4] = ["rseqmalloc", "mimalloc", "jemalloc", "glibc"];

/// Where the `mimalloc` crate is in [`ALLOCATORS`]: the targets are read against it.
const MIMALLOC_AT: usize = 1;
const _: () = assert!(matches!(ALLOCATORS[MIMALLOC_AT].as_bytes(), b"mimalloc"));

/// Objects one timed block allocates and frees (a block repeats its burst this many objects'
/// worth): about a quarter of a millisecond for rseqmalloc and mimalloc (up to 22 ms for
/// glibc's 1 KiB bursts past its caches), long against the clock's cost, short against the
/// host's slow phases.
const BLOCK_OBJECTS: usize = 1 << 16;

/// The per-CPU byte budget the cells are read against: `cpu_cache_bytes`' default.
const BUDGET_BYTES: usize = 512 << 10;

/// One timed block: `reps` bursts of `n` objects of `layout` (at least a `usize`, aligned for
/// one); returns ns per object. One copy per allocator, as `burst.rs`' calls are.
#[inline(never)]
fn block<A: GlobalAlloc>(
    a: &A,
    layout: Layout,
    n: usize,
    reps: usize,
    ptrs: &mut [*mut u8],
) -> f64 {
    // `batch_of`'s contract, checked outside the timing.
    assert!(layout.size() >= size_of::<usize>() && layout.align() >= align_of::<usize>());
    let t = Instant::now();
    for _ in 0..reps {
        // SAFETY: asserted above.
        unsafe { batch_of(a, layout, n, ptrs) };
    }
    t.elapsed().as_nanos() as f64 / (reps * n) as f64
}

/// [`block`] of allocator `i` of [`ALLOCATORS`], statically dispatched (burst.rs says why).
fn block_of(i: usize, layout: Layout, n: usize, reps: usize, ptrs: &mut [*mut u8]) -> f64 {
    match i {
        0 => block(&RSEQ, layout, n, reps, ptrs),
        1 => block(&MIMALLOC, layout, n, reps, ptrs),
        2 => block(&JEMALLOC, layout, n, reps, ptrs),
        _ => block(&System, layout, n, reps, ptrs),
    }
}

/// The `q`-quantile (0..=1) of sorted `v`: the element at index `round((len - 1) · q)`.
fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// What one cell measured: per allocator its per-round ns per object, in round order (empty
/// for an allocator not measured).
struct Cell {
    size: usize,
    n: usize,
    times: Vec<Vec<f64>>,
}

/// A cell's name, as filters match it and the output prints it: `16B/64`.
fn cell_name(size: usize, n: usize) -> String {
    format!("{size}B/{n}")
}

impl Cell {
    fn name(&self) -> String {
        cell_name(self.size, self.n)
    }

    fn median(&self, k: usize) -> f64 {
        quantile(&sorted(self.times[k].clone()), 0.5)
    }

    /// rseqmalloc's per-round ratios to allocator `k`, sorted (both measured in every round).
    fn ratios(&self, k: usize) -> Vec<f64> {
        debug_assert_eq!(self.times[0].len(), self.times[k].len());
        sorted(
            self.times[0]
                .iter()
                .zip(&self.times[k])
                .map(|(o, p)| o / p)
                .collect(),
        )
    }

    fn in_budget(&self) -> bool {
        self.n * self.size <= BUDGET_BYTES
    }
}

/// A small xorshift generator: the rounds' orders, the same in every run.
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fisher–Yates over `v`.
    fn shuffle(&mut self, v: &mut [usize]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// Measures one cell on the allocators `on` (indices into [`ALLOCATORS`], each once), every
/// round timing each of them once in a shuffled order; an allocator not in `on` gets no times.
fn measure(size: usize, n: usize, rounds: usize, on: &[usize], block_objects: usize) -> Cell {
    let layout = Layout::from_size_align(size, align8()).unwrap();
    let reps = (block_objects / n).max(1);
    // Each block takes its `n` slots at a fresh offset, one of the 64 cache lines of a 4 KiB
    // page (the whole range of the ways a store to the array and a load of an object can
    // alias), so that no one placement decides a cell: through `&dyn` the array's place moved
    // cells by 10 % or more; since session 37's mends nothing measurable.
    const LINE: usize = 64 / size_of::<*mut u8>();
    let mut buf = vec![std::ptr::null_mut::<u8>(); n + 64 * LINE];
    let mut rng = Shuffle(0x9e37_79b9_7f4a_7c15 ^ (size * 4099 + n) as u64);
    let slots = |rng: &mut Shuffle| {
        let at = (rng.next() % 64) as usize * LINE;
        at..at + n
    };
    for &i in on {
        for _ in 0..3 {
            let r = slots(&mut rng);
            block_of(i, layout, n, reps, &mut buf[r]);
        }
    }
    let mut times = vec![Vec::with_capacity(rounds); ALLOCATORS.len()];
    let mut order = on.to_vec();
    for _ in 0..rounds {
        rng.shuffle(&mut order);
        for &i in &order {
            let r = slots(&mut rng);
            times[i].push(block_of(i, layout, n, reps, &mut buf[r]));
        }
    }
    Cell { size, n, times }
}

/// The index in [`ALLOCATORS`] of `name` (panics naming `option` for an unknown one).
fn allocator(name: &str, option: &str) -> usize {
    ALLOCATORS
        .iter()
        .position(|l| *l == name)
        .unwrap_or_else(|| panic!("{option}: no allocator {name:?}"))
}

/// The positive number an option takes (panics naming `option` otherwise).
fn positive(arg: &str, option: &str) -> usize {
    arg.parse()
        .ok()
        .filter(|&r| r > 0)
        .unwrap_or_else(|| panic!("{option} takes a positive number"))
}

fn main() {
    let mut rounds = 101;
    let mut block_objects = BLOCK_OBJECTS;
    let mut on: Vec<usize> = (0..ALLOCATORS.len()).collect();
    let mut alone = false;
    let mut ns = BATCH_NS.to_vec();
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = |args: &mut std::iter::Skip<std::env::Args>| {
            args.next().unwrap_or_else(|| panic!("{a} takes a value"))
        };
        match a.as_str() {
            "--rounds" => rounds = positive(&value(&mut args), "--rounds"),
            "--block" => block_objects = positive(&value(&mut args), "--block"),
            "--peers" => {
                assert!(!alone, "--alone and --peers exclude each other");
                on = vec![0];
                for name in value(&mut args).split(',') {
                    let k = allocator(name, "--peers");
                    assert!(
                        k != 0 && !on.contains(&k),
                        "--peers: {name:?} twice or ours"
                    );
                    on.push(k);
                }
            }
            "--alone" => {
                assert!(
                    on.len() == ALLOCATORS.len(),
                    "--alone and --peers exclude each other"
                );
                on = vec![allocator(&value(&mut args), "--alone")];
                alone = true;
            }
            "--n" => {
                ns = value(&mut args)
                    .split(',')
                    .map(|n| positive(n, "--n"))
                    .collect();
            }
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            f if f.starts_with('-') => panic!("unknown option {f:?} (see the file's header)"),
            f => filters.push(f.to_string()),
        }
    }
    println!(
        "batch_ab: {rounds} rounds a cell, blocks of {block_objects} objects, order shuffled \
         each round"
    );
    println!(
        "cell = size/n; ns per object (allocation + free), median of rounds; ours/peer: median \
         per-round ratio [p10-p90]"
    );
    let mut cells = Vec::new();
    for size in BATCH_SIZES {
        for &n in &ns {
            let name = cell_name(size, n);
            if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            let cell = measure(size, n, rounds, &on, block_objects);
            let mut line = format!(
                "{name:>9} {} |",
                if cell.in_budget() { "in " } else { "out" }
            );
            for &k in &on {
                line += &format!(" {} {:6.2}", ALLOCATORS[k], cell.median(k));
            }
            if !alone {
                line += " |";
                for &k in &on[1..] {
                    let r = cell.ratios(k);
                    line += &format!(
                        " /{} {:.2} [{:.2}-{:.2}]",
                        ALLOCATORS[k],
                        quantile(&r, 0.5),
                        quantile(&r, 0.1),
                        quantile(&r, 0.9)
                    );
                }
            }
            println!("{line}");
            cells.push(cell);
        }
    }
    assert!(!cells.is_empty(), "no cell matches the filters {filters:?}");
    if alone {
        return;
    }
    if on.contains(&MIMALLOC_AT) {
        targets_against_mimalloc(&cells);
    }
    flat_in_n(&cells);
}

/// Issue 12's `batch` targets against the `mimalloc` crate, from the per-round ratios.
fn targets_against_mimalloc(cells: &[Cell]) {
    let mi = MIMALLOC_AT;
    let (inside, past): (Vec<&Cell>, Vec<&Cell>) = cells.iter().partition(|c| c.in_budget());
    let at_or_below = inside
        .iter()
        .filter(|c| quantile(&c.ratios(mi), 0.5) <= 1.0)
        .count();
    let clearly_above: Vec<String> = inside
        .iter()
        .filter(|c| quantile(&c.ratios(mi), 0.1) > 1.0)
        .map(|c| c.name())
        .collect();
    println!(
        "within the budget ({} cells): at or below mimalloc by median in {at_or_below}; \
         above in 9 of 10 rounds: {}",
        inside.len(),
        if clearly_above.is_empty() {
            "none".to_string()
        } else {
            clearly_above.join(" ")
        }
    );
    let worst_past = past
        .iter()
        .map(|c| (quantile(&c.ratios(mi), 0.5), c.name()))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((r, name)) = worst_past {
        println!(
            "past the budget ({} cells): highest median ratio to mimalloc {r:.2} ({name}); \
             target <= 1.3",
            past.len()
        );
    }
}

/// Issue 12's "flat in n": rseqmalloc's median at each n ≥ 16 within the budget against its
/// own median at n = 16 (a size without an n = 16 cell measured is skipped).
fn flat_in_n(cells: &[Cell]) {
    for size in BATCH_SIZES {
        let Some(at16) = cells.iter().find(|c| c.size == size && c.n == 16) else {
            continue;
        };
        let base = at16.median(0);
        let flat: Vec<String> = cells
            .iter()
            .filter(|c| c.size == size && c.n >= 16 && c.in_budget())
            .map(|c| format!("{}:{:.2}", c.n, c.median(0) / base))
            .collect();
        println!(
            "{size} B, ours against n = 16 within the budget (target <= 1.3): {}",
            flat.join(" ")
        );
    }
}
