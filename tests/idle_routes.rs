//! Small classes routed to owned spans once idle (docs/design.md, "Small classes routed once
//! idle"), in all three rseq modes.
//!
//! Each mode runs in a child process of this test binary (the mode is chosen once per process):
//! two threads, each pinned to a CPU of its own where there are two, run the runner's
//! `mixed-bursts` loop through the C API — bursts of objects whose sizes lie in a 128-byte band
//! that moves 40 bytes a round over 16-1016 B, so each small class is used for a few rounds and
//! then left for about twenty — and hand half of every burst to the other thread, which checks
//! and frees it. Every object carries a unique id in its first word and the id's complement in
//! its last, written at allocation and checked before the free, so an object handed out twice
//! (or a routed class's list corrupted by a declined push) is caught.
//!
//! With the critical sections (glibc's area, our own registration) the threads' slow paths see
//! the small classes' stacks idle while the band is elsewhere and route those classes: their
//! later bursts come from owned spans, and the other thread's frees of their objects are
//! declined by the owned push and go home or onto a stack. The forced fallback routes nothing
//! (its owned spans serve the fixed classes alone); neither does `owned_spans=off`.
//!
//! Then the program changes its ways: each thread churns a ring of objects of 24-256 B (frees a
//! random one, allocates another in its place) and the two threads swap rings after every step,
//! so that most frees are of the other thread's objects, as in `larson`. A routed class's owned
//! pushes now decline most frees, and the threads stop routing such classes (before session 64
//! a routed class stayed routed, and a churn like this one in `benches/c/route_phases.c` took
//! 1.2-1.4x the time: docs/benchmarks.md, "Session 64").
//!
//! A second child runs `mixed-bursts`' loop itself (bursts of 1,000-3,999 objects) on two
//! threads pinned apart, each freeing its own objects: they route classes and unroute none,
//! though their owned pushes decline objects carved before the route.

mod common;

use common::num;

use std::collections::HashMap;
use std::sync::mpsc;

/// Rounds per thread.
const ROUNDS: usize = 3_000;
/// The classes a thread can route once idle: those of 32-256 B (`owned::MIN_CLASS` up to
/// `owned::FIXED_MIN`).
const SMALL_CLASSES: u64 = 19;
/// A burst holds `BURST_MIN` to `BURST_MIN + BURST_SPREAD - 1` objects.
const BURST_MIN: usize = 200;
const BURST_SPREAD: usize = 400;
/// The child whose threads free their own bursts: rounds, and its bursts' lengths (those of
/// the runner's `mixed-bursts`).
const ALONE_ROUNDS: usize = 600;
const ALONE_BURSTS: (usize, usize) = (1_000, 3_000);
/// The churn: objects in a ring, steps, and replacements a step (a thread's).
const SLOTS: usize = 2_000;
const STEPS: usize = 40;
const STEP_OPS: usize = 20_000;

/// An object through the C API, as `stamped` made it: address, size, id.
type Obj = (usize, usize, u64);

/// One xorshift step of `*state` (never 0).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A new object of `size` bytes (a multiple of 8, at least 16) through the C API, with `id` in
/// its first word and `!id` in its last. Its first word must read 0: a C allocation clears it,
/// so that no object that was on an owned span's list hands its encoded link (and with it the
/// free tag's key) to the program.
fn stamped(size: usize, id: u64) -> usize {
    let p = rseqmalloc::malloc(size) as *mut u64;
    assert!(!p.is_null(), "malloc({size}) failed");
    // SAFETY: `p` holds `size` bytes, 8-aligned.
    unsafe {
        assert_eq!(p.read(), 0, "malloc({size}) = {p:?} kept a first word");
        p.write(id);
        p.add(size / 8 - 1).write(!id);
    }
    p as usize
}

/// Checks the stamps `stamped` wrote and frees the object through the C API.
fn check_free((p, size, id): (usize, usize, u64)) {
    let o = p as *mut u64;
    // SAFETY: a live object of `size` bytes from `stamped`, which nobody else uses.
    unsafe {
        assert_eq!(o.read(), id, "object {p:#x} lost its id");
        assert_eq!(
            o.add(size / 8 - 1).read(),
            !id,
            "object {p:#x} lost its last word"
        );
        rseqmalloc::free(o as *mut u8);
    }
}

/// Thread `t`'s rounds: each burst's even objects go to the other thread (`give`), which frees
/// them; its odd ones, and what the other thread gave it, it frees itself, forwards or
/// backwards by round.
fn worker(t: usize, give: mpsc::Sender<Vec<Obj>>, take: mpsc::Receiver<Vec<Obj>>) {
    pin(t);
    let mut state = 12345 + 7777 * t as u64;
    let mut id = (t as u64) << 48;
    for r in 0..ROUNDS {
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for (i, o) in burst(&mut state, &mut id, r, (BURST_MIN, BURST_SPREAD))
            .into_iter()
            .enumerate()
        {
            if i % 2 == 0 {
                theirs.push(o);
            } else {
                mine.push(o);
            }
        }
        give.send(theirs).unwrap();
        if r % 2 == 1 {
            mine.reverse();
        }
        mine.into_iter().for_each(check_free);
        take.recv().unwrap().into_iter().for_each(check_free);
    }
    churn(&mut state, &mut id, &give, &take);
}

