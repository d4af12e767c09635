//! With 64 threads on this machine's CPUs, the per-CPU layer's memory is bounded by the number
//! of CPUs (or concurrency ids), not by the number of threads; memory one CPU frees of what
//! another allocated goes back, or is reused, whatever the other CPU's slab does; what a CPU
//! gives the central lists comes back to it first; a class whose use ended does not keep its
//! current owned span. In the three rseq modes, each in a child process of its own (the mode is
//! chosen once per process).

mod common;

use rseqmalloc::RseqMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const CHILD: &str = "RSEQMALLOC_PERCPU_BOUND_CHILD";

/// Held by the tests whose children need two threads running at once on two CPUs, and by the
/// one with 64 threads: run beside each other on a small machine, one preempted the other's
/// spinning threads, whose slabs then changed under them (four failures in twelve runs of this
/// file, session 50).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`ONE_AT_A_TIME`] (also after another test failed holding it).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn sixty_four_threads_touch_at_most_one_slab_per_cpu() {
    let _alone = one_at_a_time();
    common::run_in_modes("child_sixty_four_threads", CHILD, "");
}

#[test]
#[ignore = "run as a child"]
fn child_sixty_four_threads() {
    if !common::in_child(CHILD) {
        return;
    }
    const THREADS: usize = 64;
    const PER_THREAD: usize = 20_000;
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let barrier = &barrier;
            s.spawn(move || {
                let mut live = Vec::with_capacity(PER_THREAD);
                for i in 0..PER_THREAD {
                    let l = Layout::from_size_align(16 + (i * 7 + t) % 1000, 8).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { GLOBAL.alloc(l) };
                    assert!(!p.is_null());
                    live.push((p, l));
                }
                barrier.wait(); // all 64 working sets are live at once
                for (p, l) in live {
                    // SAFETY: allocated above with `l`.
                    unsafe { GLOBAL.dealloc(p, l) };
                }
            });
        }
    });
    let s = rseqmalloc::stats();
    let budget = rseqmalloc::options().cpu_cache_bytes as usize;
    let cached: usize = s.cpu_cache_bytes.iter().sum();
    // One slab per possible CPU id, however many threads ran.
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let max_id: usize = possible
        .trim()
        .split([',', '-'])
        .map(|n| n.parse::<usize>().unwrap())
        .max()
        .unwrap();
    assert_eq!(s.slabs, max_id + 1);
    assert!(
        s.slabs_in_use <= s.slabs,
        "{} slabs touched, {} exist",
        s.slabs_in_use,
        s.slabs
    );
    assert!(s.slabs_in_use < THREADS);
    // No thread here fills a stack and comes back to find it empty, so no class enters the
    // burst tier, and what the caches hold is bounded by slabs × budget, far below what the
    // threads freed.
    assert_eq!(s.burst_growths, 0);
    let freed_by_threads = THREADS * PER_THREAD * 16;
    assert!(
        cached <= s.slabs_in_use * budget,
        "cached {cached} > {} slabs × {budget}",
        s.slabs_in_use
    );
    assert!(
        cached * 4 < freed_by_threads,
        "cached {cached} is not small next to {freed_by_threads}"
    );
    println!(
        "threads {THREADS}, slabs {} (in use {}), cached {cached} bytes, mm_cid {}",
        s.slabs, s.slabs_in_use, s.uses_mm_cid
    );
}

/// A burst past the per-CPU cache is handed out in address order: a program that allocates
/// many objects and walks them in allocation order walks memory forwards, as the hardware
/// prefetcher expects. Before, each refill's batch came out highest address first, so such a
/// walk went backwards in runs of a batch, and a burst of 100,000 objects of 256 B took about
/// 1.25x as long to allocate, write, read and free (docs/benchmarks.md, "Session 32"). In the
/// three modes; 48 B objects, a class nothing else here uses in bulk.
#[test]
fn a_burst_is_handed_out_in_address_order() {
    let _alone = one_at_a_time();
    for (mode, out) in common::run_in_modes("child_burst_in_address_order", CHILD, "") {
        let line = out.lines().find(|l| l.starts_with("forwards"));
        eprintln!("[{mode}] {}", line.unwrap_or("(none)"));
        assert!(out.contains("RESULT ok"), "[{mode}] {out}");
    }
}

#[test]
#[ignore = "run as a child"]
fn child_burst_in_address_order() {
    if !common::in_child(CHILD) {
        return;
    }
    const N: usize = 10_000;
    let l = Layout::from_size_align(48, 8).unwrap();
    let live = alloc_blocks(l, N);
    let forwards = live
        .windows(2)
        .filter(|w| w[1] > w[0] && w[1] - w[0] < 4096)
        .count();
    println!("forwards {forwards} of {} steps", N - 1);
    for p in live {
        // SAFETY: allocated above with `l`.
        unsafe { GLOBAL.dealloc(p as *mut u8, l) };
    }
    assert!(
        forwards * 10 >= (N - 1) * 9,
        "{forwards} of {} steps went forwards",
        N - 1
    );
    println!("RESULT ok");
}

