//! Files out of a container, without the host ever opening a path the container could write.
//!
//! Podman's archive endpoint (`GET /containers/{id}/archive?path=DIR`) reads the directory
//! inside the container's root (chrooted, so a symlink there resolves inside the container)
//! and streams a tar. This module reads that tar and keeps only what the caller asks for:
//! regular files directly inside the directory whose names pass a filter. Symlinks, hard
//! links, devices, FIFOs, directories and anything nested are skipped (and reported), names
//! are single path components, and every kept file is created new (`O_CREAT|O_EXCL|
//! O_NOFOLLOW`) in a host directory no container sees, so nothing in the tar can make the
//! host follow a link, block on a FIFO or write outside that directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::core::error::{Error, Result};

/// A file taken out of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

/// An entry left in the archive, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub why: String,
}

/// What [`extract_files`] took and left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extraction {
    pub files: Vec<Extracted>,
    pub skipped: Vec<Skipped>,
}

/// The single file name of an entry directly inside the archived directory: podman names
/// entries `<dir name>/<file>`; the directory itself and nested entries give `None`.
fn child_name(path: &Path) -> Option<String> {
    let mut parts = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir));
    let _top = parts.next()?;
    let name = match parts.next()? {
        Component::Normal(name) => name.to_str()?.to_owned(),
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(name)
}

/// Extract, from the tar `reader` of a directory archived by podman, the regular files
/// directly in that directory whose names pass `wanted`, into `dest` (which must exist and be
/// a directory only the host writes). A file larger than `max_bytes` is skipped. Files are
/// created with mode 0644 and never replace anything.
pub fn extract_files<R: Read>(
    reader: R,
    wanted: &dyn Fn(&str) -> bool,
    dest: &Path,
    max_bytes: Option<u64>,
) -> Result<Extraction> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Extraction::default();
    let entries = archive
        .entries()
        .map_err(|e| Error::io("reading a container archive", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading a container archive", e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let Some(name) = entry.path().ok().as_deref().and_then(child_name) else {
            continue;
        };
        if !wanted(&name) {
            continue;
        }
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            let what = if kind.is_symlink() {
                "a symlink"
            } else if kind.is_hard_link() {
                "a hard link"
            } else if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_dir() {
                "a directory"
            } else if kind.is_character_special() || kind.is_block_special() {
                "a device"
            } else {
                "not a regular file"
            };
            out.skipped.push(Skipped {
                name: shown,
                why: format!("{what}, not a regular file"),
            });
            continue;
        }
        let size = entry.size();
        keep(&mut out, name, shown, &mut entry, size, dest, max_bytes)?;
    }
    Ok(out)
}

/// The last rule of both extractions: a regular file `name` of `size` bytes, read from
/// `source`, is created new (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0644) in `dest`, unless it is
/// over `max_bytes` or a file of that name was already taken (then skipped as `shown`).
fn keep(
    out: &mut Extraction,
    name: String,
    shown: String,
    source: &mut impl Read,
    size: u64,
    dest: &Path,
    max_bytes: Option<u64>,
) -> Result<()> {
    if let Some(max) = max_bytes.filter(|max| size > *max) {
        out.skipped.push(Skipped {
            name: shown,
            why: format!("{size} bytes, over the limit of {max} bytes"),
        });
        return Ok(());
    }
    let path = dest.join(&name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            out.skipped.push(Skipped {
                name: shown,
                why: "a file of that name was already taken".to_owned(),
            });
            return Ok(());
        }
        Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
    };
    let copied = copy_exact(source, &mut file, size)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    out.files.push(Extracted {
        name,
        path,
        size: copied,
    });
    Ok(())
}

