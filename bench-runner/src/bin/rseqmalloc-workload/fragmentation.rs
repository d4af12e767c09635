//! `fragmentation`: grow a heap of mixed sizes to the target, free 90 % of it
//! at random, grow it back with somewhat larger sizes (so the holes left
//! behind do not fit as they are), then check and free everything. The
//! interesting figure is peak RSS: an allocator that cannot reuse the holes
//! ends near twice the target.

use crate::pattern::{Ids, Obj};
use crate::rng::Rng;
use crate::SEED;

/// Live bytes at full scale.
const FULL_BYTES: f64 = (1u64 << 30) as f64;

pub fn run(scale: f64) -> u64 {
    let target = ((FULL_BYTES * scale) as usize).max(4 << 20);
    let mut rng = Rng::new(SEED, 0);
    let mut ids = Ids::for_thread(0);
    let mut ops = 0u64;
    let mut live: Vec<Obj> = Vec::new();
    let mut bytes = 0usize;

    while bytes < target {
        let obj = Obj::new(ids.next_id(), mixed_size(&mut rng));
        bytes += obj.len();
        live.push(obj);
        ops += 1;
    }

    let mut kept = Vec::with_capacity(live.len() / 8);
    for obj in live {
        if rng.percent(90) {
            bytes -= obj.len();
            obj.release("fragmentation");
            ops += 1;
        } else {
            kept.push(obj);
        }
    }

    while bytes < target {
        let obj = Obj::new(ids.next_id(), mixed_size(&mut rng) * 3 / 2);
        bytes += obj.len();
        kept.push(obj);
        ops += 1;
    }

    ops += kept.len() as u64;
    for obj in kept {
        obj.release("fragmentation");
    }
    ops
}

/// Half small (16-256 B), a third medium (to 4 KiB), the rest up to 256 KiB.
fn mixed_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=49 => rng.range(16, 256),
        50..=84 => rng.range(257, 4096),
        85..=97 => rng.range(4097, 64 << 10),
        _ => rng.range((64 << 10) + 1, 256 << 10),
    }
}
