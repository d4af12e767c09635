//! Linux implementation of the OS layer: mmap/madvise/munmap, futex, auxv, environ, stderr.

use super::{system_call, Msg, OsError};
use core::ffi::c_long;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

/// The kernel's page size this allocator is built for (x86_64 and most aarch64 kernels).
pub const OS_PAGE: usize = 4096;
/// Transparent huge page size on x86_64.
pub const HUGE_PAGE: usize = 2 << 20;

/// The memory system calls, made directly ([`system_call`]), not through libc's `mmap`,
/// `munmap`, `mremap`, `mprotect`, `madvise` and `mincore`: a program may define functions of
/// those names (a tracker of its own mappings), and the loader then binds every caller of libc's,
/// this library included, to the program's. One that allocates ran inside the allocator: under
/// the page heap's lock, and `malloc` hung in every mode (session 74; conformance
/// `own_mmap.c`). glibc's malloc and tcmalloc call the kernel directly; jemalloc hangs and
/// mimalloc crashes on such a program. (Session 74 went through libc's `syscall`, which a
/// program may define too: session 75, conformance `own_libc.c`.) Each returns what the kernel
/// did, as libc's wrapper does: -1 (`MAP_FAILED` for the mappings) with `errno` set on failure.
/// Every argument is widened to the kernel's `long`.
mod sys {
    use super::system_call;
    use core::ffi::{c_int, c_long, c_void};

    /// `mmap(addr, len, prot, flags, -1, 0)`: an anonymous mapping.
    ///
    /// # Safety
    /// As for `mmap(2)`; with `MAP_FIXED`, `[addr, addr + len)` must be ours to replace.
    pub unsafe fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int) -> *mut c_void {
        let a = [
            addr as c_long,
            len as c_long,
            prot as c_long,
            flags as c_long,
            -1,
        ];
        // SAFETY: forwarded contract; the arguments are the system call's.
        let r = unsafe { system_call(libc::SYS_mmap, &a) };
        r as *mut c_void
    }

    /// `munmap(addr, len)`.
    ///
    /// # Safety
    /// As for `munmap(2)`: nothing may use the range afterwards.
    pub unsafe fn munmap(addr: *mut c_void, len: usize) -> c_int {
        // SAFETY: forwarded contract.
        unsafe { system_call(libc::SYS_munmap, &[addr as c_long, len as c_long]) as c_int }
    }

    /// `mremap(old, old_len, new_len, flags, new_addr)` (`new_addr` read with `MREMAP_FIXED`).
    ///
    /// # Safety
    /// As for `mremap(2)`.
    pub unsafe fn mremap(
        old: *mut c_void,
        old_len: usize,
        new_len: usize,
        flags: c_int,
        new_addr: *mut c_void,
    ) -> *mut c_void {
        let a = [
            old as c_long,
            old_len as c_long,
            new_len as c_long,
            flags as c_long,
            new_addr as c_long,
        ];
        // SAFETY: forwarded contract.
        let r = unsafe { system_call(libc::SYS_mremap, &a) };
        r as *mut c_void
    }

    /// `mprotect(addr, len, prot)`.
    ///
    /// # Safety
    /// As for `mprotect(2)`: the range is ours, and nothing relies on access being refused.
    pub unsafe fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int {
        let a = [addr as c_long, len as c_long, prot as c_long];
        // SAFETY: forwarded contract.
        unsafe { system_call(libc::SYS_mprotect, &a) as c_int }
    }

    /// `madvise(addr, len, advice)`.
    ///
    /// # Safety
    /// As for `madvise(2)`: the range is ours, and an advice that drops contents
    /// (`MADV_DONTNEED`) only where nothing is needed.
    pub unsafe fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
        let a = [addr as c_long, len as c_long, advice as c_long];
        // SAFETY: forwarded contract.
        unsafe { system_call(libc::SYS_madvise, &a) as c_int }
    }

    /// `mincore(addr, len, vec)`.
    ///
    /// # Safety
    /// As for `mincore(2)`: `vec` holds a byte for each page of the range.
    pub unsafe fn mincore(addr: *mut c_void, len: usize, vec: *mut u8) -> c_int {
        let a = [addr as c_long, len as c_long, vec as c_long];
        // SAFETY: forwarded contract.
        unsafe { system_call(libc::SYS_mincore, &a) as c_int }
    }
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: `__errno_location` always returns the calling thread's valid errno slot.
    unsafe { *libc::__errno_location() }
}

