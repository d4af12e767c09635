//! Operations on a private page heap (spans for classes and large objects of every length and
//! alignment, frees, in-place resizes, releases, huge objects), the heap's invariants and a
//! shadow model checked after each. The logic is `rseqmalloc::fuzzing::page_heap`, which the
//! core's unit tests also run on seeded inputs (`random_operations_keep_the_page_heap_invariants`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rseqmalloc::fuzzing::page_heap(data));
