//! `thread-churn`: thousands of short-lived threads, started in waves of
//! 4x CPUs; each allocates small and page-sized objects, checks and frees
//! most of them, and returns a few to the parent, which frees them after
//! the thread has exited. Stresses thread-cache setup and teardown and
//! frees of memory whose allocating thread is gone.

use crate::pattern::{Ids, Obj};
use crate::rng::Rng;
use crate::{cpus, scaled, SEED};

const FULL_THREADS: u64 = 6_000;
/// Small objects each thread allocates.
const SMALL: usize = 200;
/// Page-sized objects each thread allocates.
const PAGES: usize = 4;
/// Objects each thread hands back to its parent.
const HANDED_BACK: usize = 8;

pub fn run(scale: f64) -> u64 {
    let total = scaled(FULL_THREADS, scale, 16) as usize;
    let wave = 4 * cpus();
    let mut started = 0;
    while started < total {
        let n = wave.min(total - started);
        let handles: Vec<_> = (started..started + n)
            .map(|t| std::thread::spawn(move || worker(t)))
            .collect();
        for handle in handles {
            for obj in handle.join().expect("worker thread") {
                obj.release("thread-churn");
            }
        }
        started += n;
    }
    (total * (SMALL + PAGES)) as u64
}

fn worker(thread: usize) -> Vec<Obj> {
    let mut rng = Rng::new(SEED, thread as u64);
    let mut ids = Ids::for_thread(thread);
    let mut objs: Vec<Obj> = (0..SMALL + PAGES)
        .map(|i| {
            let size = if i < SMALL {
                rng.small_size()
            } else {
                rng.range(4096, 16384)
            };
            Obj::new(ids.next_id(), size)
        })
        .collect();
    let kept = objs.split_off(objs.len() - HANDED_BACK);
    for obj in objs {
        obj.release("thread-churn");
    }
    kept
}
