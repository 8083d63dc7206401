//! A VFS for the event writer's connection that hands each commit's WAL frames to the kernel in
//! one `pwrite` instead of two per frame.
//!
//! SQLite writes a WAL frame as its 24-byte header, then the page: a commit of 13 frames was 26
//! `pwrite`s, and since a frame (4,120 bytes) straddles the kernel's pages, each page was taken up
//! and put back two or three times. Those writes were a fifth of the writer's CPU in session 19's
//! profile. Here contiguous writes to a WAL file are gathered in memory and written out together:
//! right after the page of a commit frame (a frame whose header gives the database size, see
//! SQLite's WAL format), and before anything else touches the file (a read, a sync, its size, a
//! truncation, a file control, closing it) or the shared memory through which SQLite publishes a
//! commit (`xShm*` on the database file). A failed write is reported by the write of the commit
//! frame's page, so SQLite rolls the transaction back as it would have.
//!
//! Everything else is the default VFS's. Writes are gathered per thread: a connection's calls run
//! on the thread that made them, and the writer's connection never changes thread.

use rusqlite::ffi;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

/// The name the writer's connection opens its database with.
pub const NAME: &str = "switchyard-wal";

/// At most this much is gathered before it is written out anyway.
const MAX_GATHERED: usize = 256 << 10;

/// The most handed to one write of the default VFS: its `seekAndWriteFd` keeps only the low 17
/// bits of the length (a write of exactly 128 KiB writes nothing, which SQLite reports as a full
/// disk).
const MAX_WRITE: usize = 64 << 10;

/// A WAL frame's header: page number, database size after a commit (0 if not a commit), salts,
/// checksums.
const FRAME_HEADER: usize = 24;

#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// The default VFS's file, in the same allocation, after this struct.
    real: *mut ffi::sqlite3_file,
    wal: bool,
}

/// Writes to a WAL file not yet handed to the kernel.
struct Gathered {
    file: *mut ffi::sqlite3_file,
    offset: i64,
    bytes: Vec<u8>,
    /// The last write was a commit frame's header: its page completes the commit.
    commit_next: bool,
}

#[cfg(test)]
thread_local! {
    /// Gathered writes handed to the kernel on this thread (tests only).
    pub static WRITES_OUT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// WAL writes SQLite made on this thread (tests only).
    pub static WRITES_IN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

thread_local! {
    static GATHERED: RefCell<Gathered> = const { RefCell::new(Gathered { file: std::ptr::null_mut(), offset: 0, bytes: Vec::new(), commit_next: false }) };
}

/// Writes out what this thread gathered.
fn flush() -> c_int {
    GATHERED.with(|g| {
        let mut g = g.borrow_mut();
        if g.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let (file, offset) = (g.file, g.offset);
        #[cfg(test)]
        WRITES_OUT.with(|n| n.set(n.get() + 1));
        let mut rc = ffi::SQLITE_OK;
        for (i, chunk) in g.bytes.chunks(MAX_WRITE).enumerate() {
            // SAFETY: `file` is an open WAL file of this thread's connection: a file is flushed
            // before it is closed.
            rc = unsafe { ((*(*file).pMethods).xWrite.expect("xWrite"))(file, chunk.as_ptr().cast(), chunk.len() as c_int, offset + (i * MAX_WRITE) as i64) };
            if rc != ffi::SQLITE_OK {
                break;
            }
        }
        g.bytes.clear();
        g.commit_next = false;
        rc
    })
}

fn real(f: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: SQLite passes the files this VFS opened.
    unsafe { (*f.cast::<File>()).real }
}

fn methods(f: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: an open file's methods live as long as the default VFS.
    unsafe { &*(*real(f)).pMethods }
}

/// Flushes, then calls the default VFS's method; a failed flush is the call's error.
macro_rules! after_flush {
    ($name:ident, $method:ident ( $($arg:ident : $ty:ty),* )) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let rc = flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            unsafe { (methods(f).$method.expect(stringify!($method)))(real(f) $(, $arg)*) }
        }
    };
}

/// Calls the default VFS's method.
macro_rules! pass {
    ($name:ident, $method:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            unsafe { (methods(f).$method.expect(stringify!($method)))(real(f) $(, $arg)*) }
        }
    };
}

