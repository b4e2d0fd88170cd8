//! Files and directories hodometer creates, made safe for shared hosts (jump boxes, CI runners):
//! created 0600 / 0700 whatever the umask, never through a symlink in the last component, and
//! never taken over from another user. A leaf module.
//!
//! Why: a predictable path in a shared directory lets another local user plant a symlink (and
//! have us write where they choose) or a file of their own (and have us read what they wrote).

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// How an existing private file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Keep its contents and write at the end (logs).
    Append,
    /// Empty it (a file rewritten whole).
    Truncate,
}

/// Opens `path` for writing, creating it with mode 0600. Refuses a symlink as the last
/// component (`O_NOFOLLOW`), a FIFO or socket (opened without blocking, so a FIFO nobody reads
/// cannot hang us, and refused once opened, so nothing is written into one), and a regular
/// file owned by another user; an existing file of ours is set to 0600. Character devices
/// (`/dev/null`, a terminal) are used as they are.
pub fn open_private(path: &Path, existing: Existing) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .write(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
    if existing == Existing::Append {
        options.append(true);
    }
    // O_NOFOLLOW is the guard; looking first only gives the refusal a clear reason (the kernel
    // may answer EACCES rather than ELOOP for a planted link in a sticky directory).
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(symlink_refused(path));
    }
    let file = options
        .open(path)
        .map_err(|error| explain_open(path, error))?;
    // The type is checked on what was opened (fstat), not on the path, which may have changed.
    let meta = file.metadata()?;
    refuse_special(path, &meta, false)?;
    blocking(&file)?;
    if meta.file_type().is_file() {
        refuse_foreign(path, &meta)?;
        if meta.mode() & 0o777 != FILE_MODE {
            file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        }
        // Truncating only after the checks: a file that is not ours is never emptied.
        if existing == Existing::Truncate {
            file.set_len(0)?;
        }
    }
    Ok(file)
}

/// Writes `bytes` (a secret, often) to `path` as a private regular file (see
/// [`open_private`]); a device is refused as well, since nothing private belongs in one.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = open_private(path, Existing::Truncate)?;
    refuse_special(path, &file.metadata()?, true)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Opens `path` for reading without following a symlink in its last component and without
/// blocking on a FIFO, and returns it only when it is a regular file (checked on the opened
/// file): a FIFO, socket or device is refused at once.
pub fn open_regular(path: &Path) -> io::Result<File> {
    open_regular_following(path, false)
}

/// As [`open_regular`], following symlinks when `follow` (the caller has checked where they
/// lead, as for a mounted ConfigMap's `..data` links).
pub fn open_regular_following(path: &Path, follow: bool) -> io::Result<File> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| explain_open(path, error))?;
    refuse_special(path, &file.metadata()?, true)?;
    blocking(&file)?;
    Ok(file)
}

/// Refuses a FIFO or socket, and with `devices_too` anything but a regular file.
fn refuse_special(path: &Path, meta: &std::fs::Metadata, devices_too: bool) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let what = if kind.is_fifo() {
        "is a FIFO"
    } else if kind.is_socket() {
        "is a socket"
    } else if devices_too && (kind.is_char_device() || kind.is_block_device()) {
        "is a device"
    } else if devices_too && !kind.is_file() {
        "is not a regular file"
    } else {
        return Ok(());
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} {what}: refusing to use it", path.display()),
    ))
}

/// Clears `O_NONBLOCK` again: it was only there so that opening could not hang, and a terminal
/// given as a log must not answer `EAGAIN` to a write.
fn blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads a private file of ours: `None` when it does not exist. Refused, with the reason: a
/// symlink, anything but a regular file (a FIFO at once, never waited on), a file of another
/// user, or one that group or others may access (someone else may have written it).
pub fn read_private(path: &Path) -> io::Result<Option<String>> {
    use std::io::Read;
    let mut file = match open_regular(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let meta = file.metadata()?;
    refuse_foreign(path, &meta)?;
    if meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} may be read or written by others (mode {:o}): refusing to trust it; chmod 600 it",
                path.display(),
                meta.mode() & 0o777
            ),
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(Some(text))
}

/// Makes sure `dir` is a directory of ours: created 0700 (its parents as usual) or, when it
/// exists, checked to be a real directory (not a symlink) owned by us.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let created = match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => true,
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => false,
        Err(error) => return Err(error),
    };
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a directory (a symlink?): refusing to use it",
                dir.display()
            ),
        ));
    }
    refuse_foreign(dir, &meta)?;
    // A directory we just made is set exactly (the umask may have cut bits); one the user already
    // had keeps the mode they gave it.
    if created {
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// The per-user state directory: `$XDG_STATE_HOME/hodometer`, else
/// `~/.local/state/hodometer`. Only absolute paths count (the XDG rule), so a relative or empty
/// variable cannot point it into the working directory.
pub fn state_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("state")))
        .map(|base| base.join("hodometer"))
}