/// Owned spans (the C classes of 257-960 B, `owned_spans=on`) whose objects another CPU
/// freed go back once their owner runs a slow path: a program that allocates 32 MiB of
/// 400 B blocks on one CPU and frees them all on the other keeps that memory only until the
/// first CPU next leaves its fast path, whatever class it then allocates. Before, those
/// spans stayed with the slab that took them while it stayed busy (20 MiB in a C program,
/// docs/benchmarks.md, "Session 49"): its own frees onto a span's list see the span go
/// wholly free, frees from elsewhere did not. In the three modes (fallback mode's frees go onto
/// their span's list under the owner's lock, and a span so emptied goes back at once).
#[test]
fn owned_spans_freed_on_another_cpu_go_back_at_the_owners_next_slow_path() {
    owned_freed_elsewhere("child_owned_freed_elsewhere");
}

/// The same when the owner stays busy on its fast paths alone (it pops and pushes one object
/// of its current owned span each maintenance tick, so its slab never looks idle, and never
/// runs a slow path): a tick drains its slab once the hint has stood a whole tick
/// (`maintenance::drain_idle`), so the memory goes back within a few ticks (10 ms each with
/// `decay_ms=40`, set once the frees are done, so that no tick drains before they are
/// counted) all the same.
#[test]
fn owned_spans_freed_on_another_cpu_go_back_within_ticks_while_the_owner_stays_busy() {
    owned_freed_elsewhere("child_owned_freed_elsewhere_busy");
}

/// Runs `child` in the three modes and checks that it passed.
fn owned_freed_elsewhere(child: &str) {
    let _alone = one_at_a_time();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs two CPUs to free on one what the other allocated");
        return;
    }
    for (mode, out) in common::run_in_modes(child, CHILD, "") {
        let line = out.lines().find(|l| l.starts_with("retained"));
        eprintln!("[{mode}] {}", line.unwrap_or("(none)"));
        assert!(out.contains("RESULT ok"), "[{mode}] {out}");
    }
}

#[test]
#[ignore = "run as a child"]
fn child_owned_freed_elsewhere() {
    if common::in_child(CHILD) {
        freed_elsewhere(false);
    }
}

#[test]
#[ignore = "run as a child"]
fn child_owned_freed_elsewhere_busy() {
    if common::in_child(CHILD) {
        freed_elsewhere(true);
    }
}

/// What a CPU's cache gives the central lists comes back to that CPU first (one transfer stack
/// shard per slab, `central::set_shards`): thread A, on one CPU, and thread B, on another,
/// each allocate 200 blocks of 48 B (Rust's `alloc`, which the stacks serve in every mode);
/// A frees its blocks and empties its caches into the central lists (`flush`), then B does
/// the same; then A allocates 200 blocks again and gets what it gave up, none of B's (its own
/// blocks, and those its refills had cached beside them, at most a refill's batch of 32). Each
/// thread spins while the other works (both run, so they hold different slabs). With one
/// transfer stack per class, A got B's blocks, the last pushed (200 of 200, checked before the
/// change).
#[test]
fn a_cpu_takes_back_first_what_it_gave_the_central_lists() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs two CPUs, one slab each");
        return;
    }
    run_with_retries("child_own_objects_back", "taken back");
}

/// Runs `child` in each of the three modes until it prints `RESULT ok`, at most five times a
/// mode, printing its lines that start with `line` or `skipped`. A child that saw its premise
/// fail at one of the points it checks (its two threads on one slab, or on one transfer stack
/// shard; a thread's slab changed; a maintenance tick in its window) proves nothing and
/// prints `RETRY` instead: the kernel can give a thread that is not running (preempted on a
/// busy machine, though it spins) another's concurrency id (seen once in CI, session 50). Any
/// other outcome fails at once.
fn run_with_retries(child: &str, line: &str) {
    let _alone = one_at_a_time();
    for &(mode, rseq, tunables) in common::MODES.iter() {
        let mut ok = false;
        for _ in 0..5 {
            let out = common::run_child_test(
                child,
                &[
                    (CHILD, "1"),
                    ("RSEQMALLOC_OPTIONS", rseq),
                    ("GLIBC_TUNABLES", tunables),
                ],
            );
            common::assert_ran_in(child, mode, &out);
            for l in out.lines().filter(|l| {
                l.starts_with(line) || l.starts_with("skipped") || l.starts_with("RETRY")
            }) {
                eprintln!("[{mode}] {l}");
            }
            if out.contains("RESULT ok") {
                ok = true;
                break;
            }
            assert!(out.contains("RETRY"), "[{mode}] {out}");
        }
        assert!(ok, "[{mode}] the premise failed in five runs");
    }
}