after_flush!(x_read, xRead(buf: *mut c_void, amount: c_int, offset: i64));
after_flush!(x_truncate, xTruncate(size: i64));
after_flush!(x_sync, xSync(flags: c_int));
after_flush!(x_file_size, xFileSize(size: *mut i64));
after_flush!(x_lock, xLock(level: c_int));
after_flush!(x_unlock, xUnlock(level: c_int));
after_flush!(x_check_reserved_lock, xCheckReservedLock(out: *mut c_int));
after_flush!(x_file_control, xFileControl(op: c_int, arg: *mut c_void));
after_flush!(x_shm_map, xShmMap(page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
after_flush!(x_shm_lock, xShmLock(offset: c_int, n: c_int, flags: c_int));
after_flush!(x_shm_unmap, xShmUnmap(delete: c_int));
pass!(x_sector_size, xSectorSize() -> c_int);
pass!(x_device_characteristics, xDeviceCharacteristics() -> c_int);
pass!(x_fetch, xFetch(offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int);
pass!(x_unfetch, xUnfetch(offset: i64, page: *mut c_void) -> c_int);

/// A commit is published by the shared memory's header, written around this barrier: what was
/// gathered goes out first (normally nothing is left by then).
unsafe extern "C" fn x_shm_barrier(f: *mut ffi::sqlite3_file) {
    flush();
    unsafe { (methods(f).xShmBarrier.expect("xShmBarrier"))(real(f)) }
}

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    let rc = flush();
    let closed = unsafe { (methods(f).xClose.expect("xClose"))(real(f)) };
    if rc != ffi::SQLITE_OK {
        rc
    } else {
        closed
    }
}

unsafe extern "C" fn x_write(f: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    let file = unsafe { &*f.cast::<File>() };
    if !file.wal {
        return unsafe { (methods(f).xWrite.expect("xWrite"))(file.real, buf, amount, offset) };
    }
    #[cfg(test)]
    WRITES_IN.with(|n| n.set(n.get() + 1));
    // SAFETY: SQLite passes `amount` readable bytes.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), amount as usize) };
    let (contiguous, completes_commit) = GATHERED.with(|g| {
        let g = g.borrow();
        (g.bytes.is_empty() || (g.file == file.real && g.offset + g.bytes.len() as i64 == offset), g.commit_next)
    });
    if !contiguous {
        let rc = flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    let full = GATHERED.with(|g| {
        let mut g = g.borrow_mut();
        if g.bytes.is_empty() {
            g.file = file.real;
            g.offset = offset;
        }
        g.bytes.extend_from_slice(data);
        g.commit_next = data.len() == FRAME_HEADER && data[4..8] != [0; 4];
        g.bytes.len() >= MAX_GATHERED
    });
    if completes_commit || full {
        return flush();
    }
    ffi::SQLITE_OK
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

/// Where the default VFS's file starts within ours.
const REAL_AT: usize = std::mem::size_of::<File>().next_multiple_of(16);

struct Vfs(ffi::sqlite3_vfs);
// SAFETY: registered once and never changed; SQLite reads it from any thread.
unsafe impl Send for Vfs {}
unsafe impl Sync for Vfs {}

static DEFAULT: OnceLock<usize> = OnceLock::new();

unsafe extern "C" fn x_open(_vfs: *mut ffi::sqlite3_vfs, name: *const c_char, f: *mut ffi::sqlite3_file, flags: c_int, out_flags: *mut c_int) -> c_int {
    let default = *DEFAULT.get().expect("registered") as *mut ffi::sqlite3_vfs;
    let file = f.cast::<File>();
    let real = unsafe { f.cast::<u8>().add(REAL_AT) }.cast::<ffi::sqlite3_file>();
    unsafe {
        (*file).base.pMethods = std::ptr::null();
        let rc = ((*default).xOpen.expect("xOpen"))(default, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
            return rc;
        }
        (*file).real = real;
        (*file).wal = flags & ffi::SQLITE_OPEN_WAL != 0;
        (*file).base.pMethods = &METHODS;
    }
    ffi::SQLITE_OK
}

/// Registers the VFS (once; later calls do nothing).
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: SQLite's default VFS outlives the process's use of it; ours is copied from
            // it and leaked, as registration requires.
            unsafe {
                let default = ffi::sqlite3_vfs_find(std::ptr::null());
                if default.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                if (*default).iVersion < 1 || (*default).szOsFile < 1 {
                    return Err("the default VFS is not usable".into());
                }
                DEFAULT.set(default as usize).ok();
                let mut vfs = std::ptr::read(default);
                vfs.szOsFile = (REAL_AT + (*default).szOsFile as usize) as c_int;
                vfs.pNext = std::ptr::null_mut();
                vfs.zName = CStr::from_bytes_with_nul(b"switchyard-wal\0").expect("a C string").as_ptr();
                vfs.xOpen = Some(x_open);
                let vfs: &'static mut Vfs = Box::leak(Box::new(Vfs(vfs)));
                match ffi::sqlite3_vfs_register(&mut vfs.0, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    rc => Err(format!("registering the WAL VFS failed: SQLite error {rc}")),
                }
            }
        })
        .clone()
}