/// [`extract_files`] for a staging directory a container can write (a bind mount of the
/// host's): the same rules, without a tar. The directory is opened without following a link
/// (it is the task's own); each entry is opened with `O_NOFOLLOW|O_NONBLOCK` relative to it
/// and taken only if `fstat` says it is a regular file with no other name (a symlink, FIFO,
/// directory, device, socket or hard link is skipped and reported, and nothing blocks). Call
/// it when no process of the container can write the directory any more.
pub fn take_staged(
    dir: &Path,
    wanted: &dyn Fn(&str) -> bool,
    dest: &Path,
    max_bytes: Option<u64>,
) -> Result<Extraction> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    let fail = |what: &str, e: rustix::io::Errno| {
        Error::io(format!("{what} {}", dir.display()), io::Error::from(e))
    };
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("opening", e))?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir_fd).map_err(|e| fail("listing", e))? {
        let entry = entry.map_err(|e| fail("listing", e))?;
        let name = entry.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort();
    let mut out = Extraction::default();
    for raw in names {
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let Ok(name) = std::str::from_utf8(&raw) else {
            if wanted(&shown) {
                out.skipped.push(Skipped {
                    name: shown,
                    why: "a name that is not UTF-8".to_owned(),
                });
            }
            continue;
        };
        if !wanted(name) {
            continue;
        }
        let skip = |out: &mut Extraction, why: String| {
            out.skipped.push(Skipped {
                name: name.to_owned(),
                why,
            })
        };
        let opened = rustix::fs::openat(
            &dir_fd,
            std::ffi::OsStr::from_bytes(&raw),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) => {
                skip(&mut out, "a symlink, not a regular file".to_owned());
                continue;
            }
            Err(e) => {
                skip(
                    &mut out,
                    format!("cannot be opened: {}", io::Error::from(e)),
                );
                continue;
            }
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| fail("inspecting an entry of", e))?;
        let what = match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile if stat.st_nlink > 1 => Some("a hard link"),
            FileType::RegularFile => None,
            FileType::Fifo => Some("a FIFO"),
            FileType::Directory => Some("a directory"),
            FileType::CharacterDevice | FileType::BlockDevice => Some("a device"),
            _ => Some("not a regular file"),
        };
        if let Some(what) = what {
            skip(&mut out, format!("{what}, not a regular file"));
            continue;
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        keep(
            &mut out,
            name.to_owned(),
            name.to_owned(),
            &mut File::from(fd),
            size,
            dest,
            max_bytes,
        )?;
    }
    Ok(out)
}

fn copy_exact(entry: &mut impl Read, file: &mut File, size: u64) -> io::Result<u64> {
    let copied = io::copy(&mut entry.take(size), file)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("archive entry ended after {copied} of {size} bytes"),
        ));
    }
    file.flush()?;
    Ok(copied)
}

/// A blocking `Read` over chunks sent from async code (the archive stream), so the tar is
/// read and written to disk off the runtime's threads.
pub struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    offset: usize,
}

