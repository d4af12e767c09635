//! Span reuse (1 GiB of small objects twice does not double the mapped memory), bad input
//! (impossible sizes, huge alignments, foreign and double frees) and the re-entrancy guard,
//! with rseqmalloc as the global allocator. Span reuse and the bad frees run in a child
//! process in each of the three rseq modes.

mod common;

use rseqmalloc::RseqMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

/// Allocates about `total` bytes of small objects (16 B – 4 KiB), touches each, frees them all.
fn churn_small(total: usize) {
    let mut ptrs: Vec<(*mut u8, Layout)> = Vec::with_capacity(total / 512);
    let mut bytes = 0;
    let mut x = 0x9e37_79b9u64;
    while bytes < total {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 16 + (x % 4080) as usize;
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: p holds `size` bytes.
        unsafe {
            p.write(size as u8);
            p.add(size - 1).write(size as u8);
        }
        ptrs.push((p, layout));
        bytes += size;
    }
    for (p, l) in ptrs {
        // SAFETY: allocated above with `l`; the marks written are still there.
        unsafe {
            assert_eq!(*p, l.size() as u8);
            assert_eq!(*p.add(l.size() - 1), l.size() as u8);
            GLOBAL.dealloc(p, l);
        }
    }
}

const REUSE_CHILD: &str = "RSEQMALLOC_REUSE_CHILD";

#[test]
fn one_gib_of_small_objects_twice_reuses_spans() {
    common::run_in_modes("child_reuse", REUSE_CHILD, "");
}

#[test]
#[ignore = "run as a child by one_gib_of_small_objects_twice_reuses_spans"]
fn child_reuse() {
    if !common::in_child(REUSE_CHILD) {
        return;
    }
    churn_small(1 << 30);
    let first = rseqmalloc::stats().mapped;
    churn_small(1 << 30);
    let second = rseqmalloc::stats().mapped;
    assert!(
        first >= 1 << 30,
        "the first round mapped only {first} bytes"
    );
    // The second round must be served from the spans the first one freed: mapping may grow by
    // a little (different interleaving of classes), never by another gigabyte.
    assert!(
        second < first + first / 4,
        "mapped grew from {first} to {second}: spans were not reused"
    );
}

#[test]
fn impossible_sizes_return_null_without_crashing() {
    for size in [
        isize::MAX as usize - 4095,
        isize::MAX as usize / 2,
        1usize << 60,
    ] {
        let layout = Layout::from_size_align(size, 4096).unwrap();
        // SAFETY: non-zero size; a null result is what we check for.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(p.is_null(), "allocating {size} bytes returned {p:p}");
    }
    assert!(rseqmalloc::malloc(usize::MAX).is_null());
    assert!(rseqmalloc::malloc(usize::MAX - 16).is_null());
    assert!(rseqmalloc::calloc(usize::MAX / 2, 3).is_null());
    assert!(rseqmalloc::aligned_alloc(3, 64).is_null());
}

#[test]
fn zero_sizes_give_unique_pointers() {
    let a = rseqmalloc::malloc(0);
    let b = rseqmalloc::malloc(0);
    assert!(!a.is_null() && !b.is_null() && a != b);
    // SAFETY: both are live allocations of this allocator.
    unsafe {
        assert!(rseqmalloc::usable_size(a) >= 1);
        rseqmalloc::free(a);
        rseqmalloc::free(b);
        rseqmalloc::free(std::ptr::null_mut());
    }
    // A zero-sized Layout through GlobalAlloc is not allowed by Rust; the smallest real one is.
    let l = Layout::from_size_align(1, 1).unwrap();
    // SAFETY: non-zero size.
    unsafe {
        let p = GLOBAL.alloc(l);
        assert!(!p.is_null());
        GLOBAL.dealloc(p, l);
    }
}

#[test]
fn every_alignment_up_to_four_mib() {
    for shift in 0..=22 {
        let align = 1usize << shift;
        for size in [1, 24, align, align + 1, 3 * align / 2 + 5] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { GLOBAL.alloc(layout) };
            assert!(!p.is_null(), "{layout:?}");
            assert_eq!(p as usize % align, 0, "{layout:?} gave {p:p}");
            // SAFETY: `p` holds `size` bytes; zeroed memory must read as zero.
            unsafe {
                p.write_bytes(0xab, size);
                GLOBAL.dealloc(p, layout);
                let z = GLOBAL.alloc_zeroed(layout);
                assert_eq!(z as usize % align, 0);
                assert!(
                    std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0),
                    "{layout:?} not zeroed"
                );
                GLOBAL.dealloc(z, layout);
            }
        }
    }
}