/// A class whose use ended does not keep its current owned span (the C classes of 257-960 B):
/// the slab's refills for other classes set the span aside once they have seen it wholly
/// free and unused twice, and a class that needs spans then turns it over. Before, such a span
/// stayed its class's current one, its objects cached for a class nobody allocated, until the
/// class ran again or the slab drained (a span of each class `mixed-bursts`' band had passed:
/// docs/design.md, "Idle current spans"). One thread on one CPU frees 100 blocks of 400 B (all
/// of them on its current span's list), then allocates and frees bursts of five other classes
/// in turn, whose first bursts turn kept spans over; at the end the 400 B class caches less
/// than half of what it cached after its frees (with the span kept current, 106 of 125
/// stayed). In
/// the three modes.
#[test]
fn a_class_whose_use_ended_does_not_keep_its_current_span() {
    run_with_retries("child_idle_class", "class");
}

#[test]
#[ignore = "run as a child"]
fn child_idle_class() {
    if !common::in_child(CHILD) {
        return;
    }
    const IDLE: usize = 400;
    common::pin_to(allowed_cpus()[0]);
    let s = rseqmalloc::stats();
    let k = (1..s.class_size.len())
        .find(|&k| s.class_size[k] >= IDLE)
        .unwrap();
    let (ticks, reclassed) = (s.maintenance_ticks, s.owned_spans_reclassed);
    for p in malloc_blocks(100 * IDLE, IDLE) {
        // SAFETY: allocated just now, freed once.
        unsafe { rseqmalloc::free(p as *mut u8) };
    }
    let cached = rseqmalloc::stats().class_cached[k];
    // Other classes' bursts, as a program whose sizes moved on: each burst's refills look at
    // one class's current span apiece, going round the owned classes several times, and the
    // first bursts of the classes turn kept spans over. By the twentieth round each class's
    // bursts reuse its own spans (one span was still taken after the tenth in every run), so a
    // span taken in rounds 20-59 means a drain took the spans back (which empties the 400 B
    // class's too: no proof). A drain in the first rounds goes unseen (the stats count none;
    // such drains, a slab out of slots, are rare).
    let mut taken = 0;
    for round in 0..60 {
        if round == 20 {
            taken = rseqmalloc::stats().owned_spans_taken;
        }
        let size = [304, 496, 592, 704, 800][round % 5];
        for p in malloc_blocks(100 * size, size) {
            // SAFETY: as above.
            unsafe { rseqmalloc::free(p as *mut u8) };
        }
    }
    let s = rseqmalloc::stats();
    let later_taken = s.owned_spans_taken - taken;
    if s.maintenance_ticks != ticks {
        println!("RETRY: a maintenance tick came (it may drain)");
        return;
    }
    if later_taken != 0 {
        println!("RETRY: {later_taken} spans taken in the later rounds (a drain?)");
        return;
    }
    println!(
        "class {IDLE} B: {cached} objects cached after its frees, {} after the other \
         classes' bursts; {} spans turned over",
        s.class_cached[k],
        s.owned_spans_reclassed - reclassed
    );
    // What its frees and collects put on the span's list left with the span; the objects
    // of the class that stack refills cached (19 or 38 of the 125 here) stay on stacks.
    assert!(cached >= 100, "the frees went into the caches");
    assert!(
        s.class_cached[k] * 2 < cached,
        "the idle class still caches its span's objects"
    );
    assert!(
        s.owned_spans_reclassed > reclassed,
        "no kept span was turned over"
    );
    println!("RESULT ok");
}

/// The index of the slab whose cache grew by at least `bytes` between two snapshots of
/// `stats().cpu_cache_bytes`: the calling thread's, when it has just freed `bytes` of blocks
/// the stacks keep. Fails if none did (the frees did not stay in a reported slab's cache).
fn slab_that_grew(before: &[usize], after: &[usize], bytes: usize) -> usize {
    let grown = |i: usize| after[i].saturating_sub(before[i]);
    let i = (0..after.len()).max_by_key(|&i| grown(i)).unwrap();
    assert!(
        grown(i) >= bytes,
        "no slab's cache grew by the {bytes} bytes just freed (most: slab {i}, {})",
        grown(i)
    );
    i
}

/// The calling thread's slab now: frees 64 blocks of 96 B (a class these tests use for nothing
/// else) and finds the slab whose cache grew by them.
fn my_slab() -> usize {
    let l = Layout::from_size_align(96, 8).unwrap();
    let blocks = alloc_blocks(l, 64);
    let before = rseqmalloc::stats().cpu_cache_bytes;
    for &p in &blocks {
        // SAFETY: allocated just now with `l`, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, l) };
    }
    slab_that_grew(&before, &rseqmalloc::stats().cpu_cache_bytes, 64 * 96)
}