impl ChunkReader {
    pub fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        ChunkReader {
            rx,
            current: Vec::new(),
            offset: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset >= self.current.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.offset = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let rest = self.current.get(self.offset..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(rest.get(..n).unwrap_or_default());
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::buildroot::header::tests::TempDir;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// The tar podman would send for a hostile RPMS directory.
    fn hostile_archive() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = header(tar::EntryType::Directory, 0);
        b.append_data(&mut dir, "RPMS/", io::empty()).unwrap();
        let data = b"good rpm bytes";
        let mut file = header(tar::EntryType::Regular, data.len() as u64);
        b.append_data(&mut file, "RPMS/good-1-1.noarch.rpm", &data[..])
            .unwrap();
        let mut link = header(tar::EntryType::Symlink, 0);
        b.append_link(&mut link, "RPMS/evil-1-1.noarch.rpm", "/etc/shadow")
            .unwrap();
        let mut hard = header(tar::EntryType::Link, 0);
        b.append_link(
            &mut hard,
            "RPMS/hard-1-1.noarch.rpm",
            "RPMS/good-1-1.noarch.rpm",
        )
        .unwrap();
        let mut fifo = header(tar::EntryType::Fifo, 0);
        b.append_data(&mut fifo, "RPMS/fifo-1-1.noarch.rpm", io::empty())
            .unwrap();
        let mut nested = header(tar::EntryType::Regular, 3);
        b.append_data(&mut nested, "RPMS/sub/deep-1-1.noarch.rpm", &b"abc"[..])
            .unwrap();
        let mut other = header(tar::EntryType::Regular, 3);
        b.append_data(&mut other, "RPMS/notes.txt", &b"abc"[..])
            .unwrap();
        let mut big = header(tar::EntryType::Regular, 100);
        b.append_data(&mut big, "RPMS/big-1-1.noarch.rpm", &[0u8; 100][..])
            .unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn only_regular_wanted_files_directly_inside_are_taken() {
        let dir = TempDir::new();
        let wanted = |n: &str| n.ends_with(".rpm");
        let got = extract_files(&hostile_archive()[..], &wanted, &dir.0, Some(50)).unwrap();
        let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["good-1-1.noarch.rpm"]);
        assert_eq!(
            std::fs::read(&got.files[0].path).unwrap(),
            b"good rpm bytes"
        );
        let skipped: Vec<(&str, &str)> = got
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.why.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("RPMS/evil-1-1.noarch.rpm", "a symlink, not a regular file"),
                (
                    "RPMS/hard-1-1.noarch.rpm",
                    "a hard link, not a regular file"
                ),
                ("RPMS/fifo-1-1.noarch.rpm", "a FIFO, not a regular file"),
                (
                    "RPMS/big-1-1.noarch.rpm",
                    "100 bytes, over the limit of 50 bytes"
                ),
            ]
        );
        // Nothing but the one file was created.
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn an_existing_file_or_planted_link_in_the_destination_is_never_written_through() {
        let dir = TempDir::new();
        let target = dir.0.join("target");
        std::fs::write(&target, "host file").unwrap();
        std::os::unix::fs::symlink(&target, dir.0.join("good-1-1.noarch.rpm")).unwrap();
        let got = extract_files(
            &hostile_archive()[..],
            &|n| n.ends_with(".rpm"),
            &dir.0,
            None,
        )
        .unwrap();
        assert!(got.files.iter().all(|f| f.name != "good-1-1.noarch.rpm"));
        assert!(got.skipped.iter().any(|s| s.why.contains("already taken")));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "host file");
    }

    #[test]
    fn a_staging_dir_gives_only_its_regular_wanted_files_and_never_blocks() {
        let staged = TempDir::new();
        let dest = TempDir::new();
        let secret = dest
            .0
            .join("..")
            .join(format!("koji-adjutant-secret-{}", std::process::id()));
        std::fs::write(&secret, "host secret").unwrap();
        let at = |n: &str| staged.0.join(n);
        std::fs::write(at("good-1-1.noarch.rpm"), "good rpm bytes").unwrap();
        std::fs::write(at("notes.txt"), "not wanted").unwrap();
        std::fs::write(at("big-1-1.noarch.rpm"), [0u8; 100]).unwrap();
        std::os::unix::fs::symlink(&secret, at("evil-1-1.noarch.rpm")).unwrap();
        std::fs::write(at("twin"), "linked").unwrap();
        std::fs::hard_link(at("twin"), at("hard-1-1.noarch.rpm")).unwrap();
        std::fs::create_dir(at("dir-1-1.noarch.rpm")).unwrap();
        let fifo = std::ffi::CString::new(
            at("fifo-1-1.noarch.rpm")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a NUL-terminated path
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let got = take_staged(&staged.0, &|n| n.ends_with(".rpm"), &dest.0, Some(50)).unwrap();
        let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["good-1-1.noarch.rpm"]);
        assert_eq!(
            std::fs::read(&got.files[0].path).unwrap(),
            b"good rpm bytes"
        );
        let skipped: Vec<(&str, &str)> = got
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.why.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    "big-1-1.noarch.rpm",
                    "100 bytes, over the limit of 50 bytes"
                ),
                ("dir-1-1.noarch.rpm", "a directory, not a regular file"),
                ("evil-1-1.noarch.rpm", "a symlink, not a regular file"),
                ("fifo-1-1.noarch.rpm", "a FIFO, not a regular file"),
                ("hard-1-1.noarch.rpm", "a hard link, not a regular file"),
            ]
        );
        assert_eq!(std::fs::read_dir(&dest.0).unwrap().count(), 1);
        // the staging dir itself replaced by a link: refused, not followed
        let link = TempDir::new();
        let moved = link.0.join("staged");
        std::os::unix::fs::symlink(&staged.0, &moved).unwrap();
        assert!(take_staged(&moved, &|_| true, &link.0, None).is_err());
        let _ = std::fs::remove_file(&secret);
        for dir in [&staged.0, &dest.0, &link.0] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn a_truncated_archive_is_an_error_not_a_short_file() {
        let dir = TempDir::new();
        let mut bytes = hostile_archive();
        bytes.truncate(512 + 512 + 5);
        assert!(extract_files(&bytes[..], &|_| true, &dir.0, None).is_err());
    }

    #[test]
    fn chunk_reader_reads_across_chunks_and_ends() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(Ok(b"ab".to_vec())).unwrap();
        tx.try_send(Ok(Vec::new())).unwrap();
        tx.try_send(Ok(b"cde".to_vec())).unwrap();
        drop(tx);
        let mut out = String::new();
        ChunkReader::new(rx).read_to_string(&mut out).unwrap();
        assert_eq!(out, "abcde");
    }
}
