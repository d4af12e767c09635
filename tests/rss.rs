//! Resident memory, read from `/proc/self/statm`: freed memory goes back to the OS on trim, after
//! the decay period, and at once for huge objects; per-thread working sets leave behind an
//! amount tied to CPUs, not threads. Each scenario runs in a child process of this binary so
//! that no other test's memory is counted.

mod common;

use rseqmalloc::RseqMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const MIB: usize = 1 << 20;

fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

/// Allocates about `bytes` of small objects (16–2048 B), touching each, and returns them.
fn small_objects(bytes: usize) -> Vec<(*mut u8, Layout)> {
    let mut v = Vec::with_capacity(bytes / 512);
    let mut total = 0;
    let mut i = 0usize;
    while total < bytes {
        let l = Layout::from_size_align(16 + (i * 37) % 2032, 8).unwrap();
        // SAFETY: non-zero size; we write within it.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(!p.is_null());
        // SAFETY: `p` holds `l.size()` bytes.
        unsafe { p.write_bytes(0x5a, l.size()) };
        v.push((p, l));
        total += l.size();
        i += 1;
    }
    v
}

fn free_all(v: Vec<(*mut u8, Layout)>) {
    for (p, l) in v {
        // SAFETY: allocated by `small_objects` with `l`.
        unsafe { GLOBAL.dealloc(p, l) };
    }
}

/// Runs the child test `name` with `options` in each of the three rseq modes, checking the
/// child ran in the mode meant. The heap gets no transparent huge pages unless `options` says
/// otherwise: the bounds here count 4 KiB pages, and a system whose THP policy is `always`
/// would back the heap with 2 MiB ones.
fn run_child(name: &str, options: &str) -> Vec<(&'static str, String)> {
    let options = if options.contains("huge_pages=") {
        options.to_string()
    } else {
        common::join_options(&[options, "huge_pages=never"])
    };
    common::run_in_modes(name, "RSEQMALLOC_RSS_CHILD", &options)
}

/// Whether this process is a scenario's child (see `common::in_child`).
fn is_child() -> bool {
    common::in_child("RSEQMALLOC_RSS_CHILD")
}

#[test]
fn trim_returns_a_freed_gib_of_small_objects() {
    run_child("child_trim", "");
}

#[test]
#[ignore = "run as a child"]
fn child_trim() {
    if !is_child() {
        return;
    }
    let v = small_objects(64 << 10); // warm up the allocator's own structures
    free_all(v);
    rseqmalloc::trim();
    let base = rss();
    let v = small_objects(1 << 30);
    let peak = rss();
    assert!(
        peak > base + 900 * MIB,
        "the objects were not resident: {base} -> {peak}"
    );
    free_all(v);
    let released = rseqmalloc::trim();
    let after = rss();
    println!(
        "baseline {} MiB, peak {} MiB, after trim {} MiB (released {} MiB)",
        base / MIB,
        peak / MIB,
        after / MIB,
        released / MIB
    );
    assert!(
        after <= base + 5 * MIB,
        "RSS {after} not within 5 MiB of baseline {base} after trim"
    );
}

#[test]
fn decay_returns_a_freed_gib_without_trim() {
    run_child("child_decay", "decay_ms=200,background_thread=on");
}

#[test]
#[ignore = "run as a child"]
fn child_decay() {
    if !is_child() {
        return;
    }
    common::start_background_thread();
    let v = small_objects(64 << 10);
    free_all(v);
    rseqmalloc::trim();
    let base = rss();
    let v = small_objects(1 << 30);
    free_all(v);
    // Poll (the background thread releases pages free for longer than decay_ms); fail if it
    // has not happened within 150 decay periods (a loaded machine ticks late).
    let start = Instant::now();
    let mut after = rss();
    while after > base + 5 * MIB && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
        after = rss();
    }
    println!(
        "baseline {} MiB, after decay {} MiB in {:?}",
        base / MIB,
        after / MIB,
        start.elapsed()
    );
    assert!(
        after <= base + 5 * MIB,
        "RSS {after} not within 5 MiB of baseline {base} after the decay period"
    );
}

