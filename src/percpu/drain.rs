//! Drains: emptying per-CPU slabs into the central lists, for `trim`, `flush` and the idle
//! drains of maintenance — including slabs of other CPUs, whose critical sections may be
//! running while the drain works.
//!
//! Owns: the drain lock (one drain at a time), the count of drains skipped, and the three
//! protocols, each a function of its own; [`drain_where`] picks the one the mode allows.
//!
//! ## Locked (`drain_locked`): fallback mode
//!
//! Every operation on a slab holds its fallback lock, so a drain takes the lock and empties.
//!
//! ## Stop, fence, empty, fence, restart (`drain_fenced`): rseq modes with the membarrier
//!
//! Lock-free rseq code cannot be locked out, so a drain *stops* the slab instead, and uses two
//! fences, `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`; when one returns, every critical
//! section that was running or preempted when it was called has either committed (its stores
//! visible to us) or been aborted (and will restart from its first load).
//!
//! 1. **Stop**: store `end = 0` (every push fails) and `floor = u16::MAX` (every pop fails) in
//!    each class header, under the slab's capacity lock (so no growth or relocation can
//!    un-stop it or move a class).
//! 2. **Fence**: a section that read a header before the stop is now over. Any later one reads
//!    the stop and fails to the slow path, which never touches a stopped slab.
//! 3. **Empty**: the drainer owns `slots[begin..current]`: it hands them to the central lists
//!    and writes `current = begin`; then it starts the layout again (`begin = current = 0` for
//!    every class, the whole slab free), still stopped.
//! 4. **Fence again.** A section reads `current` and then, in a second load, `floor` or
//!    `end`. One that read the old `current` just before step 3 rewrote it is still in flight;
//!    were the slab un-stopped now, its second load could see the restored bound and it would
//!    commit `current - 1` (or more) over slots that now belong to the central lists, handing
//!    each of them out twice. The second fence ends every such section first.
//! 5. **Restart**: `floor = end = begin` (running, no capacity), release the capacity lock.
//!    A section that reads the restarted header sees `current = begin`: a pop finds it empty
//!    and a push finds it full, whatever it reads of the bound.
//!
//! `tests/drain_model.rs` checks this protocol against the critical sections over every
//! interleaving, and shows that the one-fence version hands an object out twice; the stress
//! tests `tests/drain_race.rs` and `tests/rseq_modes.rs` run it for real.
//!
//! ## Pinned (`drain_pinned`): rseq modes without the membarrier
//!
//! Without the membarrier command (a kernel before 5.10, or `membarrier=off`) slabs are indexed
//! by `cpu_id`, and `trim` drains another CPU's slab by moving the trimming thread onto that
//! CPU and popping it empty through its own critical sections, then lowering each class's
//! capacity to its count (the layout stays; a flush of the thread's own slab does the same).
//! The idle drains of maintenance, which run inside some thread's allocation, may not move it:
//! they are skipped and counted.
//!
//! May call: `arch` (through `percpu::pop`), `central`, `os`, `size_class`, `sync`, and in this
//! folder `remote`, `slab`, `state`, and the face's `pop_batch`.

use super::owned;
use super::remote;
use super::slab::{
    grow_cap, grow_cap_for_arrivals, ready_slabs, relayout_stopped, reset_layout, restart_layout,
    shrink_to_counts, stop, take_full, Slab, SlabSet,
};
use super::state::{mode, uses_mm_cid, RseqMode, G};
use crate::central;
use crate::os;
use crate::size_class::{size_of, NUM_CLASSES};
use crate::sync::{AtomicUsize, CachePadded, Mutex, Ordering};
use core::ptr::null_mut;

/// One drain at a time (and none during a fork).
pub(super) static DRAIN: CachePadded<Mutex<()>> = CachePadded::new(Mutex::new(()));

