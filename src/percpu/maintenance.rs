//! Maintenance: giving memory back as time passes, without a thread of its own unless asked.
//!
//! Owns: the tick (when maintenance is next due), what a tick does, the idle drains of the
//! per-CPU caches (the part of maintenance this layer owns), and the optional background
//! thread that ticks instead of the slow paths.
//!
//! A tick drains the per-CPU caches that stayed idle ([`drain_idle`]), then asks the central
//! lists to flush their idle transfer stacks (`central::flush_idle`) and the page heap to
//! release the pages free for longer than `decay_ms` (`PageHeap::release_free`): each layer
//! decides what is idle in what it owns; this file only says when.
//!
//! May call: `central`, `config`, `guard`, `os`, `page_heap`, `size_class`, `sync`, and in this
//! folder `drain`, `remote`, `slab`.

use super::drain::drain_where;
use super::slab::Slab;
use crate::central;
use crate::config;
use crate::os;
use crate::page_heap::HEAP;
use crate::size_class::NUM_CLASSES;
use crate::sync::{AtomicU64, Ordering};
use core::ffi::c_void;

/// When the next maintenance tick is due (ms of the monotonic clock).
static NEXT_TICK_MS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds between ticks: a quarter of the decay time, within 10 ms to 1 s.
fn tick_period_ms() -> u64 {
    (config::get().decay_ms / 4).clamp(10, 1000)
}

/// Runs [`maintenance`] if a tick is due: cheap enough for every slow path (a coarse clock
/// read and a compare).
#[inline]
pub fn maybe_tick() {
    let now = os::now_ms();
    let due = NEXT_TICK_MS.load(Ordering::Relaxed);
    if now < due {
        return;
    }
    let period = tick_period_ms();
    if NEXT_TICK_MS
        .compare_exchange(due, now + period, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
        && due != 0
    {
        maintenance(now);
    }
}

/// Gives memory back as time passes: drains idle per-CPU caches, flushes idle transfer
/// stacks, and releases free page runs that have been free for `decay_ms`. Driven from the
/// slow paths, or from the background thread when it is enabled.
pub fn maintenance(now_ms: u64) {
    drain_idle();
    // Objects sent home that their slab has not taken within a tick go to the central lists.
    super::remote::flush_all();
    central::flush_idle();
    central::new_tick();
    let decay = config::get().decay_ms;
    HEAP.lock().release_free(now_ms.saturating_sub(decay));
}

/// A slab's contents in one number: changes whenever any stack moves (almost surely).
fn signature(slab: Slab) -> u32 {
    (1..NUM_CLASSES).fold(0u32, |h, c| h.rotate_left(5) ^ slab.count(c) as u32)
}

/// Ticks a slab must stay unchanged before maintenance drains it remotely.
const IDLE_TICKS: u32 = 2;

/// Drains the slabs whose stacks did not move for [`IDLE_TICKS`] maintenance ticks in a row
/// and still hold objects: the caches of idle CPUs or concurrency ids. Returns the bytes moved.
pub fn drain_idle() -> usize {
    drain_where(
        || false,
        |_, slab| {
            let sig = signature(slab);
            let prev = slab.header().signature.swap(sig, Ordering::Relaxed);
            let ticks = &slab.header().idle_ticks;
            if prev != sig {
                ticks.store(0, Ordering::Relaxed);
                return false;
            }
            let idle = ticks.fetch_add(1, Ordering::Relaxed) + 1 >= IDLE_TICKS;
            idle && (1..NUM_CLASSES).any(|c| slab.count(c) != 0)
        },
    )
}

/// Starts the optional maintenance thread (`background_thread=on`): every tick period it runs
/// [`maintenance`], so an idle program gives memory back without making another allocation.
/// Called once, from the start-up constructor, outside any allocator lock.
pub fn start_background_thread() {
    extern "C" fn run(_: *mut c_void) -> *mut c_void {
        let period = tick_period_ms();
        loop {
            os::sleep_ms(period);
            let _g = crate::guard::enter("background maintenance");
            maintenance(os::now_ms());
        }
    }
    os::spawn(run);
}