#[test]
fn freed_huge_object_leaves_rss_at_once() {
    run_child("child_huge", "");
}

#[test]
#[ignore = "run as a child"]
fn child_huge() {
    if !is_child() {
        return;
    }
    let base = rss();
    let l = Layout::from_size_align(256 * MIB, 8).unwrap();
    // SAFETY: non-zero size; written within bounds.
    unsafe {
        let p = GLOBAL.alloc(l);
        assert!(!p.is_null());
        p.write_bytes(1, l.size());
        assert!(rss() >= base + 250 * MIB);
        GLOBAL.dealloc(p, l);
    }
    let after = rss();
    assert!(
        after <= base + 2 * MIB,
        "RSS {after} vs baseline {base} right after freeing 256 MiB"
    );
}

/// Frees 16 large objects of 4 MiB (page-heap spans, under the huge threshold) that were
/// written in full, and returns the RSS growth over `base` right after the frees.
fn large_objects_freed(base: usize) -> usize {
    let l = Layout::from_size_align(4 * MIB, 8).unwrap();
    // SAFETY: non-zero size; written within bounds; freed with the same layout.
    let ps: Vec<*mut u8> = (0..16)
        .map(|i| unsafe {
            let p = GLOBAL.alloc(l);
            assert!(!p.is_null());
            p.write_bytes(i as u8 + 1, l.size());
            p
        })
        .collect();
    assert!(rss() >= base + 60 * MIB);
    for p in ps {
        // SAFETY: allocated above with `l`.
        unsafe { GLOBAL.dealloc(p, l) };
    }
    rss().saturating_sub(base)
}

#[test]
fn dirty_max_bounds_resident_free_pages() {
    run_child("child_dirty_max", "dirty_max=8m");
    run_child("child_no_dirty_max", "decay_ms=60000");
}

#[test]
#[ignore = "run as a child"]
fn child_dirty_max() {
    if !is_child() {
        return;
    }
    let base = rss();
    // With dirty_max=8m, at most 8 MiB of the freed 64 MiB stays resident (plus slack for the
    // merged span that pushed it over, released with it).
    let kept = large_objects_freed(base);
    assert!(
        kept <= 12 * MIB,
        "{kept} bytes still resident after the frees"
    );
}

#[test]
#[ignore = "run as a child"]
fn child_no_dirty_max() {
    if !is_child() {
        return;
    }
    let base = rss();
    // Unbounded (the default), freed pages stay for reuse until the decay period (set to a
    // minute here, so a slow machine cannot blur the figure) or a trim.
    let kept = large_objects_freed(base);
    assert!(
        kept >= 56 * MIB,
        "only {kept} bytes resident right after the frees"
    );
    assert!(rseqmalloc::trim() >= 56 * MIB);
    assert!(rss() <= base + 8 * MIB);
}

#[test]
fn thread_working_sets_leave_a_cpu_bounded_footprint() {
    // The page runs the 64 working sets freed are returned by the decay (shown by the decay
    // test); what must stay bounded by CPUs is what the allocator keeps after it.
    run_child("child_threads", "decay_ms=200,background_thread=on");
}

