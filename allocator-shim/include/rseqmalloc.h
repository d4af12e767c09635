/* rseqmalloc.h: the rseqmalloc-specific C API of librseqmalloc.so.
 *
 * The standard allocation functions (malloc, free, calloc, realloc, reallocarray,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size, free_sized,
 * free_aligned_sized, malloc_trim, mallopt, mallinfo, mallinfo2, malloc_info, malloc_stats)
 * and C++'s operator new/delete are exported with glibc's semantics and declared by the usual
 * headers (<stdlib.h>, <malloc.h>, <new>). This header adds what only rseqmalloc has. Use it with the library linked
 * (-lrseqmalloc) or preloaded (LD_PRELOAD=librseqmalloc.so); when it may be absent, look the
 * functions up with dlsym(RTLD_DEFAULT, "rseqmalloc_stats") and friends instead. */
#ifndef RSEQMALLOC_H
#define RSEQMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of rseqmalloc this header belongs to; rseqmalloc_version() gives the library's. */
#define RSEQMALLOC_VERSION "0.1.0"

/* Compiled-in options, like jemalloc's malloc_conf: a program may define
 *     const char *rseqmalloc_options = "decay_ms=250,stats=text";
 * (same syntax as RSEQMALLOC_OPTIONS, which is read after it and overrides it key by key). The
 * library finds the definition when the program is linked with -lrseqmalloc (the linker then
 * exports it); under LD_PRELOAD only if the program exports its symbols (-rdynamic). */
extern const char *rseqmalloc_options;

/* How the per-CPU caches are protected (struct rseqmalloc_stats.rseq_mode). */
enum rseqmalloc_rseq_mode {
    RSEQMALLOC_MODE_UNINITIALIZED = 0, /* nothing allocated yet */
    RSEQMALLOC_MODE_GLIBC = 1,         /* restartable sequences on glibc's registered area */
    RSEQMALLOC_MODE_OWN = 2,           /* restartable sequences on our own registered area */
    RSEQMALLOC_MODE_FALLBACK = 3       /* rseq off or unavailable: per-slab locks */
};

/* A snapshot of the allocator's state; figures are read one after the other, not atomically.
 *
 * Versioned by size: fields are only ever appended. Pass sizeof(struct rseqmalloc_stats) as
 * out_size; a newer library fills only the prefix you know about, an older one fills less and
 * says how much (the return value). */
struct rseqmalloc_stats {
    size_t allocated;    /* bytes in objects handed to the program */
    size_t active;       /* bytes in spans in use (small-object spans, large and huge objects) */
    size_t resident;     /* resident set size of the whole process */
    size_t mapped;       /* address space the allocator mapped */
    size_t released;     /* bytes of free spans returned to the OS */
    size_t free;         /* bytes in free spans, released or not */
    size_t metadata;     /* bytes of allocator metadata */
    int32_t rseq_mode;   /* enum rseqmalloc_rseq_mode */
    int32_t uses_mm_cid; /* 1: per-CPU slabs indexed by concurrency id (mm_cid); 0: by cpu id */
    uint64_t restarts;   /* rseq critical sections aborted and restarted */
    size_t fallback_ops; /* slab-lock acquisitions of the locked fallback path (one per
                          * operation, or per magazine refill/flush; magazine hits take none) */
    size_t slabs;        /* per-CPU slabs (possible CPU or concurrency ids) */
    size_t slabs_in_use; /* slabs touched so far */
    uint64_t batch_restarts; /* of restarts, those of the batch sections (refill, overflow and
                              * drain batches, a class's relocation) */
};

/* Fills the first min(out_size, sizeof(struct rseqmalloc_stats)) bytes of *out and returns
 * that count. With out == NULL, returns the library's sizeof(struct rseqmalloc_stats). */
size_t rseqmalloc_stats(struct rseqmalloc_stats *out, size_t out_size);

/* The library's version as a static string, e.g. "0.1.0" (also in its ELF .comment section:
 * readelf -p .comment librseqmalloc.so). */
const char *rseqmalloc_version(void);

/* The rseq mode as a static string: "glibc", "own", "fallback" or "uninitialized". */
const char *rseqmalloc_rseq_mode(void);

/* Bytes usable at ptr (at least what was requested); 0 for NULL. ptr must come from this
 * allocator. Same as malloc_usable_size. */
size_t rseqmalloc_usable_size(void *ptr);

/* Drains every per-CPU cache and the central caches, and returns all free pages to the
 * OS; returns the bytes
 * released. (malloc_trim does the same and returns 1 if anything was released.) */
size_t rseqmalloc_trim(void);

/* Run-time control, like jemalloc's mallctl: runs `command` and writes its answer,
 * NUL-terminated, into `out` (`out_size` bytes; `out` may be NULL when the answer is not
 * wanted). Commands:
 *   "KEY"          the value of option KEY (e.g. "decay_ms")
 *   "KEY=VALUE"    sets an option that may change at run time: decay_ms, cpu_cache_bytes,
 *                  dirty_max, huge_pages, stats, stats_classes
 *   "options"      every option in effect, "key=value,..."
 *   "version"      the library's version
 *   "stats.NAME"   a figure in bytes: allocated, active, peak_active, resident,
 *                  peak_resident, mapped, released, free, metadata; or an object count:
 *                  sent_home, sent_home_declined, sent_home_no_outbox (owner return),
 *                  evicted (objects moved out of idle per-CPU classes for others'
 *                  capacity), burst_growths (per-CPU classes grown into the burst tier);
 *                  or a count of maintenance ticks: maintenance_ticks (all),
 *                  background_ticks (those the background thread ran)
 *   "purge"        drain every cache and return all free pages to the OS; answer: bytes
 *   "flush"        empty the calling thread's caches (its CPU's slab with what other CPUs
 *                  sent home to it, its magazine) into the central lists; answer: bytes moved
 * Returns 0, or ENOENT (unknown command, option or figure), EINVAL (malformed), EPERM (the
 * option is read at start-up only), ERANGE (the answer does not fit; the command did run). */
int rseqmalloc_ctl(const char *command, char *out, size_t out_size);

#ifdef __cplusplus
}
#endif

#endif /* RSEQMALLOC_H */