#[test]
#[ignore = "run as a child"]
fn child_own_objects_back() {
    if !common::in_child(CHILD) {
        return;
    }
    // What A gives up (N and what its refills cached, under 232) stays within its shard's half
    // of the class's limit (256 of 48 B), however many shards there are.
    const N: usize = 200;
    let l = Layout::from_size_align(48, 8).unwrap();
    // Two CPUs whose slabs fall on different shards where slabs are by CPU (with concurrency
    // ids, two threads running at once hold two small ids).
    let Some((a, b)) = cpus_on_two_shards() else {
        println!("skipped: no two CPUs whose slabs use different shards");
        println!("RESULT ok");
        return;
    };
    let ticks = rseqmalloc::stats().maintenance_ticks;
    // 0: A allocates; 1: B allocates; 2: A gives its blocks up; 3: B gives its blocks up;
    // 4: A allocates again; 5: done. The thread whose step it is not spins.
    let steps = Steps::new();
    let (mut mine, mut theirs, mut again) = (Vec::new(), Vec::new(), Vec::new());
    // The slabs A gave up on and took back on, and B's.
    let (mut ia, mut ia_again, mut ib) = (0, 0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = steps.guard();
            common::pin_to(a);
            mine = alloc_blocks(l, N);
            steps.set(1);
            steps.wait_for(2);
            // SAFETY: A's blocks, live, given up once.
            ia = unsafe { give_up(l, &mine) };
            steps.set(3);
            steps.wait_for(4);
            again = alloc_blocks(l, N);
            let before = rseqmalloc::stats().cpu_cache_bytes;
            for &p in &again {
                // SAFETY: allocated above with `l`, freed once.
                unsafe { GLOBAL.dealloc(p as *mut u8, l) };
            }
            ia_again = slab_that_grew(&before, &rseqmalloc::stats().cpu_cache_bytes, N * 48 / 2);
            steps.set(5);
        });
        s.spawn(|| {
            let _guard = steps.guard();
            common::pin_to(b);
            steps.wait_for(1);
            theirs = alloc_blocks(l, N);
            steps.set(2);
            steps.wait_for(3);
            // SAFETY: B's blocks, live, given up once.
            ib = unsafe { give_up(l, &theirs) };
            steps.set(4);
            steps.wait_for(5);
        });
    });
    let shards = rseqmalloc::stats().slabs.clamp(1, 8);
    if ia % shards == ib % shards
        || ia != ia_again
        || rseqmalloc::stats().maintenance_ticks != ticks
    {
        println!("RETRY: A on slabs {ia} and {ia_again}, B on slab {ib}, or a tick came");
        return;
    }
    let own = again.iter().filter(|p| mine.contains(p)).count();
    let other = again.iter().filter(|p| theirs.contains(p)).count();
    println!("taken back: {own} of {N} blocks the thread gave up, {other} of the other CPU's");
    assert_eq!(other, 0, "blocks the other CPU gave up");
    // The rest are what A's refills had cached beside its blocks and gave up with them: at
    // most one refill's batch (32 objects at most, `size_class::CLASS_BATCH`).
    assert!(own + 32 >= N, "{own} blocks the thread gave up");
    println!("RESULT ok");
}

/// `n` blocks of layout `l` from Rust's `alloc`, as addresses.
fn alloc_blocks(l: Layout, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            // SAFETY: non-zero size.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            p as usize
        })
        .collect()
}

/// Frees `blocks` (each allocated with layout `l`) and empties the calling thread's caches
/// into the central lists (`flush`); returns the index of the slab the frees went to, checked
/// to have kept at least half of them and to have given them up.
///
/// # Safety
/// Each of `blocks` is a live block allocated with `l`, freed here once.
unsafe fn give_up(l: Layout, blocks: &[usize]) -> usize {
    let before = rseqmalloc::stats().cpu_cache_bytes;
    for &p in blocks {
        // SAFETY: the caller's contract.
        unsafe { GLOBAL.dealloc(p as *mut u8, l) };
    }
    let freed = rseqmalloc::stats().cpu_cache_bytes;
    let kept = blocks.len() * l.size() / 2;
    let slab = slab_that_grew(&before, &freed, kept);
    rseqmalloc::ctl(b"flush", &mut [0; 64]).expect("flush");
    let flushed = rseqmalloc::stats().cpu_cache_bytes[slab];
    assert!(
        flushed + kept <= freed[slab],
        "flush left slab {slab} with {flushed} of {} bytes",
        freed[slab]
    );
    slab
}