#[test]
#[ignore = "run as a child"]
fn child_threads() {
    if !is_child() {
        return;
    }
    const THREADS: usize = 64;
    const WORKING_SET: usize = 4 * MIB;
    let v = small_objects(64 << 10);
    free_all(v);
    let base = rss();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| free_all(small_objects(WORKING_SET)));
        }
    });
    let st = rseqmalloc::stats();
    let budget = rseqmalloc::options().cpu_cache_bytes as usize;
    // per-CPU caches and their 128 KiB slabs, plus central transfer stacks (at most 256 KiB
    // per class) and partly used spans: a figure tied to CPUs and classes, not to the 64
    // threads (the slabs the threads used: CPUs or concurrency ids that ran, not every
    // possible CPU). Poll for at most 150 decay periods (a loaded machine ticks late).
    let bound = st.slabs_in_use * (budget + 128 * 1024) + 32 * MIB;
    let start = Instant::now();
    let mut after = rss();
    while after > base + bound && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
        after = rss();
    }
    println!(
        "64 threads x {} MiB: RSS grew {} MiB (bound {} MiB for {} slabs), cached {:?}",
        WORKING_SET / MIB,
        (after - base) / MIB,
        bound / MIB,
        st.slabs,
        &st.cpu_cache_bytes[..st.slabs.min(4)]
    );
    assert!(
        after <= base + bound,
        "RSS grew by {} bytes, bound {bound}",
        after - base
    );
    assert!(bound < THREADS * WORKING_SET / 4);
}

#[test]
fn buffers_grown_through_every_class_keep_mid_size_objects_within_the_cpu_budget() {
    run_child("child_class_walk", "");
}

#[test]
#[ignore = "run as a child"]
fn child_class_walk() {
    if !is_child() {
        return;
    }
    const BUFFERS: usize = 32;
    const STEP: usize = 64;
    const TOP: usize = 64 << 10;
    let base = rss();
    for round in 0..4u8 {
        // Grown side by side by `realloc`, so each buffer passes through every class up to
        // 64 KiB, as a program growing strings or vectors exactly does.
        let mut bufs = [std::ptr::null_mut::<u8>(); BUFFERS];
        for size in (STEP..=TOP).step_by(STEP) {
            for (i, b) in bufs.iter_mut().enumerate() {
                let tag = round ^ i as u8;
                // SAFETY: `b` is null or was (re)allocated here with the previous size, whose
                // first byte was written with `tag`; the new size is non-zero.
                unsafe {
                    *b = if b.is_null() {
                        GLOBAL.alloc(Layout::from_size_align(size, 8).unwrap())
                    } else {
                        let old = Layout::from_size_align(size - STEP, 8).unwrap();
                        GLOBAL.realloc(*b, old, size)
                    };
                    assert!(!b.is_null());
                    assert!(size == STEP || **b == tag, "buffer {i} lost its contents");
                    b.write(tag);
                    b.add(size - 1).write(tag);
                }
            }
        }
        for b in bufs {
            // SAFETY: allocated above with this final size.
            unsafe { GLOBAL.dealloc(b, Layout::from_size_align(TOP, 8).unwrap()) };
        }
    }
    let grew = rss().saturating_sub(base);
    let st = rseqmalloc::stats();
    let mid_cached: usize = (1..st.class_size.len())
        .filter(|&c| st.class_size[c] > 1024)
        .map(|c| st.class_cached[c] * st.class_size[c])
        .sum();
    let budget = rseqmalloc::options().cpu_cache_bytes as usize;
    println!(
        "class walk: RSS grew {} KiB; {} KiB of objects above 1 KiB cached ({} slabs in use, \
         budget {} KiB each)",
        grew >> 10,
        mid_cached >> 10,
        st.slabs_in_use,
        budget >> 10
    );
    // Freed objects above 1 KiB go back to their spans (no transfer stack holds them), so
    // only the per-CPU caches may keep some, within their budget...
    assert!(
        mid_cached <= st.slabs_in_use * budget,
        "{mid_cached} bytes of objects above 1 KiB cached"
    );
    // ...and the pages of emptied spans serve the next classes: what stays resident is the
    // walk's peak live data (32 x 64 KiB) and the per-CPU caches, with slack for partly used
    // spans, not a high-water per class (with a transfer stack in every class: 14 MiB).
    let bound = BUFFERS * TOP + st.slabs_in_use * budget + 3 * MIB;
    assert!(grew <= bound, "RSS grew by {grew} bytes, bound {bound}");
}

