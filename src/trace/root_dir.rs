//! The trace root as an open directory, for the files the server writes into every task's folder. Creating a
//! task's folder and its `input.json` and `output.json` relative to the open root spares the kernel a walk of the
//! root's whole path for each of them (three per task).

use std::{
    ffi::CString,
    fs::File,
    io::{self, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

#[derive(Debug)]
pub struct RootDir(OwnedFd);

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

impl RootDir {
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = c_name(&path.to_string_lossy())?;
        // SAFETY: `path` is a valid C string; the returned descriptor, if any, is ours alone.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the folder `name` under the root; one that exists already is fine.
    pub fn make_dir(&self, name: &str) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: the descriptor is open for the life of `self` and `name` is a valid C string.
        if unsafe { libc::mkdirat(self.0.as_raw_fd(), name.as_ptr(), 0o755) } == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            err if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            err => Err(err),
        }
    }

    /// Writes `bytes` as the file `relative` (below the root), replacing what it held.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> io::Result<()> {
        let name = c_name(relative)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
        // SAFETY: as in `make_dir`; the mode is passed as the variadic argument `openat` expects with O_CREAT.
        let fd = unsafe { libc::openat(self.0.as_raw_fd(), name.as_ptr(), flags, 0o644 as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.write_all(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_files_in_folders_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        root.make_dir("task").unwrap();
        root.make_dir("task").unwrap();
        root.write("task/input.json", b"{\"a\": 1}").unwrap();
        root.write("task/input.json", b"{}").unwrap();
        assert_eq!(std::fs::read(dir.path().join("task/input.json")).unwrap(), b"{}");
        let missing = root.write("nowhere/output.json", b"{}").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(root.write("bad\0name", b"").is_err());
        assert!(RootDir::open(&dir.path().join("task/input.json")).is_err(), "a file is not a root");
    }
}