/// A slab whose spans frees from elsewhere left half free is not drained for another slab's
/// owned refill that its own spans serve (the first build drained before every owned refill
/// while the hint stood: fixed in session 49, 2c9307b; that a refill which would take a fresh
/// span drains it is `memory_freed_on_another_cpu_is_reused_there_while_its_owner_stays`).
/// Thread A, on one CPU, allocates 8 MiB of 400 B blocks (owned spans in the rseq modes) and
/// caches 64 KB of 64 B blocks it freed; thread B, on another CPU, holds 64 blocks of 320 B
/// (its current span of that class, carved in part), frees 7 in 8 of A's blocks (which leaves
/// A's spans half free), and allocates 120 more of 320 B, refills its own span serves: A's
/// cache keeps what it held. Each thread spins while the other works; the child checks their
/// slabs at the points that matter and retries a run where they changed.
#[test]
fn a_half_free_owner_is_not_drained_for_a_refill_its_own_span_serves() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs two CPUs, one slab each");
        return;
    }
    run_with_retries("child_drain_only_when_fresh", "retained");
}

#[test]
#[ignore = "run as a child"]
fn child_drain_only_when_fresh() {
    if !common::in_child(CHILD) {
        return;
    }
    const SIZE: usize = 400;
    // B's own class: owned, other than A's, and not a size Rust's `Vec` buffers here take (a
    // freed one would go onto B's stack of the class, which `malloc` pops first). Its 64 KiB
    // spans hold 204 blocks: the 184 B allocates stay within B's first (its first 64 collect
    // 114, the next 120 take two refills more).
    const OWN: usize = 320;
    const CACHED: usize = 64 << 10;
    let (a, b) = two_cpus();
    let ticks = rseqmalloc::stats().maintenance_ticks;
    // 0: A allocates and caches; 1: B's frees and allocations (A spins); 2: A finds its slab
    // again (B spins); 3: done.
    let steps = Steps::new();
    // A's blocks and its slab's index.
    let handed = std::sync::Mutex::new((Vec::new(), 0));
    let (mut held, mut owned) = (0, false);
    let mut after_own = 0;
    // A's slab after its allocation (the owner of its spans) and at the end; B's before and
    // after its refills.
    let (mut ia_first, mut ia_end, mut ib) = (0, 0, [0; 2]);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = steps.guard();
            common::pin_to(a);
            let mine = malloc_blocks(8 << 20, SIZE);
            ia_first = my_slab();
            owned = rseqmalloc::stats().owned_spans_taken > 0;
            let before = rseqmalloc::stats().cpu_cache_bytes;
            for p in malloc_blocks(CACHED, 64) {
                // SAFETY: allocated by `malloc` just now, freed once.
                unsafe { rseqmalloc::free(p as *mut u8) };
            }
            let after = rseqmalloc::stats().cpu_cache_bytes;
            // A's slab: the one whose cache grew by what A freed.
            let ia = slab_that_grew(&before, &after, CACHED / 2);
            held = after[ia];
            *handed.lock().unwrap() = (mine, ia);
            steps.set(1);
            steps.wait_for(2);
            ia_end = my_slab();
            steps.set(3);
        });
        s.spawn(|| {
            let _guard = steps.guard();
            common::pin_to(b);
            steps.wait_for(1);
            ib[0] = my_slab();
            let mut mine = malloc_blocks(64 * OWN, OWN);
            let (theirs, ia) = {
                let mut g = handed.lock().unwrap();
                (std::mem::take(&mut g.0), g.1)
            };
            // One block of A's class first: B's frees of that class then stay on B's CPU
            // (owner return keeps the class a thread allocates), and past its cache they go back
            // to A's spans through the central lists, which leaves them half free.
            let mut kept = malloc_blocks(SIZE, SIZE);
            for (i, p) in theirs.into_iter().enumerate() {
                if i % 8 == 0 {
                    kept.push(p);
                } else {
                    // SAFETY: allocated by `malloc` in A, freed once.
                    unsafe { rseqmalloc::free(p as *mut u8) };
                }
            }
            mine.extend(malloc_blocks(120 * OWN, OWN));
            after_own = rseqmalloc::stats().cpu_cache_bytes[ia];
            ib[1] = my_slab();
            for p in mine.into_iter().chain(kept) {
                // SAFETY: each block is live and freed once.
                unsafe { rseqmalloc::free(p as *mut u8) };
            }
            steps.set(2);
            steps.wait_for(3);
        });
    });
    let ia = handed.lock().unwrap().1;
    println!("retained: A's cache {held} bytes, {after_own} after B's refills from its own span");
    // The threads shared a slab, one changed slabs, or a tick came (an idle drain of A).
    if ib.contains(&ia)
        || ia_first != ia
        || ib[1] != ib[0]
        || ia_end != ia
        || after_own > held + CACHED
        || rseqmalloc::stats().maintenance_ticks != ticks
    {
        println!("RETRY: A on slabs {ia_first}, {ia} and {ia_end}, B on {ib:?}, or a tick came");
        return;
    }
    assert!(held >= CACHED, "A's cache holds {held} bytes");
    // A drain empties A's caches; anything else leaves them about as they were.
    assert!(
        after_own * 2 >= held,
        "A was drained for a refill B's own span served: {held} -> {after_own} bytes"
    );
    // Owned spans served A's blocks (as in `freed_elsewhere`): the sparse hint names A.
    assert!(owned, "owned spans in effect");
    println!("RESULT ok");
}