#[test]
fn a_block_realloc_moves_out_of_its_class_goes_back_to_its_span() {
    run_child("child_realloc_bypass", "");
}

#[test]
#[ignore = "run as a child"]
fn child_realloc_bypass() {
    if !is_child() {
        return;
    }
    let cached = |size: usize| {
        let st = rseqmalloc::stats();
        let c = (1..st.class_size.len())
            .find(|&c| st.class_size[c] >= size)
            .unwrap();
        st.class_cached[c]
    };
    let l = |size| Layout::from_size_align(size, 8).unwrap();
    for size in [2048, 16 << 10] {
        // SAFETY: non-zero sizes; each block is used within its size and freed once.
        unsafe {
            let p = GLOBAL.alloc(l(size));
            assert!(!p.is_null());
            p.write_bytes(7, size);
            let before = cached(size);
            // Grown out of its class: the old block goes back to its span, not to a cache.
            let q = GLOBAL.realloc(p, l(size), size * 2);
            assert!(!q.is_null() && *q == 7 && *q.add(size - 1) == 7);
            assert_eq!(
                cached(size),
                before,
                "{size}-byte block cached after realloc"
            );
            // A plain free of a block of that class is cached as usual.
            let r = GLOBAL.alloc(l(size));
            let before = cached(size);
            GLOBAL.dealloc(r, l(size));
            assert_eq!(cached(size), before + 1, "{size}-byte free not cached");
            GLOBAL.dealloc(q, l(size * 2));
        }
    }
}

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut u), 0);
        u.ru_minflt
    }
}

/// A zeroed block from fresh memory that the program reads before it writes costs one fault
/// per page at most, not two (the zero page, then the copy), once the program has shown that
/// it uses its zeroed blocks whole: `calloc` then faults fresh blocks below 32 MiB in writable
/// with one call. The process's first zeroed block stays lazy (a sparse table must not become
/// resident whole, session 71: conformance `calloc_sparse.c`), so each round here keeps its
/// first block while it takes a second, fresh one, which must be cheap. In all three modes.
#[test]
fn calloc_of_fresh_memory_after_dense_use_is_read_then_written_without_two_faults_per_page() {
    for (_, out) in run_child("child_calloc_faults", "") {
        assert!(out.contains("RESULT"), "{out}");
    }
}

/// Reads then writes every page of `p` (`SIZE` bytes), as a program filling a table does;
/// returns the sum of what it read (0 for a zeroed block) and the minor faults it took.
fn read_then_write(p: *mut u8, size: usize) -> (u64, i64) {
    let before = minor_faults();
    let mut sum = 0u64;
    for i in (0..size).step_by(4096) {
        // SAFETY: inside the caller's block of `size` bytes.
        unsafe {
            sum += p.add(i).read_volatile() as u64;
            p.add(i).write_volatile(1);
        }
    }
    (sum, minor_faults() - before)
}

#[test]
#[ignore = "run as a child"]
fn child_calloc_faults() {
    if !is_child() {
        return;
    }
    const SIZE: usize = 24 * MIB;
    let pages = SIZE / 4096;
    for round in 0..3 {
        // The first block: lazy in the first round (the program's use not seen yet), after
        // that a reused block (cleared by calloc while resident) or a populated one.
        let first = rseqmalloc::calloc(1, SIZE);
        assert!(!first.is_null());
        let (sum, first_faults) = read_then_write(first, SIZE);
        assert_eq!(sum, 0, "calloc gave non-zero memory");
        // A second block while the first is live: fresh memory, after a block used whole.
        let p = rseqmalloc::calloc(1, SIZE);
        assert!(!p.is_null());
        let (sum, faults) = read_then_write(p, SIZE);
        println!("round {round}: {first_faults} then {faults} faults for {pages} pages each");
        assert_eq!(sum, 0, "calloc gave non-zero memory");
        // Two per page without populating. The kernel counts the pages a populate call
        // faults in as minor faults too (without a trap each), so at most one per page and a
        // few for metadata.
        assert!(
            faults < pages as i64 * 5 / 4,
            "{faults} faults for {pages} pages"
        );
        // SAFETY: from calloc above; each freed once.
        unsafe {
            rseqmalloc::free(p);
            rseqmalloc::free(first);
        }
    }
    println!("RESULT ok=1");
}