/// Drains skipped because the kernel lacks the rseq membarrier (reported in statistics).
pub static DRAINS_SKIPPED: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// Drains the slabs for which `pick(index, slab)` says so (evaluated once per ready slab),
/// with the protocol the mode allows (module documentation). Returns the bytes moved.
///
/// `may_pin`: without the rseq membarrier, asked (only then, and before the drain lock is
/// taken) whether the calling thread may drain by moving itself onto each picked CPU
/// ([`drain_pinned`]); trim's thread may if it runs the critical sections, maintenance (which
/// runs inside some thread's allocation) may not, and counts the drain as skipped. (A refused
/// allocation's trim does not come here without the membarrier: `drain_all_in_place`.)
pub(super) fn drain_where(
    may_pin: impl FnOnce() -> bool,
    mut pick: impl FnMut(usize, Slab) -> bool,
) -> usize {
    let nslabs = G.nslabs.load(Ordering::Relaxed);
    if nslabs == 0 {
        return 0;
    }
    // Asked before the drain lock is taken: trim's `may_pin` sets up a new thread, whose set-up
    // may allocate, and an allocation the OS refuses drains too (`lib.rs`,
    // `gave_back_after_refusal`): asked under the lock, that nested drain waited for the lock
    // its own thread held (found by review, session 70).
    let pinned = matches!(mode(), RseqMode::Glibc | RseqMode::Own)
        && !G.membarrier.load(Ordering::Relaxed)
        && !uses_mm_cid()
        && may_pin();
    let _g = DRAIN.lock();
    // Only the slabs picked (and, with rseq, stopped) here are emptied and restarted: one that
    // becomes ready meanwhile was never stopped and must not be touched.
    let picked = SlabSet::new();
    let mut any = false;
    for (i, slab) in ready_slabs() {
        if pick(i, slab) {
            picked.insert(i);
            any = true;
        }
    }
    if !any {
        return 0;
    }
    let bytes = match mode() {
        RseqMode::Fallback => drain_locked(&picked),
        RseqMode::Glibc | RseqMode::Own => {
            if G.membarrier.load(Ordering::Relaxed) {
                drain_fenced(&picked)
            } else if pinned {
                drain_pinned(picked.iter())
            } else {
                DRAINS_SKIPPED.fetch_add(1, Ordering::Relaxed);
                0
            }
        }
        RseqMode::Uninitialized => 0,
    };
    // What other slabs sent home to the drained ones: under the inboxes' own leaf locks, so
    // the same in every protocol.
    bytes + picked.iter().map(remote::flush_slab).sum::<usize>()
}

/// [`grow_cap`], and when the growth failed because the slab's free slots are used up
/// ([`take_full`]), a drain of the slab, which starts its layout again with room for every
/// class. Rare (regions double, and drains of idle slabs re-lay them too); without the
/// membarrier in rseq modes it is skipped and counted, like maintenance's drains. For slow
/// paths holding no lock.
pub(super) fn grow_or_relayout(slab: Slab, c: usize, may_steal: bool) -> bool {
    relayout_unless(slab, grow_cap(slab, c, may_steal))
}

/// [`grow_or_relayout`] for objects arriving from other slabs ([`grow_cap_for_arrivals`]).
pub(super) fn grow_or_relayout_for_arrivals(slab: Slab, c: usize) -> bool {
    relayout_unless(slab, grow_cap_for_arrivals(slab, c))
}

/// `grown`, after draining `slab` when it was not and the slab asked for a drain.
fn relayout_unless(slab: Slab, grown: bool) -> bool {
    if grown {
        return true;
    }
    if let (true, Some(id)) = (take_full(slab), slab.index()) {
        drain_where(|| false, |i, _| i == id);
    }
    false
}

/// Fallback mode: empties each picked slab under its lock and starts its layout again (under
/// its capacity lock too, taken first as growth does, so no relocation is half done). With
/// owned spans on, the owned stop word is set under the lock too: every locked section and
/// push of the slab takes that lock and tests the word first, so once the lock is released
/// none of them touches the slab's owned spans (the hold is the fenced drain's fence), and
/// they go back to the central lists without the lock held. (The stacks' objects go to the
/// central lists under it, as before: the order is capacity lock, slab lock, central locks,
/// and the central lists never call back into this layer.)
fn drain_locked(picked: &SlabSet) -> usize {
    let mut bytes = 0;
    for i in picked.iter() {
        let slab = Slab::of(i);
        slab.cap_lock().lock();
        slab.lock();
        bytes += empty_slab(slab);
        reset_layout(slab);
        let owned = owned::enabled() && owned::owns_any(slab);
        slab.set_owned_stop(owned);
        slab.unlock();
        if owned {
            bytes += owned::give_back_stopped(slab);
            slab.lock();
            slab.set_owned_stop(false);
            slab.unlock();
        }
        slab.cap_lock().unlock();
    }
    bytes
}