/// The steps of a test's threads, taken in turn: [`Steps::wait_for`] spins until a step is
/// reached, and fails once another thread panicked (its [`Steps::guard`] says so).
struct Steps {
    step: AtomicUsize,
    failed: AtomicBool,
}

impl Steps {
    fn new() -> Self {
        Steps {
            step: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
        }
    }

    /// Spins until step `k` (or a later one) is reached.
    fn wait_for(&self, k: usize) {
        while !self.reached(k) {
            std::hint::spin_loop();
        }
    }

    /// Whether step `k` (or a later one) is reached; panics once another thread failed.
    fn reached(&self, k: usize) -> bool {
        assert!(
            !self.failed.load(Ordering::Acquire),
            "another thread failed"
        );
        self.step.load(Ordering::Acquire) >= k
    }

    /// Moves on to step `k`.
    fn set(&self, k: usize) {
        self.step.store(k, Ordering::Release);
    }

    /// Marks the steps failed if the calling thread panics while the guard lives.
    fn guard(&self) -> StepsGuard<'_> {
        StepsGuard(&self.failed)
    }
}

/// See [`Steps::guard`].
struct StepsGuard<'a>(&'a AtomicBool);

impl Drop for StepsGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// `bytes / size` blocks of `size` bytes from `malloc`, block `i` filled with the byte `i`.
fn malloc_blocks(bytes: usize, size: usize) -> Vec<usize> {
    (0..bytes / size)
        .map(|i| {
            let p = rseqmalloc::malloc(size);
            assert!(!p.is_null());
            // SAFETY: `p` holds `size` bytes.
            unsafe { p.write_bytes(i as u8, size) };
            p as usize
        })
        .collect()
}

/// The first two CPUs the calling thread may run on.
fn two_cpus() -> (usize, usize) {
    let cpus = allowed_cpus();
    (cpus[0], cpus[1])
}

/// Two CPUs the calling thread may run on whose slabs, where slabs are by CPU, use different
/// transfer stack shards (a slab's shard is its index modulo the slab count, at most 8), if
/// there are two.
fn cpus_on_two_shards() -> Option<(usize, usize)> {
    let shards = rseqmalloc::stats().slabs.clamp(1, 8);
    let cpus = allowed_cpus();
    let a = cpus[0];
    cpus.iter()
        .find(|&&b| !(b - a).is_multiple_of(shards))
        .map(|&b| (a, b))
}

/// The CPUs the calling thread may run on, in order, below `rseqmalloc::MAX_REPORTED_CPUS`
/// (where slabs are by CPU, `stats` reports only those slabs' caches).
fn allowed_cpus() -> Vec<usize> {
    common::allowed_cpus()
        .into_iter()
        .filter(|&c| c < rseqmalloc::MAX_REPORTED_CPUS)
        .collect()
}

/// Bytes in spans and caches that no object the program holds uses: `active - allocated`.
fn retained() -> usize {
    let s = rseqmalloc::stats();
    s.active.saturating_sub(s.allocated)
}