/// A program with more than one thread (this test harness has several) that allocates rounds
/// of mid-size buffers, uses their start and frees them all keeps its free pages between the
/// rounds: rounds 11–20 fault in on average at most three fifths of the pages the first round
/// did (measured: 0.42–0.43 when this rule came; since session 33 classes of a page and up
/// also take their own spans' pages back, and it reads 0.02–0.03). Before the shrinking-heap
/// rule told rounds from a shrink (`PageHeap::shrink_rule`), every round gave a quarter of the
/// heap back and faulted it in again, carving the classes at new offsets: 0.77 of the first
/// round's faults each round (`benches/c/partial_buffers.c` with an idle thread: 81,000 faults
/// in 50 rounds against 33,800 in a single-threaded process; docs/benchmarks.md, "Session
/// 32"). In all three modes. The child also checks the tighter bound that classes taking
/// back their own spans' pages give (session 33; see there).
#[test]
fn rounds_of_partly_used_buffers_keep_their_pages_in_a_threaded_program() {
    for (mode, out) in run_child("child_partial_buffer_rounds", "") {
        let figures = out.lines().find(|l| l.starts_with("first round"));
        eprintln!("[{mode}] {}", figures.unwrap_or("(none)"));
        assert!(out.contains("RESULT"), "{out}");
    }
}

#[test]
#[ignore = "run as a child"]
fn child_partial_buffer_rounds() {
    if !is_child() {
        return;
    }
    const BLOCKS: usize = 2000;
    // The rule applies to processes that ever had a second thread; the harness's test thread
    // makes this one so, and this one makes sure of it.
    std::thread::spawn(|| {}).join().unwrap();
    let mut blocks = vec![std::ptr::null_mut::<u8>(); BLOCKS];
    let mut x = 88172645463325252u64;
    let mut first = 0;
    let mut late = 0;
    for round in 0..20 {
        let before = minor_faults();
        for (i, b) in blocks.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let p = rseqmalloc::malloc(8192 + (x % 120_000) as usize);
            assert!(!p.is_null());
            // SAFETY: the block holds at least 8,192 bytes.
            unsafe { p.write_bytes((round + i) as u8, 64) };
            *b = p;
        }
        for (i, &p) in blocks.iter().enumerate() {
            // SAFETY: written above; freed once here.
            unsafe {
                assert_eq!(p.add(63).read(), (round + i) as u8);
                rseqmalloc::free(p);
            }
        }
        let faults = minor_faults() - before;
        if round == 0 {
            first = faults;
        } else if round >= 10 {
            late += faults;
        }
    }
    println!("first round {first} faults, rounds 11-20 {late}");
    assert!(
        late <= first * 6,
        "rounds 11-20 faulted in {late} pages, the first round {first}"
    );
    // A class of a page or more takes back the pages of the spans it gave back (`central`'s
    // hints, `PageHeap::alloc_span_at`), so each class's blocks land where they were and the
    // later rounds touch few new pages. Before, each round carved the classes at new offsets
    // in the merged free runs: rounds 11-20 faulted in 8,735-8,907 pages against 2,090 for
    // the first round, and 50 rounds of `benches/c/partial_buffers.c` left 137 MB resident
    // (tcmalloc-minimal 78 MB); now 446-551 pages and 21 MB (docs/benchmarks.md, "Session
    // 33").
    assert!(
        late * 2 <= first,
        "rounds 11-20 faulted in {late} pages, more than half the first round's {first}: \
         a class no longer takes back its own spans' pages"
    );
    println!("RESULT ok=1");
}