/// Keeps the calling thread's `errno` across a slow path that makes system calls (`free` must
/// not change it, POSIX.1-2024): saves it when made, restores it when dropped.
pub struct ErrnoKeeper(i32);

impl ErrnoKeeper {
    /// Saves the current `errno`.
    #[inline]
    pub fn new() -> Self {
        ErrnoKeeper(errno())
    }
}

impl Default for ErrnoKeeper {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ErrnoKeeper {
    #[inline]
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`; writing the thread's own slot is always allowed.
    unsafe { *libc::__errno_location() = e }
}

/// How a new mapping counts against the kernel's commit limit (`vm.overcommit_memory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Read-write, `MAP_NORESERVE`: the allocator's own chunks, whose pages cost nothing until
    /// touched and which the kernel never refuses for the commit limit alone.
    Lazy,
    /// Read-write and charged, as glibc maps a large block: under the kernel's overcommit policy
    /// an impossible size is refused (`ENOMEM`) here instead of succeeding and meeting the OOM
    /// killer later.
    Charged,
    /// Inaccessible address space held for growth (`PROT_NONE`, `MAP_NORESERVE`): neither
    /// resident nor charged. [`commit`] replaces its start with a charged mapping, and
    /// [`grow_into_reservation`] extends that mapping over it (huge objects); [`open_up`] makes
    /// part of it read-write, uncharged (the page heap's chunks).
    Reserve,
}

/// Maps `size` bytes of fresh, zeroed, read-write address space aligned to `align`
/// (a power of two). Pages cost nothing until touched (`MAP_NORESERVE`).
pub fn map(size: usize, align: usize) -> Result<*mut u8, OsError> {
    map_with(size, align, Commit::Lazy)
}

/// [`map`], charged or reserved as `kind` says.
pub fn map_with(size: usize, align: usize, kind: Commit) -> Result<*mut u8, OsError> {
    debug_assert!(align.is_power_of_two() && size.is_multiple_of(OS_PAGE));
    let align = align.max(OS_PAGE);
    let extra = align - OS_PAGE;
    let total = size.checked_add(extra).ok_or(OsError(libc::ENOMEM))?;
    let (prot, flags) = match kind {
        Commit::Lazy => (
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        ),
        Commit::Charged => (
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        ),
        Commit::Reserve => (
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        ),
    };
    // A refusal is answered by the caller (often by serving the request another way), so the
    // calling thread's `errno` is left as it was; the kernel's code is in the `OsError`.
    let (p, code) = {
        let _errno = ErrnoKeeper::new();
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory; the result is checked for MAP_FAILED.
        let p = unsafe { sys::mmap(core::ptr::null_mut(), total, prot, flags) };
        (p, errno())
    };
    if p == libc::MAP_FAILED {
        return Err(OsError(code));
    }
    let base = p as usize;
    let aligned = (base + align - 1) & !(align - 1);
    let head = aligned - base;
    let tail = total - head - size;
    // SAFETY: the head and tail trimmed here lie inside the mapping just made and are not
    // part of the returned range.
    unsafe {
        if head > 0 {
            sys::munmap(base as *mut _, head);
        }
        if tail > 0 {
            sys::munmap((aligned + size) as *mut _, tail);
        }
    }
    Ok(aligned as *mut u8)
}

/// Unmaps a range returned by [`map`] (or a page-aligned part of one).
///
/// # Safety
/// Nothing may use the range afterwards.
pub unsafe fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: the caller gives up the range; munmap of our own mapping cannot fail in a way
    // that matters (an error would leave the mapping in place, which is only a leak).
    unsafe { sys::munmap(ptr.cast(), size) };
}

/// Moves the pages of mapping `[old, old + old_size)` to `dest` (a mapping of `new_size`
/// bytes we own, which it replaces), growing or shrinking it, without copying bytes.
///
/// # Safety
/// Both ranges must be ours and page-aligned; nothing may use `old` afterwards if it succeeds.
pub unsafe fn move_pages(old: *mut u8, old_size: usize, dest: *mut u8, new_size: usize) -> bool {
    // A refusal is the caller's to answer ([`map_with`]): `errno` stays.
    let _errno = ErrnoKeeper::new();
    // SAFETY: MREMAP_FIXED replaces our own mapping at `dest`; the caller owns both ranges.
    let r = unsafe {
        sys::mremap(
            old.cast(),
            old_size,
            new_size,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dest.cast::<libc::c_void>(),
        )
    };
    r == dest.cast()
}