/// Rseq modes with the membarrier: stop, fence, empty, fence, restart (module documentation).
fn drain_fenced(picked: &SlabSet) -> usize {
    // 1. Stop, holding each capacity lock until the restart.
    for i in picked.iter() {
        let slab = Slab::of(i);
        slab.cap_lock().lock();
        stop(slab);
        slab.set_owned_stop(true);
    }
    // 2. Every section that read a block before the stop commits or restarts here.
    rseq_fence();
    // 3. Empty, and start the layout again: every stack at slot 0, still stopped.
    let mut bytes = 0;
    for i in picked.iter() {
        bytes += empty_slab(Slab::of(i));
        bytes += owned::give_back_stopped(Slab::of(i));
        relayout_stopped(Slab::of(i));
    }
    // 4. And every section that read a `current` before step 3 rewrote it, here: without
    // this second fence, a section could read the old `current`, then the restored floor or
    // end below, and commit against slots that now belong to the central lists.
    rseq_fence();
    // 5. Restart: `floor = end = begin`, no capacity (drained caches start small again;
    // demand grows them back).
    for i in picked.iter() {
        let slab = Slab::of(i);
        restart_layout(slab);
        slab.set_owned_stop(false);
        slab.cap_lock().unlock();
    }
    bytes
}

/// Drains the slabs of `cpus` without the membarrier: the calling thread restricts itself to
/// each CPU in turn (`sched_setaffinity` returns only once the caller runs on an allowed CPU)
/// and pops that CPU's stacks empty through its own critical sections, which are exact against
/// any other thread on that CPU by construction; then its affinity is restored. Needs slabs
/// indexed by `cpu_id`. A CPU the thread may not run on (cpuset, offline) is skipped and
/// counted. Returns the bytes moved.
fn drain_pinned(cpus: impl Iterator<Item = usize>) -> usize {
    debug_assert!(!owned::enabled(), "owned spans need the fenced drain");
    let Some(saved) = os::affinity() else {
        DRAINS_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return 0;
    };
    let mut bytes = 0;
    for cpu in cpus {
        if !os::pin_to_cpu(cpu) {
            DRAINS_SKIPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        bytes += drain_current(cpu);
        shrink_to_counts(Slab::of(cpu));
    }
    os::set_affinity(&saved);
    bytes
}

/// Empties the slab of the CPU the thread runs on through its own critical sections (each pop
/// reads the id inside the section, so a migration midway only means popping elsewhere).
/// Callers then lower the drained slab's capacities to its counts (`slab::shrink_to_counts`):
/// drained caches start small, as after the other protocols' restart, whatever the mode.
///
/// `near` is the slab the caller expects to drain: the transfer stack shard what it gives back
/// goes onto (past it, to the spans: `central::set_shards`).
pub(super) fn drain_current(near: usize) -> usize {
    let mut bytes = 0;
    let mut buf = [null_mut(); 64];
    for c in 1..NUM_CLASSES {
        loop {
            let n = super::pop_batch(c, &mut buf);
            if n == 0 {
                break;
            }
            bytes += n * size_of(c);
            // SAFETY: popped from the cache: free objects of class `c`, now ours.
            unsafe { central::free_batch_from(c, &buf[..n], near) };
        }
    }
    bytes
}

/// Moves every object cached in `slab` to the central lists. The slab must be stopped (rseq
/// modes, after the fence) or locked (fallback).
pub(super) fn empty_slab(slab: Slab) -> usize {
    let mut bytes = 0;
    let mut buf = [null_mut(); 64];
    for c in 1..NUM_CLASSES {
        let n = slab.count(c);
        let mut done = 0;
        while done < n {
            let k = (n - done).min(buf.len());
            for (j, b) in buf[..k].iter_mut().enumerate() {
                *b = slab.slot(c, done + j).load(Ordering::Relaxed) as *mut u8;
            }
            // SAFETY: the slab is stopped or locked, so these cached objects are ours.
            unsafe { central::free_batch_from(c, &buf[..k], slab.index().unwrap_or(0)) };
            done += k;
        }
        slab.set_count(c, 0);
        bytes += n * size_of(c);
    }
    bytes
}

/// The rseq fence ([`os::membarrier_rseq`]; registered for in `setup::init_process`): when it
/// returns, every critical section of this process that was running (or preempted) when it
/// was called has either committed, with its stores visible to the caller, or been aborted
/// and will restart.
fn rseq_fence() {
    os::membarrier_rseq();
}
