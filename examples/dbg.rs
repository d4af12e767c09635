use std::alloc::{GlobalAlloc, Layout};
static R: rseqmalloc::RseqMalloc = rseqmalloc::RseqMalloc;
fn main() {
    let l = Layout::from_size_align(64, 8).unwrap();
    unsafe {
        let p = R.alloc(l);
        let s = rseqmalloc::stats();
        println!(
            "after alloc: cached class4 {} cpu bytes {:?}",
            s.class_cached[4],
            &s.cpu_cache_bytes[..2]
        );
        R.dealloc(p, l);
        let s = rseqmalloc::stats();
        println!(
            "after free: cached class4 {} cpu bytes {:?}",
            s.class_cached[4],
            &s.cpu_cache_bytes[..2]
        );
    }
}