/// Round `r`'s burst of a thread: `min` to `min + spread - 1` new objects of its band of sizes.
fn burst(state: &mut u64, id: &mut u64, r: usize, (min, spread): (usize, usize)) -> Vec<Obj> {
    let n = min + next(state) as usize % spread;
    let start = 16 + (r * 40) % 881;
    (0..n)
        .map(|_| {
            let size = (start + next(state) as usize % 128) & !7;
            *id += 1;
            (stamped(size, *id), size, *id)
        })
        .collect()
}

/// Pins the calling thread to the `t`-th CPU the process may run on (modulo their number), so
/// that two threads with different `t` run on different CPUs where there are two.
fn pin(t: usize) {
    let cpus = common::allowed_cpus();
    common::pin_to(cpus[t % cpus.len()]);
}

/// The churn after the bursts: a ring of `SLOTS` objects of 24-256 B, `STEP_OPS` random
/// replacements a step, and the ring handed to the other thread (and its ring taken) after
/// every step; finally every object freed.
fn churn(
    state: &mut u64,
    id: &mut u64,
    give: &mpsc::Sender<Vec<Obj>>,
    take: &mpsc::Receiver<Vec<Obj>>,
) {
    let mut new = |state: &mut u64| {
        let size = (24 + next(state) as usize % 233) & !7;
        *id += 1;
        (stamped(size, *id), size, *id)
    };
    let mut ring: Vec<Obj> = (0..SLOTS).map(|_| new(state)).collect();
    for _ in 0..STEPS {
        for _ in 0..STEP_OPS {
            let i = next(state) as usize % SLOTS;
            check_free(ring[i]);
            ring[i] = new(state);
        }
        give.send(ring).unwrap();
        ring = take.recv().unwrap();
    }
    ring.into_iter().for_each(check_free);
}

/// The other child: two threads, each pinned to a CPU of its own where there are two, run the
/// bursts and free every object themselves; then one line with the mode and the figures.
fn alone() {
    let run = |t: usize| {
        pin(t);
        let (mut state, mut id) = (12345 + 7777 * t as u64, (t as u64) << 48);
        for r in 0..ALONE_ROUNDS {
            let mut objs = burst(&mut state, &mut id, r, ALONE_BURSTS);
            if r % 2 == 1 {
                objs.reverse();
            }
            objs.into_iter().for_each(check_free);
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| run(0));
        s.spawn(|| run(1));
    });
    let s = rseqmalloc::stats();
    println!(
        "RESULT mode={:?} routed={} unrouted={}",
        s.rseq_mode, s.owned_classes_routed, s.owned_classes_unrouted
    );
}

/// The child: both workers, then one line with the mode and the figures.
fn bursts() {
    let (to_b, from_a) = mpsc::channel();
    let (to_a, from_b) = mpsc::channel();
    let a = std::thread::spawn(move || worker(0, to_b, from_b));
    let b = std::thread::spawn(move || worker(1, to_a, from_a));
    a.join().unwrap();
    b.join().unwrap();
    rseqmalloc::trim();
    let s = rseqmalloc::stats();
    println!(
        "RESULT mode={:?} cpus={} routed={} unrouted={} taken={} cached_after_trim={}",
        s.rseq_mode,
        common::allowed_cpus().len(),
        s.owned_classes_routed,
        s.owned_classes_unrouted,
        s.owned_spans_taken,
        s.cpu_cache_bytes.iter().sum::<usize>()
    );
}

#[test]
#[ignore = "run as a child by the per-mode tests"]
fn child_bursts() {
    if std::env::var_os("RSEQMALLOC_IDLE_ROUTES_CHILD").is_some() {
        bursts();
    }
}

#[test]
#[ignore = "run as a child by the per-mode tests"]
fn child_alone() {
    if std::env::var_os("RSEQMALLOC_IDLE_ROUTES_ALONE").is_some() {
        alone();
    }
}

/// Runs the child with `env` and returns its RESULT fields.
fn run(env: &[(&str, &str)]) -> HashMap<String, String> {
    common::child_result("child_bursts", "RSEQMALLOC_IDLE_ROUTES_CHILD", env)
}