/// Thread A, on one CPU, allocates 32 MiB of 400 B blocks through `malloc` (owned spans in the
/// rseq modes) and frees the last 8 itself (onto its current span's list); thread B, on
/// another CPU, frees the rest, while A spins (both run, so they hold different slabs), and
/// empties its own caches (`flush`). Then A either runs a slow path (1 MiB of 4000 B blocks,
/// more than its stack of that class may hold) or, `busy`, pops and pushes one object of its
/// current span each tick while this thread makes the ticks come (a large block each
/// millisecond), up to 40 ticks or until the memory went back. Asserts that the frees were
/// foreign and the memory stayed after them (rseq modes with owned spans), and that little
/// stays at the end.
fn freed_elsewhere(busy: bool) {
    const BYTES: usize = 32 << 20;
    const SIZE: usize = 400;
    const OWN: usize = 8;
    let (a, b) = two_cpus();
    // 0: A allocates; 1: B frees (A spins); 2: A's slow path, or A busy while ticks come;
    // 3: done.
    let steps = Steps::new();
    let blocks = std::sync::Mutex::new(Vec::new());
    let (mut before, mut foreign, mut after) = (0, 0, 0);
    let budget = rseqmalloc::options().cpu_cache_bytes as usize;
    let mut owned = false;
    // What may stay: the owner's kept spans (4 × `cpu_cache_bytes`), the two slabs' stacks
    // (up to twice the budget each with the burst tier), the transfer stacks' shared budget
    // and the current spans: within 9 × the budget, 4.5 MiB by default, 32 MiB freed.
    let bound = 9 * budget;
    std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = steps.guard();
            common::pin_to(a);
            let mut mine = malloc_blocks(BYTES, SIZE);
            owned = rseqmalloc::stats().owned_spans_taken > 0;
            for p in mine.split_off(mine.len() - OWN) {
                // SAFETY: allocated by `malloc` above, freed once.
                unsafe { rseqmalloc::free(p as *mut u8) };
            }
            *blocks.lock().unwrap() = mine;
            steps.set(1);
            steps.wait_for(2);
            if busy {
                let (mut seen, mut held) = (rseqmalloc::stats().maintenance_ticks, None);
                while !steps.reached(3) {
                    let now = rseqmalloc::stats().maintenance_ticks;
                    if now != seen {
                        seen = now;
                        match held.take() {
                            // SAFETY: allocated below, freed once.
                            Some(p) => unsafe { rseqmalloc::free(p) },
                            None => held = Some(rseqmalloc::malloc(SIZE)),
                        }
                    }
                    std::hint::spin_loop();
                }
                if let Some(p) = held {
                    // SAFETY: allocated above, freed once.
                    unsafe { rseqmalloc::free(p) };
                }
            } else {
                let big: Vec<*mut u8> = (0..256).map(|_| rseqmalloc::malloc(4000)).collect();
                for p in big {
                    assert!(!p.is_null());
                    // SAFETY: allocated just above.
                    unsafe { rseqmalloc::free(p) };
                }
                steps.set(3);
            }
        });
        s.spawn(|| {
            let _guard = steps.guard();
            common::pin_to(b);
            steps.wait_for(1);
            let sent = |s: rseqmalloc::Stats| s.sent_home + s.sent_home_declined;
            let sent_before = sent(rseqmalloc::stats());
            for p in std::mem::take(&mut *blocks.lock().unwrap()) {
                // SAFETY: allocated by `malloc` above, freed once.
                unsafe { rseqmalloc::free(p as *mut u8) };
            }
            foreign = sent(rseqmalloc::stats()) - sent_before;
            // This CPU's caches to the central lists: what is left is the owner's to give.
            rseqmalloc::ctl(b"flush", &mut [0; 64]).unwrap();
            before = retained();
            steps.set(2);
            if busy {
                // The ticks, from this thread (the main thread only joins: a third thread
                // spinning on two CPUs would move A or B between slabs).
                rseqmalloc::ctl(b"decay_ms=40", &mut [0; 64]).unwrap();
                let start = rseqmalloc::stats().maintenance_ticks;
                while retained() > bound && rseqmalloc::stats().maintenance_ticks < start + 40 {
                    assert!(!steps.reached(3), "the owner stopped first");
                    // A large block: its path runs the tick when one is due.
                    let p = rseqmalloc::malloc(1 << 20);
                    assert!(!p.is_null());
                    // SAFETY: allocated just above.
                    unsafe { rseqmalloc::free(p) };
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                after = retained();
                steps.set(3);
            }
        });
    });
    if !busy {
        after = retained();
    }
    println!(
        "retained {before} bytes after the frees, {after} at the end; {foreign} frees foreign"
    );
    // Owned spans serve the blocks in every mode (this machine has the rseq membarrier;
    // fallback mode's run under the slabs' locks since session 76). In the rseq modes the frees
    // were then another slab's (owner return saw them) and the spans stayed owned; fallback
    // mode's went the way its declined pushes go (the stack, then the central lists, whose
    // hint has the owner's next slow path give a span so emptied back).
    assert!(owned, "owned spans in effect");
    if owned && rseqmalloc::rseq_mode() != rseqmalloc::RseqMode::Fallback {
        assert!(
            foreign * 2 >= BYTES / SIZE,
            "only {foreign} frees were foreign"
        );
        assert!(
            before >= BYTES / 2,
            "only {before} bytes stayed after the frees"
        );
    }
    assert!(
        after <= bound,
        "{after} bytes retained at the end, budget {budget}"
    );
    println!("RESULT ok");
}

/// One thread that allocates 32 MiB of 500 B blocks through `malloc` on one CPU, moves to
/// another, frees them all there and allocates as much again, round after round: `active`,
/// looked at after every MiB of the second allocations, stays within 1.25x what the first
/// allocation left, in the three modes.
/// - Fallback mode: slabs are by CPU, and the old slab kept the spans the frees elsewhere left
///   wholly free, their sweep waiting for a slow path on it, while the new one took fresh
///   spans: 2x the peak RSS by the fourth round (a breaker run, session 76; the refill now
///   sweeps other slabs first).
/// - The rseq modes: a thread whose concurrency id changed with the move (in 16 of 24 runs
///   here) left its old slab's spans half free there, and the new slab took fresh spans past
///   the first drain of such slabs in the maintenance tick: 2.02-2.05x its first round's
///   (session 77; such drains now also come every few megabytes of fresh spans).
#[test]
fn a_thread_that_moves_reuses_what_it_freed() {
    owned_freed_elsewhere("child_moving_thread");
}

