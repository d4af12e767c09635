//! A small program using rseqmalloc as its global allocator: allocates, frees across threads
//! and prints the allocator's statistics.
use rseqmalloc::RseqMalloc;

#[global_allocator]
static A: RseqMalloc = RseqMalloc;

fn main() {
    let mut v: Vec<Box<[u8]>> = Vec::new();
    for i in 0..100_000usize {
        v.push(vec![(i % 251) as u8; 1 + i % 3000].into_boxed_slice());
    }
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let chunk: Vec<Box<[u8]>> = v.drain(..v.len() / (4 - t)).collect();
            std::thread::spawn(move || {
                for b in &chunk {
                    assert!(b.iter().all(|&x| x == b[0]));
                }
                drop(chunk);
                let s: String = (0..1000).map(|i| i.to_string()).collect();
                s.len()
            })
        })
        .collect();
    for h in handles {
        println!("thread made a string of {} bytes", h.join().unwrap());
    }
    let big = vec![7u8; 64 << 20];
    assert_eq!(big[12345], 7);
    drop(big);
    let s = rseqmalloc::stats();
    println!(
        "mode {:?} mm_cid {} restarts {} allocated {} mapped {} resident {}",
        s.rseq_mode, s.uses_mm_cid, s.restarts, s.allocated, s.mapped, s.resident
    );
    println!("trimmed {} bytes", rseqmalloc::trim());
}