/// Replaces `[ptr, ptr + size)`, the start of a [`Commit::Reserve`] mapping of ours, with
/// fresh read-write pages charged like a [`Commit::Charged`] mapping (atomically: the address
/// space never leaves our hands). False if the kernel refused; the range is then unchanged.
///
/// # Safety
/// The range must be ours, page-aligned, and hold nothing anyone needs.
pub unsafe fn commit(ptr: *mut u8, size: usize) -> bool {
    // A refusal is the caller's to answer ([`map_with`]): `errno` stays.
    let _errno = ErrnoKeeper::new();
    // SAFETY: MAP_FIXED replaces only our own range.
    let p = unsafe {
        sys::mmap(
            ptr.cast(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
        )
    };
    p == ptr.cast()
}

/// Makes `[ptr, ptr + size)`, part of a [`Commit::Reserve`] mapping of ours, read-write: its
/// pages cost nothing until touched and are not charged (the reservation's `MAP_NORESERVE`
/// stays; under strict overcommit, which ignores it, the range is charged now, and under
/// `RLIMIT_DATA` it counts from now), and the mapping's huge-page advice stays. In a process
/// that locked its future mappings (`mlockall(MCL_FUTURE)`) the kernel faults them in now.
/// False if the kernel refused (out of mappings, or the limit); the range is then unchanged.
///
/// # Safety
/// The range must be ours, page-aligned, and inside one reservation.
pub unsafe fn open_up(ptr: *mut u8, size: usize) -> bool {
    // A refusal is the caller's to answer ([`map_with`]): `errno` stays.
    let _errno = ErrnoKeeper::new();
    // SAFETY: the caller owns the range, which holds nothing yet.
    unsafe { sys::mprotect(ptr.cast(), size, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Grows the read-write mapping `[ptr, ptr + old_size)` in place to `new_size` bytes over the
/// reservation right after it (which must cover the difference): the kernel can only extend a
/// mapping into free address space, so that part of the reservation is unmapped first.
/// False if another mapping took the gap in between; the mapping is then unchanged and the
/// gap no longer ours.
///
/// # Safety
/// `[ptr + old_size, ptr + new_size)` must be part of a reservation of ours; the mapping must
/// be a single read-write mapping of ours.
pub unsafe fn grow_into_reservation(ptr: *mut u8, old_size: usize, new_size: usize) -> bool {
    // A refusal is the caller's to answer ([`map_with`]): `errno` stays.
    let _errno = ErrnoKeeper::new();
    // SAFETY: the caller owns both ranges; without MREMAP_MAYMOVE the kernel only extends
    // this mapping where the address space is free.
    unsafe {
        sys::munmap(ptr.add(old_size).cast(), new_size - old_size);
        sys::mremap(ptr.cast(), old_size, new_size, 0, core::ptr::null_mut()) == ptr.cast()
    }
}

/// Grows or shrinks mapping `[ptr, ptr + old_size)` to `new_size` bytes, moving it wherever the
/// kernel finds room (`MREMAP_MAYMOVE`, no copy); the new start, or `None` (the mapping is then
/// unchanged).
///
/// # Safety
/// The range must be a whole read-write mapping of ours; nothing may use `ptr` afterwards if it
/// moved.
pub unsafe fn move_mapping(ptr: *mut u8, old_size: usize, new_size: usize) -> Option<*mut u8> {
    // A refusal is the caller's to answer ([`map_with`]): `errno` stays.
    let _errno = ErrnoKeeper::new();
    // SAFETY: the caller owns the mapping; the kernel picks the destination.
    let r = unsafe {
        sys::mremap(
            ptr.cast(),
            old_size,
            new_size,
            libc::MREMAP_MAYMOVE,
            core::ptr::null_mut(),
        )
    };
    (r != libc::MAP_FAILED).then_some(r.cast())
}

/// Returns the physical pages of a range to the kernel at once; the range stays mapped and
/// reads back as zeros (`MADV_DONTNEED`). Returns whether the kernel accepted.
///
/// # Safety
/// The range must be ours, page-aligned, and hold nothing anyone still needs.
pub unsafe fn decommit(ptr: *mut u8, size: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours and dead.
    unsafe { sys::madvise(ptr.cast(), size, libc::MADV_DONTNEED) == 0 }
}

/// Faults a range in, writable, with one call (`MADV_POPULATE_WRITE`, Linux 5.14+): what the
/// first write to each page would do, without a trap per page. False when the kernel cannot
/// (`EINVAL` before 5.14, remembered so it is asked once; `ENOMEM`, `EFAULT`): the range is
/// then as it was, and its pages fault in on first use as usual.
pub fn populate_write(ptr: *mut u8, size: usize) -> bool {
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: populating changes no contents; the range is the caller's read-write mapping.
    if unsafe { sys::madvise(ptr.cast(), size, libc::MADV_POPULATE_WRITE) } == 0 {
        return true;
    }
    if errno() == libc::EINVAL {
        UNSUPPORTED.store(true, Ordering::Relaxed);
    }
    false
}

/// How many of the OS pages of `[ptr, ptr + size)` are resident now (`mincore`), or None when
/// the kernel refused (`ENOMEM`: part of the range is not mapped). `errno` is kept. `ptr` is
/// page-aligned.
pub fn resident_pages(ptr: *const u8, size: usize) -> Option<usize> {
    let _errno = ErrnoKeeper::new();
    // One byte a page, a window at a time: no allocation, a small stack buffer.
    let mut v = [0u8; 512];
    let pages = size.div_ceil(OS_PAGE);
    let mut resident = 0;
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(v.len());
        // SAFETY: mincore only reads the page tables of the range and writes `n` bytes of `v`.
        let r = unsafe {
            sys::mincore(
                ptr.wrapping_add(done * OS_PAGE) as *mut libc::c_void,
                n * OS_PAGE,
                v.as_mut_ptr(),
            )
        };
        if r != 0 {
            return None;
        }
        resident += v[..n].iter().filter(|&&b| b & 1 == 1).count();
        done += n;
    }
    Some(resident)
}

/// Asks for (or refuses) transparent huge pages on a range; advisory, errors ignored.
pub fn advise_huge(ptr: *mut u8, size: usize, want: bool) {
    // Refused (a kernel without transparent huge pages: `EINVAL`) or not, `errno` stays.
    let _errno = ErrnoKeeper::new();
    let advice = if want {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: madvise with (NO)HUGEPAGE changes no contents; the range is the caller's mapping.
    unsafe { sys::madvise(ptr.cast(), size, advice) };
}

/// Sleeps while `*word == expected` (or until woken / interrupted).
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // `EAGAIN` (the word changed) or `EINTR` is the lock's business, not the caller's `errno`.
    let _errno = ErrnoKeeper::new();
    // SAFETY: FUTEX_WAIT only reads the aligned u32 behind a live reference.
    unsafe {
        let op = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as c_long;
        let a = [word.as_ptr() as c_long, op, expected as c_long];
        system_call(libc::SYS_futex, &a)
    };
}

/// Wakes up to `n` waiters on `word`.
pub fn futex_wake(word: &AtomicU32, n: i32) {
    let _errno = ErrnoKeeper::new();
    // SAFETY: FUTEX_WAKE does not access memory beyond the word's address.
    unsafe {
        let op = (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as c_long;
        let a = [word.as_ptr() as c_long, op, n as c_long];
        system_call(libc::SYS_futex, &a)
    };
}

/// `getauxval`, 0 when the entry is absent.
pub fn auxval(kind: u64) -> u64 {
    // SAFETY: getauxval reads the process's auxiliary vector; it never fails unsafely.
    unsafe { libc::getauxval(kind as libc::c_ulong) as u64 }
}

/// A random 64-bit value from the kernel's `AT_RANDOM` bytes and the stack address.
pub fn random_u64() -> u64 {
    let p = auxval(libc::AT_RANDOM) as *const u64;
    let mut v = 0x9e37_79b9_7f4a_7c15u64 ^ (&p as *const _ as u64);
    if !p.is_null() {
        // SAFETY: AT_RANDOM points at 16 random bytes the kernel placed on the initial stack,
        // valid for the life of the process; read unaligned to be safe.
        v ^= unsafe { p.read_unaligned() };
    }
    // splitmix64 finaliser so that a zero never comes out in practice.
    v = (v ^ (v >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    v = (v ^ (v >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    v ^ (v >> 31) | 1
}

/// Monotonic time in milliseconds (coarse clock: a few ns to read).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Not libc's: a preloaded library's `clock_gettime` (libfaketime) allocates (`vdso`).
    super::vdso::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Looks up an environment variable in the process's `environ` without allocating.
///
/// Returns the value's bytes; they live as long as nobody calls `setenv`/`putenv` for it,
/// so callers copy what they keep.
pub fn getenv(name: &[u8]) -> Option<&'static [u8]> {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: `environ` is the C runtime's NULL-terminated array of NUL-terminated strings;
    // we only read it, entry by entry, up to each string's NUL.
    unsafe {
        let mut e = environ;
        if e.is_null() {
            return None;
        }
        while !(*e).is_null() {
            let s = core::ffi::CStr::from_ptr(*e).to_bytes();
            if s.len() > name.len() && s.starts_with(name) && s[name.len()] == b'=' {
                return Some(&s[name.len() + 1..]);
            }
            e = e.add(1);
        }
    }
    None
}

/// The string a program compiled in as `const char *rseqmalloc_options` (C) or with
/// `rseqmalloc::options!` (Rust), if any.
///
/// The symbol is referenced weakly: a program that does not define it links and runs as
/// before. It is found when the definition is visible to the linker of this code — a Rust
/// program linking the crate, or a C program linking `-lrseqmalloc` (the linker then exports
/// the program's symbol for the library) — and not under `LD_PRELOAD` unless the program
/// exports it (`-rdynamic`).
pub fn compiled_in_options() -> Option<&'static [u8]> {
    extern "C" {
        fn rseqmalloc_options_address() -> *const *const libc::c_char;
    }
    // SAFETY: the assembly below returns the GOT entry of the weak symbol: null if nobody
    // defines it, else the address of the program's `const char *`.
    let slot = unsafe { rseqmalloc_options_address() };
    if slot.is_null() {
        return None;
    }
    // SAFETY: a defined `rseqmalloc_options` is a pointer to a NUL-terminated string (or
    // null) that lives as long as the program.
    unsafe {
        let s = *slot;
        (!s.is_null()).then(|| core::ffi::CStr::from_ptr(s).to_bytes())
    }
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".weak rseqmalloc_options",
    ".pushsection .text.rseqmalloc_options_address,\"ax\",@progbits",
    ".globl rseqmalloc_options_address",
    ".hidden rseqmalloc_options_address",
    ".type rseqmalloc_options_address,@function",
    "rseqmalloc_options_address:",
    "mov rax, qword ptr [rip + rseqmalloc_options@GOTPCREL]",
    "ret",
    ".size rseqmalloc_options_address, . - rseqmalloc_options_address",
    ".popsection",
    // The version in `.comment`, in this block because the options are always read: the
    // object holding it is then always linked (an unreferenced one of an rlib may not be).
    ".pushsection .comment,\"MS\",@progbits,1",
    concat!(".asciz \"rseqmalloc ", env!("CARGO_PKG_VERSION"), "\""),
    ".popsection",
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".weak rseqmalloc_options",
    ".pushsection .text.rseqmalloc_options_address,\"ax\",%progbits",
    ".globl rseqmalloc_options_address",
    ".hidden rseqmalloc_options_address",
    ".type rseqmalloc_options_address,%function",
    "rseqmalloc_options_address:",
    "adrp x0, :got:rseqmalloc_options",
    "ldr x0, [x0, :got_lo12:rseqmalloc_options]",
    "ret",
    ".size rseqmalloc_options_address, . - rseqmalloc_options_address",
    ".popsection",
    // The version in `.comment`, in this block because the options are always read: the
    // object holding it is then always linked (an unreferenced one of an rlib may not be).
    ".pushsection .comment,\"MS\",%progbits,1",
    concat!(".asciz \"rseqmalloc ", env!("CARGO_PKG_VERSION"), "\""),
    ".popsection",
);

/// The process's address-space limit in bytes: the lower of a finite `RLIMIT_AS` and
/// `RLIMIT_DATA` (which counts private writable mappings, as ours are), or `None` when both are
/// unlimited. `errno` is left as it was.
pub fn address_space_limit() -> Option<u64> {
    let _errno = ErrnoKeeper::new();
    let limit = |resource| {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let a = [0, resource as c_long, 0, &raw mut rl as c_long];
        // SAFETY: prlimit64 of the calling process (pid 0) with no new limit writes the limit
        // into the struct we own (the layout of `struct rlimit64` on 64-bit Linux).
        let ok = unsafe { system_call(libc::SYS_prlimit64, &a) } == 0;
        (ok && rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur)
    };
    match (limit(libc::RLIMIT_AS), limit(libc::RLIMIT_DATA)) {
        (None, None) => None,
        (a, d) => Some(a.unwrap_or(u64::MAX).min(d.unwrap_or(u64::MAX))),
    }
}

/// Whether giving memory back can make room for a mapping of `size` bytes the kernel refused:
/// the process has a finite `RLIMIT_AS` or `RLIMIT_DATA` at least `size` (a request past the
/// limit cannot fit whatever is freed), or the system has strict overcommit
/// (`vm.overcommit_memory` = 2, remembered once read). Otherwise (the heuristic overcommit, the
/// default) the kernel refuses a mapping only for a size past the system's memory and swap,
/// which nothing a process frees changes. (A refusal for want of mappings,
/// `vm.max_map_count`, is not told apart.) `errno` is left as it was.
pub fn memory_limited(size: usize) -> bool {
    if let Some(limit) = address_space_limit() {
        return size as u64 <= limit;
    }
    // 0: not read yet (or unreadable, asked again next time); 1: strict; 2: not strict.
    static STRICT: AtomicU8 = AtomicU8::new(0);
    let mut known = STRICT.load(Ordering::Relaxed);
    if known == 0 {
        let mut buf = [0u8; 8];
        match read_small_file(c"/proc/sys/vm/overcommit_memory", &mut buf) {
            Some(n) if n > 0 => {
                known = if buf[0] == b'2' { 1 } else { 2 };
                STRICT.store(known, Ordering::Relaxed);
            }
            _ => return false,
        }
    }
    known == 1
}

/// A size field of `/proc/self/status` (`key` with its colon, such as `b"VmHWM:"`; the file
/// gives it in kB), in bytes; 0 if the file cannot be read or has no such field.
pub fn status_bytes(key: &[u8]) -> usize {
    let mut buf = [0u8; 4096];
    let Some(n) = read_small_file(c"/proc/self/status", &mut buf) else {
        return 0;
    };
    buf[..n]
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(key))
        .map_or(0, |v| {
            v.iter()
                .filter(|b| b.is_ascii_digit())
                .fold(0usize, |a, &d| a * 10 + (d - b'0') as usize)
                * 1024
        })
}

/// Reads a small file (at most 4 KiB) into `buf` without allocating; returns the length.
pub fn read_small_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Option<usize> {
    let _errno = ErrnoKeeper::new();
    let fd = open_at(path, libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
    let a = [
        fd as c_long,
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
    ];
    // SAFETY: read into the buffer we own, at most its length.
    let n = unsafe { system_call(libc::SYS_read, &a) };
    close(fd);
    (n >= 0).then_some(n as usize)
}

/// `openat(AT_FDCWD, path, flags, mode)`: the descriptor, or None (`errno` set).
fn open_at(path: &core::ffi::CStr, flags: i32, mode: u32) -> Option<i32> {
    let a = [
        libc::AT_FDCWD as c_long,
        path.as_ptr() as c_long,
        flags as c_long,
        mode as c_long,
    ];
    // SAFETY: openat reads the NUL-terminated path we own.
    let fd = unsafe { system_call(libc::SYS_openat, &a) };
    (fd >= 0).then_some(fd as i32)
}

/// Whether the calling thread is the process's only live thread and its main thread has ended
/// (a zombie until the whole process ends), and if so the exit status the main thread left
/// (`Some(status)`, 0-255); None while any other thread lives, or if `/proc` cannot tell.
///
/// From `/proc/self/stat` (proc(5)): the process's state is its main thread's (`Z` once that
/// thread has ended by `pthread_exit` or a bare `SYS_exit`), `num_threads` (field 20) counts
/// the zombie main thread as well, and `exit_code` (field 52, Linux ≥ 3.5) is its status in
/// `waitpid`'s form. The caller must not be the main thread (then the answer is always None:
/// a live main thread is not a zombie).
pub fn main_thread_ended_alone() -> Option<i32> {
    let _errno = ErrnoKeeper::new();
    let mut buf = [0u8; 1024];
    let n = read_small_file(c"/proc/self/stat", &mut buf)?;
    parse_main_thread_ended_alone(&buf[..n])
}

/// [`main_thread_ended_alone`]'s reading of a `/proc/<pid>/stat` line.
fn parse_main_thread_ended_alone(stat: &[u8]) -> Option<i32> {
    // The command name (field 2) may hold spaces and parentheses: the fields after it start
    // past its last ')'.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let number = |f: &[u8]| -> Option<u64> {
        (!f.is_empty() && f.iter().all(u8::is_ascii_digit))
            .then(|| f.iter().fold(0u64, |a, &d| a * 10 + u64::from(d - b'0')))
    };
    // Field 3 is the state; fields 20 and 52 are 17 and 32 fields further on.
    let state = fields.next()?;
    let threads = number(fields.nth(16)?)?;
    if state != b"Z" || threads != 2 {
        return None;
    }
    let status = fields.nth(31).and_then(number).unwrap_or(0);
    Some(((status >> 8) & 0xff) as i32)
}

/// Writes the current directory, NUL-terminated, into `buf`; false if it does not fit.
pub fn current_dir(buf: &mut [u8]) -> bool {
    let _errno = ErrnoKeeper::new();
    let a = [buf.as_mut_ptr() as c_long, buf.len() as c_long];
    // SAFETY: getcwd writes at most `buf.len()` bytes into the buffer we own; the kernel's
    // returns the length written, NUL included (libc's, the buffer).
    !buf.is_empty() && unsafe { system_call(libc::SYS_getcwd, &a) } > 0
}

/// Creates (or truncates) `path` for writing, close-on-exec; the descriptor, or None.
pub fn create_file(path: &core::ffi::CStr) -> Option<i32> {
    let _errno = ErrnoKeeper::new();
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    open_at(path, flags, 0o644)
}

/// Closes a descriptor this layer opened.
pub fn close(fd: i32) {
    let _errno = ErrnoKeeper::new();
    // SAFETY: the caller owns `fd`.
    unsafe { system_call(libc::SYS_close, &[fd as c_long]) };
}

/// The process id.
pub fn pid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { system_call(libc::SYS_getpid, &[]) as u32 }
}

/// Number of CPU ids the kernel may ever report: one past the highest id in
/// `/sys/devices/system/cpu/possible` (e.g. `0-1` → 2, `0-3,8-9` → 10). Falls back to the
/// configured count and then to 1024 if the file cannot be read.
pub fn possible_cpus() -> usize {
    let mut buf = [0u8; 256];
    if let Some(n) = read_small_file(c"/sys/devices/system/cpu/possible", &mut buf) {
        let mut max = None;
        let mut cur: Option<usize> = None;
        for &b in &buf[..n] {
            if b.is_ascii_digit() {
                cur = Some(cur.unwrap_or(0) * 10 + (b - b'0') as usize);
            } else {
                if let Some(c) = cur.take() {
                    max = Some(max.map_or(c, |m: usize| m.max(c)));
                }
            }
        }
        if let Some(c) = cur {
            max = Some(max.map_or(c, |m: usize| m.max(c)));
        }
        if let Some(m) = max {
            return m + 1;
        }
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    if n > 0 {
        n as usize
    } else {
        1024
    }
}

/// Writes a message as one whole line where the allocator's lines go (see `output`), with one
/// `write(2)`, without allocating.
pub fn write_stderr<const N: usize>(m: &Msg<N>) {
    super::output::write_line(m.line().as_bytes());
}

/// Prints the message on descriptor 2 as it is now (as glibc's own fatal messages go) and
/// aborts the process (SIGABRT), without allocating.
pub fn abort_with<const N: usize>(m: &Msg<N>) -> ! {
    super::output::write_stderr_now(m.line().as_bytes());
    // SAFETY: abort never returns and has no preconditions.
    unsafe { libc::abort() }
}

/// The calling thread's CPU (the `getcpu` system call); 0 if unknown.
pub fn current_cpu() -> usize {
    let _errno = ErrnoKeeper::new();
    let mut cpu: u32 = 0;
    // SAFETY: getcpu writes the CPU number into the u32 we own; the node pointer is null.
    let r = unsafe { system_call(libc::SYS_getcpu, &[&raw mut cpu as c_long]) };
    if r < 0 {
        0
    } else {
        cpu as usize
    }
}

/// Registers the process for the rseq fence
/// (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ`); whether the kernel accepted (it needs
/// Linux 5.10).
pub fn membarrier_register_rseq() -> bool {
    // SAFETY: a registration command with no memory arguments.
    unsafe { system_call(libc::SYS_membarrier, &[1 << 8]) == 0 }
}

/// The rseq fence, `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`: when it returns, every
/// rseq critical section of this process that was running (or preempted) when it was called
/// has either committed, with its stores visible to the caller, or been aborted and will
/// restart. Only after [`membarrier_register_rseq`] succeeded.
pub fn membarrier_rseq() {
    // SAFETY: a command with no memory arguments.
    unsafe { system_call(libc::SYS_membarrier, &[1 << 7]) };
}

/// The `rseq` system call: registers (`unregister` false) or unregisters the calling thread's
/// rseq area `area` of `len` bytes with abort signature `sig`; the `errno` on failure.
///
/// # Safety
/// Registering: `area` must stay valid, and be used only as the kernel's ABI says, until it is
/// unregistered or the thread exits. Unregistering: the same area, length and signature.
pub unsafe fn rseq(area: *mut u8, len: u32, unregister: bool, sig: u32) -> Result<(), i32> {
    let a = [
        area as c_long,
        len as c_long,
        unregister as c_long,
        sig as c_long,
    ];
    // SAFETY: forwarded contract.
    let r = unsafe { system_call(libc::SYS_rseq, &a) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the OS layer's calls answer is the allocator's business, not the caller's `errno`:
    /// a futex wait that finds the word changed (`EAGAIN`, a contended lock's common case),
    /// refused advice (`EINVAL`) and a refused mapping (`ENOMEM`) each leave it as it was. (The
    /// wake is called too, but a wake on a valid word sets no `errno`, so its check cannot fail
    /// here; under qemu-user `madvise` may do nothing, and its check then tests nothing.)
    /// Session 70's second review found a contended lock's `EAGAIN` in the `errno` of
    /// successful `malloc` calls (conformance `errno_contended.c` checks the same end to end).
    /// One mode only: the OS layer is below the per-CPU layer.
    #[test]
    fn system_calls_keep_errno() {
        let word = AtomicU32::new(1);
        set_errno(77);
        // The word is not 0: the wait returns at once.
        futex_wait(&word, 0);
        assert_eq!(errno(), 77, "futex_wait");
        futex_wake(&word, 1);
        assert_eq!(errno(), 77, "futex_wake");
        // Not page-aligned: refused.
        advise_huge(12_345 as *mut u8, 4096, true);
        assert_eq!(errno(), 77, "advise_huge");
        // More than a 47-bit address space holds: refused.
        assert!(map(1 << 48, OS_PAGE).is_err());
        assert_eq!(errno(), 77, "map");
    }

    /// `/proc/self/stat` lines as the kernel writes them: the state and thread count decide,
    /// the exit status comes from the last field, and a command name holding spaces and
    /// parentheses does not shift the fields. The first line was read on this machine from a
    /// worker after `main` called `pthread_exit` (session 72).
    #[test]
    fn a_stat_line_tells_whether_the_main_thread_ended_alone() {
        use std::{format, string::String};
        let tail = "23317 23317 22619 0 -1 4227084 92 0 2 0 0 0 0 0 20 0 2 0 2050060 0 0 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0";
        let line = |comm: &str, state: &str, threads: u32, code: u32| {
            let t = tail.replacen(" 20 0 2 0 ", &format!(" 20 0 {threads} 0 "), 1);
            format!("23325 ({comm}) {state} {t} {code}\n")
        };
        let read = |l: String| parse_main_thread_ended_alone(l.as_bytes());
        assert_eq!(read(line("z", "Z", 2, 0)), Some(0));
        assert_eq!(read(line("z", "Z", 2, 3 << 8)), Some(3));
        assert_eq!(read(line("a) Z (b", "Z", 2, 7 << 8)), Some(7));
        assert_eq!(read(line("z", "Z", 3, 0)), None, "another thread lives");
        assert_eq!(read(line("z", "S", 2, 0)), None, "the main thread lives");
        assert_eq!(
            read(line("a) Z 1 (b", "R", 2, 0)),
            None,
            "the name's ')' misread"
        );
        assert_eq!(read("23325 (z) Z 1 2".into()), None, "a short line");
        // Our own process: this test's thread is alive and not alone (the harness's main).
        assert_eq!(main_thread_ended_alone(), None);
    }
}