#[test]
#[ignore = "run as a child"]
fn child_moving_thread() {
    if !common::in_child(CHILD) {
        return;
    }
    const BYTES: usize = 32 << 20;
    const SIZE: usize = 500;
    let (a, b) = two_cpus();
    let mut first = 0;
    let mut peak = 0;
    for round in 0..6 {
        common::pin_to(a);
        let mine = malloc_blocks(BYTES, SIZE);
        if round == 0 {
            first = rseqmalloc::stats().active;
        }
        common::pin_to(b);
        for p in mine {
            // SAFETY: allocated by `malloc` above, freed once.
            unsafe { rseqmalloc::free(p as *mut u8) };
        }
        // Looked at every MiB: what the old slab keeps and what the new one takes fresh meanwhile
        // add up before the end of the allocation, where a drain may already have come.
        let mut again = Vec::with_capacity(BYTES / SIZE);
        for _ in 0..BYTES >> 20 {
            again.extend(malloc_blocks(1 << 20, SIZE));
            peak = peak.max(rseqmalloc::stats().active);
        }
        for p in again {
            // SAFETY: as above.
            unsafe { rseqmalloc::free(p as *mut u8) };
        }
    }
    println!("retained: active {first} bytes after the first allocation, at most {peak} later");
    assert!(
        peak * 4 <= first * 5,
        "active grew from {first} to {peak} bytes"
    );
    println!("RESULT ok");
}

/// A thread that frees most of what a thread on another CPU allocated, and allocates as much
/// again, reuses the freed memory while the other thread keeps its CPU's slab: 32 MiB of
/// 400 B blocks (owned spans in the rseq modes), seven in eight freed and allocated again,
/// leave `active` within 1.25x what it was after the first allocation. Before, the owned spans
/// the first slab took stayed its own while partly used and the second took fresh ones: 1.8x
/// (`benches/c/reuse_elsewhere.c`: 23 MB resident, then 41; docs/benchmarks.md, "Session
/// 49"). In the three modes.
#[test]
fn memory_freed_on_another_cpu_is_reused_there_while_its_owner_stays() {
    owned_freed_elsewhere("child_reuse_elsewhere");
}

#[test]
#[ignore = "run as a child"]
fn child_reuse_elsewhere() {
    if !common::in_child(CHILD) {
        return;
    }
    const BYTES: usize = 32 << 20;
    const SIZE: usize = 400;
    const KEEP: usize = 8;
    let (a, b) = two_cpus();
    // 0: A allocates; 1: B frees and allocates (A spins, keeping its slab); 2: done.
    let steps = Steps::new();
    let blocks = std::sync::Mutex::new(Vec::new());
    let (mut first, mut end, mut owned) = (0, 0, false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = steps.guard();
            common::pin_to(a);
            let mine = malloc_blocks(BYTES, SIZE);
            *blocks.lock().unwrap() = mine;
            let s = rseqmalloc::stats();
            (first, owned) = (s.active, s.owned_spans_taken > 0);
            steps.set(1);
            steps.wait_for(2);
        });
        s.spawn(|| {
            let _guard = steps.guard();
            common::pin_to(b);
            steps.wait_for(1);
            let mut mine = std::mem::take(&mut *blocks.lock().unwrap());
            for (i, p) in mine.iter_mut().enumerate() {
                if i % KEEP != 0 {
                    // SAFETY: allocated by `malloc` in A, freed once.
                    unsafe { rseqmalloc::free(*p as *mut u8) };
                    *p = 0;
                }
            }
            for (i, p) in mine.iter_mut().enumerate() {
                if *p == 0 {
                    let q = rseqmalloc::malloc(SIZE);
                    assert!(!q.is_null());
                    // SAFETY: `q` holds SIZE bytes.
                    unsafe { q.write_bytes(i as u8, SIZE) };
                    *p = q as usize;
                }
            }
            end = rseqmalloc::stats().active;
            for p in mine {
                // SAFETY: each block is live and freed once.
                unsafe { rseqmalloc::free(p as *mut u8) };
            }
            steps.set(2);
        });
    });
    println!("retained: active {first} bytes after the first allocation, {end} after the second");
    // Owned spans served A's blocks (as in `freed_elsewhere`).
    assert!(owned, "owned spans in effect");
    assert!(
        end * 4 <= first * 5,
        "active grew from {first} to {end} bytes"
    );
    println!("RESULT ok");
}