/// In an rseq mode (`mode`, as `common::expected_mode` names it), the bursts route small
/// classes and the churn (on two CPUs or more) unroutes some, every object comes back as
/// written (checked in the child), and the final trim leaves nothing cached; where the
/// sections cannot run (aarch64) the child runs the fallback and routes nothing.
fn assert_routed(r: &HashMap<String, String>, mode: &'static str) {
    let expected = common::expected_mode(mode);
    assert_eq!(r["mode"], expected, "{r:?}");
    assert_eq!(num(r, "cached_after_trim"), 0, "{r:?}");
    if expected == "Fallback" {
        assert_eq!(num(r, "routed"), 0, "{r:?}");
        assert_eq!(num(r, "unrouted"), 0, "{r:?}");
    } else {
        assert!(num(r, "taken") > 0, "no span owned: {r:?}");
        assert!(
            num(r, "routed") > 0,
            "no small class routed once idle: {r:?}"
        );
        // On one CPU both threads share a slab and no owned push declines: routes stay.
        if num(r, "cpus") >= 2 {
            assert!(
                num(r, "unrouted") > 0,
                "no routed class unrouted by the churn across threads: {r:?}"
            );
        }
        // A thread routes a class again only once it stopped routing it.
        assert!(num(r, "unrouted") <= num(r, "routed"), "{r:?}");
        assert!(
            num(r, "routed") <= 2 * SMALL_CLASSES + num(r, "unrouted"),
            "{r:?}"
        );
    }
}

/// Threads that free their own bursts route small classes and seldom unroute one, though their
/// owned pushes decline many objects (those carved before the route, which go round through
/// the stack): only declines of another slab's objects count towards an unroute. Counting
/// every decline, this child unrouted 78-102 of 108-132 routings alone (docs/benchmarks.md,
/// "Session 64"); counting those only, none alone and 0-2 of 30-32 beside the other tests (a
/// thread whose concurrency id changes while the CPUs are busy finds its own objects another
/// slab's). Nothing is routed where the sections cannot run.
fn assert_alone(env: &[(&str, &str)], mode: &'static str) {
    let r = common::child_result("child_alone", "RSEQMALLOC_IDLE_ROUTES_ALONE", env);
    let expected = common::expected_mode(mode);
    assert_eq!(r["mode"], expected, "{r:?}");
    if expected == "Fallback" {
        assert_eq!(num(&r, "routed"), 0, "{r:?}");
    } else {
        assert!(num(&r, "routed") > 0, "{r:?}");
    }
    assert!(4 * num(&r, "unrouted") <= num(&r, "routed"), "{r:?}");
}

#[test]
fn own_bursts_seldom_unroute_with_glibc_area() {
    assert_alone(&[], "Glibc");
}

#[test]
fn own_bursts_seldom_unroute_with_own_registration() {
    assert_alone(&[("GLIBC_TUNABLES", "glibc.pthread.rseq=0")], "Own");
}

#[test]
fn own_bursts_seldom_unroute_with_forced_fallback() {
    let r = common::child_result(
        "child_alone",
        "RSEQMALLOC_IDLE_ROUTES_ALONE",
        &[("RSEQMALLOC_OPTIONS", "rseq=off")],
    );
    assert_eq!(r["mode"], "Fallback", "{r:?}");
    assert_eq!(num(&r, "routed"), 0, "{r:?}");
    assert_eq!(num(&r, "unrouted"), 0, "{r:?}");
}

#[test]
fn bursts_route_idle_small_classes_with_glibc_area() {
    assert_routed(&run(&[]), "Glibc");
}

#[test]
fn bursts_route_idle_small_classes_with_own_registration() {
    assert_routed(&run(&[("GLIBC_TUNABLES", "glibc.pthread.rseq=0")]), "Own");
}

/// The fallback routes no small class (its owned spans, since session 76, serve the fixed
/// classes of 288-960 B alone), and the bursts come back whole.
#[test]
fn bursts_route_nothing_with_forced_fallback() {
    let r = run(&[("RSEQMALLOC_OPTIONS", "rseq=off")]);
    assert_eq!(r["mode"], "Fallback", "{r:?}");
    assert_eq!(num(&r, "routed"), 0, "{r:?}");
    assert_eq!(num(&r, "unrouted"), 0, "{r:?}");
    assert!(num(&r, "taken") > 0, "{r:?}");
    assert_eq!(num(&r, "cached_after_trim"), 0, "{r:?}");
}

/// With owned spans off the stacks serve every C allocation: nothing is routed.
#[test]
fn bursts_route_nothing_without_owned_spans() {
    let r = run(&[("RSEQMALLOC_OPTIONS", "owned_spans=off")]);
    assert_eq!(r["mode"], common::expected_mode("Glibc"), "{r:?}");
    assert_eq!(num(&r, "routed"), 0, "{r:?}");
    assert_eq!(num(&r, "unrouted"), 0, "{r:?}");
    assert_eq!(num(&r, "taken"), 0, "{r:?}");
}
