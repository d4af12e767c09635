//! rseqmalloc (skeleton)