#[test]
fn realloc_keeps_contents_across_classes_large_and_huge() {
    let layout = Layout::from_size_align(8, 8).unwrap();
    // SAFETY: every pointer is live with the layout it was last given.
    unsafe {
        let mut p = GLOBAL.alloc(layout);
        let mut size = 8;
        p.write_bytes(1, size);
        for new_size in [
            24,
            100,
            5000,
            300 << 10,
            5 << 20,
            40 << 20,
            70 << 20,
            20 << 20,
            1 << 20,
            64,
            3,
        ] {
            let q = GLOBAL.realloc(p, Layout::from_size_align(size, 8).unwrap(), new_size);
            assert!(!q.is_null());
            let kept = size.min(new_size);
            let s = std::slice::from_raw_parts(q, kept);
            let first_bad = s
                .iter()
                .position(|&b| b != (kept.min(size) > 0) as u8 * s[0]);
            assert_eq!(first_bad, None, "realloc {size}->{new_size} lost data");
            q.write_bytes(s[0], new_size);
            p = q;
            size = new_size;
        }
        GLOBAL.dealloc(p, Layout::from_size_align(size, 8).unwrap());
    }
}

/// Runs this binary's ignored test `test` alone with `RSEQMALLOC_CHILD=case`, in the mode that
/// `options` and `tunables` (a row of `common::MODES`) ask for; the child's output.
fn child_in_mode(test: &str, case: &str, options: &str, tunables: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--include-ignored"])
        .env("RSEQMALLOC_CHILD", case)
        .env("RSEQMALLOC_OPTIONS", options)
        .env("GLIBC_TUNABLES", tunables)
        .output()
        .unwrap()
}

/// Asserts that the child whose output is `out` (`what`) stopped on `SIGABRT` after one line on
/// stderr starting with `needle` (under qemu-user the emulator reports the signal on a line of
/// its own after it, which is not counted).
fn assert_aborted_with_one_line(out: &std::process::Output, needle: &str, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{what}: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("qemu: uncaught target signal"))
        .collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with(needle),
        "{what}: stderr was {stderr}"
    );
}

#[test]
fn freeing_foreign_pointers_aborts_with_one_line() {
    if std::env::var_os("RSEQMALLOC_CHILD").is_some() {
        return;
    }
    // Blocks of 100 B (a class the per-CPU stacks serve) and of 400 B (one owned spans serve,
    // `percpu::owned::FIXED_MIN`: a C free of an object of a span a slab owns goes onto that
    // span's list, not onto a stack; in fallback mode too since session 76), those also with
    // owned spans off.
    for (mode, options, tunables) in common::MODES {
        for (case, needle, extra) in [
            ("foreign", "free(): invalid pointer 0x", ""),
            ("interior:100", "free(): invalid pointer 0x", ""),
            ("double:100", "free(): double free detected 0x", ""),
            ("interior:400", "free(): invalid pointer 0x", ""),
            ("double:400", "free(): double free detected 0x", ""),
            (
                "interior:400",
                "free(): invalid pointer 0x",
                "owned_spans=off",
            ),
            (
                "double:400",
                "free(): double free detected 0x",
                "owned_spans=off",
            ),
        ] {
            let options = common::join_options(&[options, extra]);
            let out = child_in_mode("child_bad_free", case, &options, tunables);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let what = format!("{case} [{mode}, {extra}]");
            assert_aborted_with_one_line(&out, needle, &what);
            common::assert_ran_in(&what, mode, &stdout);
            // The 400 B block came from an owned span where owned spans serve it (every mode: the
            // rseq modes' sections, fallback mode's locks).
            let owned = extra.is_empty() && case.ends_with(":400");
            assert_eq!(owned_spans_taken(&stdout, &what) > 0, owned, "{what}");
        }
    }
}

/// 2000 blocks of `size` bytes from `malloc`: enough that the last ones come from an owned span
/// where owned spans serve the class, whatever this process's Rust code left in the class's
/// stack (popped first). Prints the spans taken to own so far, for [`owned_spans_taken`].
fn blocks_past_the_stack(size: usize) -> Vec<*mut u8> {
    let blocks: Vec<*mut u8> = (0..2000).map(|_| rseqmalloc::malloc(size)).collect();
    println!(
        "owned spans taken: {}",
        rseqmalloc::stats().owned_spans_taken
    );
    blocks
}