/// A new file with a random name in the temporary directory, created 0600 with `O_EXCL`, kept
/// after the process ends (for logs a user reads afterwards).
pub fn fresh_temp_file(prefix: &str, suffix: &str) -> io::Result<(File, PathBuf)> {
    let file = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .permissions(Permissions::from_mode(FILE_MODE))
        .tempfile()?;
    file.keep().map_err(|error| error.error)
}

fn refuse_foreign(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() == me {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to another user (uid {}): refusing to use it",
                path.display(),
                meta.uid()
            ),
        ))
    }
}

fn symlink_refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is a symlink: refusing to follow it", path.display()),
    )
}

/// `ELOOP` from `O_NOFOLLOW` reads "too many levels of symbolic links", and `ENXIO` from a
/// non-blocking open "no such device or address" (a FIFO with no reader): say what they mean.
fn explain_open(path: &Path, error: io::Error) -> io::Error {
    if error.raw_os_error() == Some(libc::ELOOP) {
        symlink_refused(path)
    } else if error.raw_os_error() == Some(libc::ENXIO) {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a FIFO: refusing to use it", path.display()),
        )
    } else {
        io::Error::new(error.kind(), format!("{}: {error}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").mode() & 0o777
    }

    #[test]
    fn new_files_and_dirs_are_private_whatever_the_umask() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // SAFETY: umask only changes this process's creation mask; restored below.
        let old = unsafe { libc::umask(0o002) };
        let file = tmp.path().join("f");
        write_private(&file, b"x").expect("write");
        let dir = tmp.path().join("a/b/state");
        private_dir(&dir).expect("dir");
        unsafe { libc::umask(old) };
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn an_existing_file_of_ours_is_made_private_and_appended_to() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("log");
        std::fs::write(&path, "old\n").expect("write");
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        let mut file = open_private(&path, Existing::Append).expect("open");
        file.write_all(b"new\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old\nnew\n");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("victim");
        std::fs::write(&target, "precious").expect("write");
        let link = tmp.path().join("log");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let error = open_private(&link, Existing::Append).expect_err("a symlink");
        assert!(error.to_string().contains("symlink"), "{error}");
        let error = write_private(&link, b"x").expect_err("a symlink");
        assert!(error.to_string().contains("symlink"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "precious");

        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("chosen"), &dangling).expect("symlink");
        assert!(open_private(&dangling, Existing::Append).is_err());
        assert!(!tmp.path().join("chosen").exists());

        let dir_link = tmp.path().join("dirlink");
        std::os::unix::fs::symlink(tmp.path(), &dir_link).expect("symlink");
        assert!(private_dir(&dir_link).is_err());
    }

    #[test]
    fn devices_given_explicitly_are_used_as_they_are() {
        let mut null = open_private(Path::new("/dev/null"), Existing::Append).expect("open");
        null.write_all(b"x").expect("write");
        assert_eq!(mode(Path::new("/dev/null")), 0o666);
    }

    #[test]
    fn fifos_are_refused_at_once_and_never_written() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fifo = tmp.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o666) }, 0);
        // Nobody reads: opening would block forever without O_NONBLOCK.
        let error = write_private(&fifo, b"key").expect_err("a FIFO");
        assert!(error.to_string().contains("FIFO"), "{error}");
        let error = open_private(&fifo, Existing::Append).expect_err("a FIFO");
        assert!(error.to_string().contains("FIFO"), "{error}");
        let error = open_regular(&fifo).expect_err("a FIFO");
        assert!(error.to_string().contains("FIFO"), "{error}");
        // Someone reads: it opens, and is refused before anything is written.
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("reader");
        let error = write_private(&fifo, b"key").expect_err("a FIFO");
        assert!(error.to_string().contains("FIFO"), "{error}");
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &reader, &mut got);
        assert!(got.is_empty(), "nothing reached the FIFO: {got:?}");
        assert!(write_private(Path::new("/dev/null"), b"x").is_err());
        assert!(open_regular(Path::new("/dev/null")).is_err());
    }

    #[test]
    fn fresh_temp_files_are_private_and_unpredictable() {
        let (_, a) = fresh_temp_file("hodometer-test-", ".log").expect("temp");
        let (_, b) = fresh_temp_file("hodometer-test-", ".log").expect("temp");
        assert_ne!(a, b);
        assert_eq!(mode(&a), 0o600);
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
    }
}
