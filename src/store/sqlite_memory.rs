//! SQLite's own allocations. SQLite calls the C library's `malloc` and, with its memory statistics on (the
//! default), takes a global mutex around every allocation and free. On a SQLite drain both were on the one writer
//! thread that bounds it: `perf` put glibc's allocator (`malloc_consolidate`, `_int_malloc`, `_int_free`) and the
//! mutex at 11% of all samples. Here SQLite allocates through mimalloc, the allocator of the rest of the process,
//! and keeps no statistics (nothing reads them: the server never calls `sqlite3_memory_used`).

use std::ffi::{c_int, c_void};

use libmimalloc_sys as mi;
use libsqlite3_sys as ffi;

/// Configures SQLite's allocator. Must run before the process first uses SQLite, and while no other thread can
/// (SQLite's configuration is not thread-safe): `main` calls it before it starts the runtime. Later calls, and
/// calls after SQLite has started, change nothing; SQLite then keeps its own allocator. True when SQLite took it.
pub fn configure() -> bool {
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: both options take the argument types given here (an int; a pointer to methods, which SQLite copies).
    // SQLite refuses them (SQLITE_MISUSE) once it is initialised, so a late call leaves everything as it was.
    let (statistics, allocator) = unsafe {
        (
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods),
        )
    };
    let taken = statistics == ffi::SQLITE_OK && allocator == ffi::SQLITE_OK;
    if !taken {
        tracing::debug!(statistics, allocator, "SQLite was already in use: its allocator stays as it was");
    }
    taken
}

// SQLite never asks for zero or a negative number of bytes (`sqlite3Malloc` answers those itself), and frees only
// what these functions gave it.

unsafe extern "C" fn malloc(bytes: c_int) -> *mut c_void {
    // SAFETY: any size may be asked of mimalloc; it answers null when it has no memory, as SQLite expects.
    unsafe { mi::mi_malloc(bytes.max(0) as usize) }
}

unsafe extern "C" fn free(block: *mut c_void) {
    // SAFETY: `block` came from `malloc` or `realloc` above, or is null.
    unsafe { mi::mi_free(block) }
}

unsafe extern "C" fn realloc(block: *mut c_void, bytes: c_int) -> *mut c_void {
    // SAFETY: as in `free`; on failure mimalloc leaves `block` as it was and answers null, as SQLite expects.
    unsafe { mi::mi_realloc(block, bytes.max(0) as usize) }
}

unsafe extern "C" fn size(block: *mut c_void) -> c_int {
    // SAFETY: as in `free`. The usable size is at least the size asked for, which is what SQLite needs to know.
    let usable = unsafe { mi::mi_usable_size(block) };
    c_int::try_from(usable).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn roundup(bytes: c_int) -> c_int {
    // What SQLite's own default does: a multiple of 8.
    bytes.saturating_add(7) & !7
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_the_allocator() {
        // SAFETY: the functions are used as SQLite uses them: a block is resized, measured and freed once.
        unsafe {
            let block = malloc(100).cast::<u8>();
            assert!(!block.is_null());
            assert!(size(block.cast()) >= 100);
            std::ptr::write_bytes(block, 7, 100);
            let grown = realloc(block.cast(), 10_000).cast::<u8>();
            assert!(!grown.is_null() && size(grown.cast()) >= 10_000);
            assert_eq!(*grown.add(99), 7, "realloc kept the contents");
            free(grown.cast());
        }
        assert_eq!(unsafe { roundup(1) }, 8);
        assert_eq!(unsafe { roundup(16) }, 16);
    }
}