/// The count a child printed as `owned spans taken: N` (`rseqmalloc::stats`).
fn owned_spans_taken(stdout: &str, what: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("owned spans taken: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("{what}: no span count in {stdout}"))
}

#[test]
#[ignore = "run as a child by freeing_foreign_pointers_aborts_with_one_line"]
fn child_bad_free() {
    let case = std::env::var("RSEQMALLOC_CHILD").unwrap_or_default();
    if case.is_empty() {
        return;
    }
    common::say_mode();
    let mut local = [0u8; 64];
    let (what, size) = case.split_once(':').unwrap_or((case.as_str(), "0"));
    let size: usize = size.parse().unwrap();
    let p = blocks_past_the_stack(size.max(1))[1999];
    // SAFETY: deliberately wrong: each case must abort before anything is corrupted.
    unsafe {
        match what {
            "foreign" => rseqmalloc::free(local.as_mut_ptr()),
            "interior" => rseqmalloc::free(p.add(16)),
            "double" => {
                rseqmalloc::free(p);
                rseqmalloc::free(p);
            }
            _ => return,
        }
    }
    unreachable!("the bad free of case {case} did not abort");
}

/// With owned spans on (the default), a write into a freed block's first word (where its span's
/// list keeps the next free object's address, encoded) makes the `malloc` that would hand the
/// block out again stop the process with one line naming `malloc` and the block, in every mode
/// (fallback mode's owned spans, since session 76, pop under the slab's lock with the same
/// checks): the link no longer decodes to an object of the span. With owned spans off, and
/// for a block of a class the stacks serve (100 B), nothing reads a free block (`free_tag.rs`:
/// nothing written into one can make the allocator hand out a block twice), so the same
/// program runs on.
#[test]
fn a_write_into_a_freed_block_stops_the_next_malloc_with_one_line() {
    if std::env::var_os("RSEQMALLOC_CHILD").is_some() {
        return;
    }
    for (mode, options, tunables) in common::MODES {
        for (case, extra) in [
            ("write:400", ""),
            ("write:400", "owned_spans=off"),
            ("write:100", ""),
        ] {
            let options = common::join_options(&[options, extra]);
            let out = child_in_mode("child_write_after_free", case, &options, tunables);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let what = format!("write after free, {case} [{mode}, {extra}]");
            common::assert_ran_in(&what, mode, &stdout);
            // Owned spans serve the 400 B blocks only, with the option on.
            let owned = extra.is_empty() && case == "write:400";
            assert_eq!(owned_spans_taken(&stdout, &what) > 0, owned, "{what}");
            if !owned {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{what}: {stderr}");
                assert!(stdout.contains("ran on"), "{what}: {stdout}");
                continue;
            }
            assert_aborted_with_one_line(&out, "malloc(): corrupted free list at 0x", &what);
        }
    }
}

#[test]
#[ignore = "run as a child by a_write_into_a_freed_block_stops_the_next_malloc_with_one_line"]
fn child_write_after_free() {
    let case = std::env::var("RSEQMALLOC_CHILD").unwrap_or_default();
    let Some(size) = case.strip_prefix("write:") else {
        return;
    };
    let size: usize = size.parse().unwrap();
    common::say_mode();
    // One CPU: the frees and the malloc below use the same slab's span.
    // SAFETY: no preconditions.
    common::pin_to(unsafe { libc::sched_getcpu() } as usize);
    let blocks = blocks_past_the_stack(size);
    let (p, q) = (blocks[1998], blocks[1999]);
    // SAFETY: deliberately wrong: a write into a freed block (its first word), which a later
    // malloc of its size must catch (owned spans: `p` is its span's list head, popped once its
    // span is current) or never read (the stacks).
    unsafe {
        rseqmalloc::free(q);
        rseqmalloc::free(p);
        p.cast::<u64>().write(0x4141_4141_4141_4141);
        for _ in 0..200 {
            rseqmalloc::malloc(size);
        }
    }
    println!("ran on");
}

/// In every rseq mode (the guard sits at the entry points, before any mode's code), a nested
/// call from inside the allocator aborts a debug build with one line naming it.
#[test]
fn reentrancy_guard_aborts_in_debug_builds() {
    if !cfg!(debug_assertions) || std::env::var_os("RSEQMALLOC_CHILD").is_some() {
        return;
    }
    for (mode, options, tunables) in common::MODES {
        let out = child_in_mode("child_reentrancy", "reenter", options, tunables);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "[{mode}] {stderr}"
        );
        assert!(
            stderr.contains("rseqmalloc: re-entrant call to malloc from inside the allocator"),
            "[{mode}] {stderr}"
        );
        common::assert_ran_in(&format!("reentrancy [{mode}]"), mode, &stdout);
    }
}

#[test]
#[ignore = "run as a child by reentrancy_guard_aborts_in_debug_builds"]
fn child_reentrancy() {
    if std::env::var("RSEQMALLOC_CHILD").as_deref() == Ok("reenter") {
        common::say_mode();
        let _ = rseqmalloc::__reentrancy_probe();
        unreachable!("the nested allocation was not caught");
    }
}
