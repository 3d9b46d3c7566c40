//! Log files for container output, and the small sinks that route output to them.
//!
//! The predecessor of koji-adjutant lost logs, merged stderr into stdout and dropped output
//! when a queue filled up. The sinks here never drop or reorder bytes on their own; the only
//! loss is the documented, visible one of a size cap.
//!
//! # `FileSink`: one log file
//!
//! * The file is created (truncated if it exists) when the sink is constructed, so a task that
//!   fails before its container prints anything still has its log. Mode 0644 (the hub and
//!   other users may read it), missing parent directories are created with mode 0755; both are
//!   set explicitly, whatever the umask.
//! * Every `write` of the sink ends in plain `write(2)` calls before it returns; nothing is
//!   held back in a user-space buffer between calls. A reader of the growing file therefore
//!   always sees a prefix of the log, as kojid's once-a-second log upload expects.
//! * Without prefixes the bytes are written unchanged: partial lines, very long lines and
//!   invalid UTF-8 pass through, with no per-byte work.
//!
//! ## Line prefixes (`timestamps`, `stream_markers`, for `container.log`)
//!
//! With either option on, each line of output starts with a prefix:
//!
//! ```text
//! 2026-11-22T01:02:03.456Z stdout | a line the container printed on stdout
//! 2026-11-22T01:02:03.457Z stderr | a line printed on stderr
//! ```
//!
//! The prefix is `[<timestamp> ][<stream> ]<kind> `: the timestamp (UTC, milliseconds, the
//! time the sink received the chunk that starts the line) is there when `timestamps` is on,
//! the stream name when `stream_markers` is on, and `<kind>` is always there:
//!
//! * `|` starts a new line of that stream;
//! * `+` continues a line of that stream that the other stream interrupted. When one stream
//!   writes while the file ends in the middle of the other stream's line, the sink ends the
//!   file's line with a `\n` of its own, so the two streams are never glued into one line;
//!   when the first stream resumes, its continuation gets a `+` prefix.
//!
//! So each stream's bytes are recovered by taking, per file line with that stream's marker,
//! the text after the prefix, and dropping the `\n` of a line whose next line of the same
//! stream is a `+` continuation. Only the prefixes and those `\n` are added; the payload
//! bytes are unchanged (invalid UTF-8 included). One ambiguity remains: a stream whose output
//! ends without a newline, after which the other stream writes, reads back with a `\n`.
//!
//! ## Size cap (`cap_bytes`)
//!
//! With a cap the file never exceeds `cap_bytes`, and the NEWEST output is kept. When a write
//! would make the file larger than the cap, the sink writes a new file next to it
//! (`.<name>.koji-adjutant-tmp`) holding a marker line followed by the newest output, about
//! half the cap of it, cut at a line start when one is near, and renames it over the log:
//!
//! ```text
//! [koji-adjutant: 12345678 earlier bytes dropped to keep this log within 10485760 bytes]
//! ...the newest output...
//! ```
//!
//! The count is of log bytes (prefixes included) that are no longer in the file; it is
//! cumulative. The kept part is copied file to file by `std::io::copy` (`copy_file_range(2)`
//! in the kernel, or a small fixed buffer): memory use does not depend on the output or the
//! cap. Each rewrite copies at most half a cap and is followed by at least
//! about half a cap of new output, so the amortised cost is one extra copy of the output.
//!
//! ## What an incremental uploader sees
//!
//! kojid's `BuildRootLogs.sync_log` (builder/kojid) stats each log once a second and uploads
//! from its open file object's offset to EOF with `koji.daemon.incremental_upload`, which
//! sends 64 KiB chunks with their offsets. It reopens the file and uploads again from offset 0
//! when the inode changed or the size shrank; the hub's `uploadFile` truncates a `.log` file
//! when it receives offset 0 (and `rawUpload(..., overwrite=True)` truncates at the offset),
//! so the hub's copy becomes the new file.
//!
//! * Without a rewrite the file only grows, and every byte below its size is final.
//! * A rewrite never truncates the file in place: the old file is replaced atomically by
//!   `rename(2)`. A reader holding the old descriptor keeps a consistent view of the old file
//!   (which simply stops growing); the path never shows a short or half-written file. The
//!   new file has a new inode and is normally smaller: the reader must notice, reopen the
//!   path and upload from offset 0 (kojid's `sync_log` does exactly that).
//! * `LogState` (from [`FileSink::state`]) tells the same without `stat`: `generation` is
//!   incremented after each rename, and `finished` is set after the last byte was written (by
//!   `finish`, or when the sink is dropped). An uploader loop: remember the generation with
//!   the open file; when the generation changed, reopen and upload from 0; when it sees
//!   `finished`, read once more to EOF and stop. A rename between reading the generation and
//!   opening the file only causes one extra upload from 0 on the next round.
//! * A log that keeps overflowing is re-uploaded whole (at most `cap_bytes`) once per rewrite,
//!   that is about once per half cap of new output.
//!
//! # Other sinks
//!
//! [`Tee`] feeds several sinks, and [`TextLineSplitter`]
//! turns chunks into lines for a sink that logs lines (the Python `logging` sink).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::error::{Error, Result, SinkFailure};
use crate::core::sink::{OutputSink, Stream};

/// Log files are readable by other users (the hub reads what kojid uploads, admins read the
/// builder's copies).
const LOG_FILE_MODE: u32 = 0o644;
const LOG_DIR_MODE: u32 = 0o755;
/// Prefixed output is gathered up to this size before it is written, so that a chunk of many
/// short lines costs one `write(2)`, not one per line.
const PREFIX_BATCH_BYTES: usize = 64 * 1024;
/// How far past the cut point a cap rewrite looks for a line start.
const LINE_ALIGN_WINDOW: u64 = 4096;

/// Options of a [`FileSink`]; the default is an uncapped log of the raw bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSinkOptions {
    /// Largest size of the file in bytes; on overflow the oldest output is dropped (see the
    /// module docs). At least [`FileSink::MIN_CAP_BYTES`].
    pub cap_bytes: Option<u64>,
    /// Prefix each line with the UTC time it arrived.
    pub timestamps: bool,
    /// Prefix each line with the stream it came from (`stdout` / `stderr`).
    pub stream_markers: bool,
}

impl FileSinkOptions {
    /// A task's `container.log`: every byte of container output, each line stamped with the
    /// time it arrived and the stream it came from.
    pub fn container_log(cap_bytes: Option<u64>) -> Self {
        FileSinkOptions {
            cap_bytes,
            timestamps: true,
            stream_markers: true,
        }
    }
}

/// A consistent view of a log's progress, read from [`LogState::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSnapshot {
    /// Bytes of log produced so far (prefixes included, drop marker excluded): the size the
    /// file would have without a cap.
    pub bytes_written_total: u64,
    /// Oldest bytes of the log no longer in the file because of the cap. The file holds the
    /// marker line followed by the log bytes `bytes_dropped..bytes_written_total`.
    pub bytes_dropped: u64,
    /// Number of times the file was replaced by a cap rewrite.
    pub generation: u64,
    /// No more bytes will be written: `finish` was called or the sink was dropped.
    pub finished: bool,
}

/// Shared, cheaply cloned progress of one [`FileSink`], for an uploader running beside it
/// (the bindings hand it to Python). Values are published after the bytes they describe are
/// in the file.
#[derive(Debug, Clone)]
pub struct LogState {
    inner: Arc<LogStateInner>,
}

#[derive(Debug)]
struct LogStateInner {
    path: PathBuf,
    progress: Mutex<LogSnapshot>,
}

impl LogState {
    fn new(path: PathBuf) -> Self {
        LogState {
            inner: Arc::new(LogStateInner {
                path,
                progress: Mutex::new(LogSnapshot::default()),
            }),
        }
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// All counters at once, consistent with each other.
    pub fn snapshot(&self) -> LogSnapshot {
        // A poisoned lock still holds a valid snapshot (it is replaced whole).
        match self.inner.progress.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn publish(&self, snapshot: LogSnapshot) {
        match self.inner.progress.lock() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}

/// Per-stream line state of a prefixed log (see the module docs for the format).
#[derive(Debug, Clone, Copy)]
struct LinePrefixer {
    timestamps: bool,
    stream_markers: bool,
    /// The stream whose line the file currently ends in the middle of.
    open_line: Option<Stream>,
    /// Per stream: its last byte was not a newline, so its next byte continues a line.
    stdout_mid_line: bool,
    stderr_mid_line: bool,
}

impl LinePrefixer {
    fn new(options: &FileSinkOptions) -> Option<Self> {
        (options.timestamps || options.stream_markers).then_some(LinePrefixer {
            timestamps: options.timestamps,
            stream_markers: options.stream_markers,
            open_line: None,
            stdout_mid_line: false,
            stderr_mid_line: false,
        })
    }

    fn mid_line(&mut self, stream: Stream) -> &mut bool {
        match stream {
            Stream::Stdout => &mut self.stdout_mid_line,
            Stream::Stderr => &mut self.stderr_mid_line,
        }
    }

    /// Appends what must precede the next byte of `stream`: nothing when it continues the
    /// file's open line, else an optional `\n` ending the other stream's line and a prefix.
    fn start_segment(&mut self, out: &mut Vec<u8>, stream: Stream, stamp: &mut Option<String>) {
        if self.open_line == Some(stream) {
            return;
        }
        if self.open_line.is_some() {
            out.push(b'\n');
        }
        if self.timestamps {
            let stamp = stamp.get_or_insert_with(|| format_timestamp(SystemTime::now()));
            out.extend_from_slice(stamp.as_bytes());
            out.push(b' ');
        }
        if self.stream_markers {
            out.extend_from_slice(stream.name().as_bytes());
            out.push(b' ');
        }
        let kind: &[u8] = if *self.mid_line(stream) { b"+ " } else { b"| " };
        out.extend_from_slice(kind);
        self.open_line = Some(stream);
    }

    /// Records that a segment of `stream` was written, ending with a newline or not.
    fn end_segment(&mut self, stream: Stream, ends_line: bool) {
        *self.mid_line(stream) = !ends_line;
        self.open_line = if ends_line { None } else { Some(stream) };
    }
}

/// Writes one log file; see the module docs for the format, the cap and what a reader of the
/// growing file sees.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
    cap_bytes: Option<u64>,
    prefixer: Option<LinePrefixer>,
    /// Prefixed output waiting for its `write(2)`; always empty between calls of `write`.
    batch: Vec<u8>,
    /// Current size of the file: `marker_len + (written - dropped)`.
    file_len: u64,
    /// Length of the drop marker at the start of the file (0 before the first rewrite).
    marker_len: u64,
    written: u64,
    dropped: u64,
    generation: u64,
    finished: bool,
    state: LogState,
}

impl FileSink {
    /// Smallest accepted cap: room for the drop marker and some output.
    pub const MIN_CAP_BYTES: u64 = 4096;

    /// Creates (or truncates) the log file at `path`, creating missing parent directories.
    ///
    /// `path` may also name a FIFO or a character device (for debugging, `/dev/stdout`); those
    /// are opened as they are and accept no cap.
    ///
    /// # Errors
    ///
    /// `Error::InvalidSpec` for a cap below [`Self::MIN_CAP_BYTES`] or on a file that is not a
    /// regular file; `Error::Io`, naming the path, when a directory or the file cannot be
    /// created.
    pub fn create(path: impl Into<PathBuf>, options: FileSinkOptions) -> Result<Self> {
        Self::open(path.into(), options, 0)
    }

    /// [`FileSink::create`] for a log in a directory a container can write (createrepo's
    /// work dir): a symlink planted at `path` is never followed (the open fails), so the
    /// truncation that starts a log cannot reach another file.
    pub fn create_no_follow(path: impl Into<PathBuf>, options: FileSinkOptions) -> Result<Self> {
        Self::open(path.into(), options, libc::O_NOFOLLOW)
    }

    fn open(path: PathBuf, options: FileSinkOptions, flags: i32) -> Result<Self> {
        if let Some(cap) = options.cap_bytes {
            if cap < Self::MIN_CAP_BYTES {
                return Err(Error::invalid(format!(
                    "log cap for {} is {cap} bytes; it must be at least {} bytes",
                    path.display(),
                    Self::MIN_CAP_BYTES
                )));
            }
        }
        create_parent_dirs(&path)?;
        let file = OpenOptions::new()
            .read(options.cap_bytes.is_some())
            .write(true)
            .create(true)
            .mode(LOG_FILE_MODE)
            .custom_flags(flags)
            .open(&path)
            .map_err(|e| Error::io(format!("creating log {}", path.display()), e))?;
        let is_regular = file
            .metadata()
            .map_err(|e| Error::io(format!("inspecting log {}", path.display()), e))?
            .is_file();
        if is_regular {
            prepare_regular_log(&file)
                .map_err(|e| Error::io(format!("creating log {}", path.display()), e))?;
        } else if options.cap_bytes.is_some() {
            return Err(Error::invalid(format!(
                "log {} is not a regular file and cannot be capped",
                path.display()
            )));
        }
        let state = LogState::new(path.clone());
        Ok(FileSink {
            path,
            file,
            cap_bytes: options.cap_bytes,
            prefixer: LinePrefixer::new(&options),
            batch: Vec::new(),
            file_len: 0,
            marker_len: 0,
            written: 0,
            dropped: 0,
            generation: 0,
            finished: false,
            state,
        })
    }

    /// The log's shared progress, for an uploader.
    pub fn state(&self) -> LogState {
        self.state.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn publish(&self) {
        self.state.publish(LogSnapshot {
            bytes_written_total: self.written,
            bytes_dropped: self.dropped,
            generation: self.generation,
            finished: self.finished,
        });
    }

    /// Writes `data` with line prefixes, in batches of about `PREFIX_BATCH_BYTES`.
    fn write_prefixed(
        &mut self,
        mut prefixer: LinePrefixer,
        stream: Stream,
        data: &[u8],
    ) -> Result<()> {
        let mut stamp = None;
        let mut rest = data;
        let mut result = Ok(());
        while !rest.is_empty() {
            prefixer.start_segment(&mut self.batch, stream, &mut stamp);
            let (segment, tail, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                Some(newline) => match rest.split_at_checked(newline + 1) {
                    Some((segment, tail)) => (segment, tail, true),
                    None => (rest, &[][..], true),
                },
                None => (rest, &[][..], false),
            };
            prefixer.end_segment(stream, ends_line);
            rest = tail;
            if self.batch.len() + segment.len() <= PREFIX_BATCH_BYTES {
                self.batch.extend_from_slice(segment);
                continue;
            }
            // A long segment is written from the caller's buffer rather than copied.
            result = self.commit_batch().and_then(|()| self.commit(segment));
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = self.commit_batch();
        }
        self.batch.clear();
        self.prefixer = Some(prefixer);
        result
    }

    fn commit_batch(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let result = self.commit(&batch);
        self.batch = batch;
        self.batch.clear();
        result
    }

    /// Adds `bytes` to the log: appended, or through a cap rewrite when they do not fit.
    fn commit(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self.cap_bytes {
            Some(cap) if self.file_len.saturating_add(bytes.len() as u64) > cap => {
                self.rewrite_keeping_newest(cap, bytes)
            }
            _ => self
                .append(bytes)
                .map_err(|e| Error::io(format!("writing log {}", self.path.display()), e)),
        }
    }

    /// `write_all` that keeps the counters exact even when a write fails half-way.
    fn append(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.file.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.file_len += n as u64;
                    self.written += n as u64;
                    bytes = bytes.get(n..).unwrap_or_default();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Replaces the file with the drop marker and the newest output, `data` included.
    fn rewrite_keeping_newest(&mut self, cap: u64, data: &[u8]) -> Result<()> {
        let context = || {
            format!(
                "rewriting log {} to keep it within {cap} bytes",
                self.path.display()
            )
        };
        let data_len = data.len() as u64;
        let total = self.written + data_len;
        // Keep half a cap, or all of a chunk larger than that (up to the cap).
        let keep = cap
            .min(data_len.max(cap / 2))
            .saturating_sub(marker_reserve());
        let start = total.saturating_sub(keep).max(self.dropped);
        let start = self
            .align_to_line_start(start, total, data)
            .map_err(|e| Error::io(context(), e))?;
        let marker = drop_marker(start, cap);
        let temp = temp_path(&self.path).ok_or_else(|| {
            Error::invalid(format!("log path {} has no file name", self.path.display()))
        })?;
        let replaced = self
            .write_replacement(&temp, marker.as_bytes(), start, data)
            .and_then(|file| fs::rename(&temp, &self.path).map(|()| file));
        let file = match replaced {
            Ok(file) => file,
            Err(e) => {
                // Best effort: the error that matters is `e`.
                let _ = fs::remove_file(&temp);
                return Err(Error::io(context(), e));
            }
        };
        self.file = file;
        self.marker_len = marker.len() as u64;
        self.file_len = self.marker_len + (total - start);
        self.written = total;
        self.dropped = start;
        self.generation += 1;
        tracing::debug!(
            path = %self.path.display(),
            dropped = start,
            generation = self.generation,
            "log reached its cap; kept the newest output"
        );
        Ok(())
    }

    /// Moves a cut point forward to the start of a line when one starts within
    /// `LINE_ALIGN_WINDOW` bytes, so the kept output begins with a whole line.
    fn align_to_line_start(&self, start: u64, total: u64, data: &[u8]) -> io::Result<u64> {
        if start <= self.dropped {
            return Ok(start);
        }
        // Look from the byte before the cut: if it is a newline the cut is already aligned.
        let from = start - 1;
        let window = self.read_log_range(from, LINE_ALIGN_WINDOW.min(total - from), data)?;
        match window.iter().position(|&b| b == b'\n') {
            Some(newline) if from + newline as u64 + 1 < total => Ok(from + newline as u64 + 1),
            _ => Ok(start),
        }
    }

    /// Reads `len` bytes of the log from position `from` (counted like `written`), from the
    /// file and then from `data`, the bytes being added.
    fn read_log_range(&self, from: u64, len: u64, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut range = Vec::new();
        if from < self.written {
            let in_file = usize::try_from(len.min(self.written - from)).unwrap_or(usize::MAX);
            range.resize(in_file, 0);
            self.file
                .read_exact_at(&mut range, self.file_offset(from))?;
        }
        let skip = usize::try_from(from.saturating_sub(self.written)).unwrap_or(usize::MAX);
        let still = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .saturating_sub(range.len());
        range.extend(data.iter().skip(skip).take(still));
        Ok(range)
    }

    /// Offset in the current file of log position `position` (`dropped <= position <= written`).
    fn file_offset(&self, position: u64) -> u64 {
        self.marker_len + (position - self.dropped)
    }

    /// Writes the replacement file: the marker, the kept part of the current file, `data`.
    fn write_replacement(
        &self,
        temp: &Path,
        marker: &[u8],
        start: u64,
        data: &[u8],
    ) -> io::Result<File> {
        // Never write through whatever is at the temporary name (a link planted beside the
        // log, a leftover): remove it, then create a new file without following links.
        match fs::remove_file(temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(LOG_FILE_MODE)
            .open(temp)?;
        out.set_permissions(Permissions::from_mode(LOG_FILE_MODE))?;
        out.write_all(marker)?;
        if start < self.written {
            let offset = self.file_offset(start);
            let len = self.file_len.saturating_sub(offset);
            let mut old = &self.file;
            // The old file's offset is where its next write goes: put it back in any case.
            let copied = old
                .seek(io::SeekFrom::Start(offset))
                .and_then(|_| io::copy(&mut old.take(len), &mut out));
            old.seek(io::SeekFrom::End(0))?;
            if copied? != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the log is shorter than the sink wrote (changed by someone else?)",
                ));
            }
        }
        let skip = usize::try_from(start.saturating_sub(self.written)).unwrap_or(usize::MAX);
        out.write_all(data.get(skip..).unwrap_or_default())?;
        Ok(out)
    }
}

impl OutputSink for FileSink {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        if self.finished {
            return Err(format!("log {}: write after finish", self.path.display()).into());
        }
        if data.is_empty() {
            return Ok(());
        }
        let result = match self.prefixer {
            Some(prefixer) => self.write_prefixed(prefixer, stream, data),
            None => self.commit(data),
        };
        // Published even after an error: the counters describe what did reach the file.
        self.publish();
        result.map_err(|e| Box::new(e) as SinkFailure)
    }

    /// Marks the log finished. Nothing is buffered, so there is nothing to flush; later
    /// writes are refused.
    fn finish(&mut self) -> Result<(), SinkFailure> {
        self.finished = true;
        self.publish();
        Ok(())
    }
}

impl Drop for FileSink {
    /// A dropped sink writes no more, so an uploader waiting for `finished` can stop.
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            self.publish();
        }
    }
}

/// Empties a freshly opened regular log and gives it its mode whatever the umask (an existing
/// file keeps its old mode on `open`).
fn prepare_regular_log(file: &File) -> io::Result<()> {
    file.set_len(0)?;
    file.set_permissions(Permissions::from_mode(LOG_FILE_MODE))
}

/// Creates the missing ancestors of `path`'s parent, top down, each with mode 0755.
fn create_parent_dirs(path: &Path) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let mut missing = Vec::new();
    for dir in parent.ancestors() {
        if dir.as_os_str().is_empty() {
            break;
        }
        match fs::symlink_metadata(dir) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(dir),
            Err(e) => return Err(dir_error(dir, path, e)),
        }
    }
    for dir in missing.into_iter().rev() {
        match DirBuilder::new().mode(LOG_DIR_MODE).create(dir) {
            Ok(()) => fs::set_permissions(dir, Permissions::from_mode(LOG_DIR_MODE))
                .map_err(|e| dir_error(dir, path, e))?,
            // Created by someone else meanwhile: fine, it is not ours to chmod.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(dir_error(dir, path, e)),
        }
    }
    Ok(())
}

fn dir_error(dir: &Path, log: &Path, source: io::Error) -> Error {
    Error::io(
        format!(
            "creating directory {} for log {}",
            dir.display(),
            log.display()
        ),
        source,
    )
}

/// Hidden name (`kojid` globs `*.log`, which skips dot files) in the log's directory, so
/// that `rename(2)` replaces the log atomically.
fn temp_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(".koji-adjutant-tmp");
    Some(path.with_file_name(temp_name))
}

/// The line at the start of a capped log that says how much was dropped.
fn drop_marker(dropped: u64, cap: u64) -> String {
    format!(
        "[koji-adjutant: {dropped} earlier bytes dropped to keep this log within {cap} bytes]\n"
    )
}

/// The longest marker there can be; a rewrite keeps room for it.
fn marker_reserve() -> u64 {
    drop_marker(u64::MAX, u64::MAX).len() as u64
}

/// Formats `time` as UTC with milliseconds: `2026-11-22T01:02:03.456Z` (times before 1970
/// are shown as the epoch).
pub fn format_timestamp(time: SystemTime) -> String {
    // chrono (already in the tree through podman-api) formats the calendar; times before
    // 1970 cannot come from a clock here, and show as the epoch.
    let time = time.max(UNIX_EPOCH);
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Feeds every chunk to several sinks, in order.
///
/// When a sink fails, the others still get the chunk (a log file keeps the output that made,
/// say, the Python callback fail) and the first error is returned; later errors of the same
/// chunk are logged. The run that feeds the tee aborts on that error, and `finish` still
/// reaches every sink, returning the first error.
#[derive(Default)]
pub struct Tee {
    sinks: Vec<Box<dyn OutputSink>>,
}

impl Tee {
    pub fn new(sinks: Vec<Box<dyn OutputSink>>) -> Self {
        Tee { sinks }
    }
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

/// Keeps the first error of a series of sink calls, logging the later ones.
fn first_error(
    first: &mut Option<SinkFailure>,
    result: Result<(), SinkFailure>,
    what: &'static str,
) {
    if let Err(e) = result {
        if first.is_some() {
            tracing::warn!(error = %e, "another sink failed to {what} too");
        } else {
            *first = Some(e);
        }
    }
}

impl OutputSink for Tee {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        let mut failure = None;
        for sink in &mut self.sinks {
            first_error(&mut failure, sink.write(stream, data), "write");
        }
        failure.map_or(Ok(()), Err)
    }

    fn finish(&mut self) -> Result<(), SinkFailure> {
        let mut failure = None;
        for sink in &mut self.sinks {
            first_error(&mut failure, sink.finish(), "finish");
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Merges a container's two streams into one log by whole lines, as mock's logging does:
/// a chunk of one stream never lands inside an unfinished line of the other. Each stream's
/// unfinished line waits (bytes unchanged) until its newline arrives, until it reaches
/// `max_line_bytes` (then it is written with a newline added), or until
/// [`LineMerged::end_lines`] at the end of a command. The exact interleaving stays in
/// container.log.
#[derive(Debug)]
pub struct LineMerged<S> {
    inner: S,
    max_line_bytes: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl<S: OutputSink> LineMerged<S> {
    pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

    pub fn new(inner: S) -> Self {
        LineMerged {
            inner,
            max_line_bytes: Self::DEFAULT_MAX_LINE_BYTES,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Writes each stream's unfinished line, ended by a newline (stdout first): the command
    /// that wrote them has ended.
    pub fn end_lines(&mut self) -> Result<(), SinkFailure> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let mut line = std::mem::take(self.pending(stream));
            if !line.is_empty() {
                line.push(b'\n');
                self.inner.write(stream, &line)?;
            }
        }
        Ok(())
    }

    /// Writes `text`, which ends with a newline, as lines of its own (the unfinished lines
    /// first).
    pub fn write_lines(&mut self, stream: Stream, text: &[u8]) -> Result<(), SinkFailure> {
        self.end_lines()?;
        self.inner.write(stream, text)
    }

    fn pending(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }
}

impl<S: OutputSink> OutputSink for LineMerged<S> {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        let max = self.max_line_bytes;
        let mut pending = std::mem::take(self.pending(stream));
        pending.extend_from_slice(data);
        // Everything up to the last newline is whole lines: one write.
        let whole = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let mut rest = pending.split_off(whole);
        let mut result = if pending.is_empty() {
            Ok(())
        } else {
            self.inner.write(stream, &pending)
        };
        if result.is_ok() && rest.len() >= max {
            rest.push(b'\n');
            result = self.inner.write(stream, &rest);
            rest.clear();
        }
        *self.pending(stream) = rest;
        result
    }

    fn finish(&mut self) -> Result<(), SinkFailure> {
        let ended = self.end_lines();
        let finished = self.inner.finish();
        ended.and(finished)
    }
}

/// Turns chunks of output into lines of text, per stream, for a sink that logs lines.
///
/// Lines are returned without their `\n` (nor a `\r` before it), with invalid UTF-8 replaced
/// by U+FFFD. A line longer than `max_line_bytes` is returned in pieces of at most that many
/// bytes, cut before a UTF-8 character when one starts within the last 3 bytes, so that a
/// character is not split into two replacement characters. Memory: at most `max_line_bytes`
/// pending per stream, plus the lines of the chunk being split.
#[derive(Debug, Clone)]
pub struct TextLineSplitter {
    max_line_bytes: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Default for TextLineSplitter {
    fn default() -> Self {
        TextLineSplitter::new(Self::DEFAULT_MAX_LINE_BYTES)
    }
}

impl TextLineSplitter {
    pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

    /// A splitter cutting lines longer than `max_line_bytes` (at least 1).
    pub fn new(max_line_bytes: usize) -> Self {
        TextLineSplitter {
            max_line_bytes: max_line_bytes.max(1),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Bytes of `stream` waiting for the end of their line.
    /// Adds a chunk of `stream` and returns the lines it completes, in order.
    pub fn push(&mut self, stream: Stream, data: &[u8]) -> Vec<String> {
        let max = self.max_line_bytes;
        let pending = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let mut lines = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let room = max.saturating_sub(pending.len());
            // A newline right after a full-length line still ends that line.
            let newline = rest
                .iter()
                .take(room.saturating_add(1))
                .position(|&b| b == b'\n');
            if let Some(newline) = newline {
                pending.extend(rest.iter().take(newline));
                rest = rest.get(newline + 1..).unwrap_or_default();
                let mut line = std::mem::take(pending);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push(lossy_string(line));
            } else if rest.len() > room {
                pending.extend(rest.iter().take(room));
                rest = rest.get(room..).unwrap_or_default();
                let cut = utf8_cut(pending, rest.first().copied());
                let tail = pending.split_off(cut);
                lines.push(lossy_string(std::mem::replace(pending, tail)));
            } else {
                pending.extend_from_slice(rest);
                rest = &[];
            }
        }
        lines
    }

    /// Returns the unfinished lines (stdout first), at the end of the output.
    pub fn flush_partial(&mut self) -> Vec<(Stream, String)> {
        [
            (Stream::Stdout, std::mem::take(&mut self.stdout)),
            (Stream::Stderr, std::mem::take(&mut self.stderr)),
        ]
        .into_iter()
        .filter(|(_, pending)| !pending.is_empty())
        .map(|(stream, pending)| (stream, lossy_string(pending)))
        .collect()
    }
}

/// Where to cut a full piece `piece` followed by the byte `next`: before a UTF-8 character
/// that starts within its last 3 bytes, else at its end.
fn utf8_cut(piece: &[u8], next: Option<u8>) -> usize {
    let end = piece.len();
    let is_continuation = |at: usize| {
        let byte = if at == end {
            next
        } else {
            piece.get(at).copied()
        };
        byte.is_some_and(|b| b & 0xC0 == 0x80)
    };
    (end.saturating_sub(3)..=end)
        .rev()
        .find(|&at| at > 0 && !is_continuation(at))
        .unwrap_or(end)
}

fn lossy_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned())
}

#[cfg(test)]
// Tests may unwrap and panic (the crate denies these for code Python can reach).
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: usize = 1024 * 1024;

    use crate::core::testutil::Scratch as ScratchDir;

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The byte at position `position` of a long test output: any byte value, newlines
    /// about every 64 bytes.
    fn byte_at(position: u64) -> u8 {
        let mut state = position;
        let value = splitmix(&mut state);
        if value % 64 == 0 {
            b'\n'
        } else {
            (value >> 8) as u8
        }
    }

    fn bytes_at(from: u64, len: usize) -> Vec<u8> {
        (from..from + len as u64).map(byte_at).collect()
    }

    /// Random chunks (sizes 0..max_chunk) on random streams, with invalid UTF-8.
    fn random_chunks(seed: u64, count: usize, max_chunk: usize) -> Vec<(Stream, Vec<u8>)> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                let stream = if splitmix(&mut state) % 2 == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                let len = (splitmix(&mut state) % max_chunk as u64) as usize;
                let chunk = (0..len)
                    .map(|_| match splitmix(&mut state) % 8 {
                        0 => b'\n',
                        1 => 0xff,
                        2 => 0xc3,
                        _ => b'a' + (splitmix(&mut state) % 26) as u8,
                    })
                    .collect();
                (stream, chunk)
            })
            .collect()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Parses the drop marker at the start of a capped log: (dropped, cap, marker length).
    fn parse_marker(log: &[u8]) -> Option<(u64, u64, usize)> {
        let end = log.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&log[..end]).ok()?;
        let rest = line.strip_prefix("[koji-adjutant: ")?;
        let (dropped, rest) = rest.split_once(" earlier bytes dropped to keep this log within ")?;
        let cap = rest.strip_suffix(" bytes]")?;
        Some((dropped.parse().ok()?, cap.parse().ok()?, end + 1))
    }

    fn assert_timestamp_shape(stamp: &[u8]) {
        let stamp = std::str::from_utf8(stamp).unwrap();
        assert_eq!(stamp.len(), 24, "{stamp:?}");
        for (at, c) in stamp.char_indices() {
            match at {
                4 | 7 => assert_eq!(c, '-', "{stamp:?}"),
                10 => assert_eq!(c, 'T', "{stamp:?}"),
                13 | 16 => assert_eq!(c, ':', "{stamp:?}"),
                19 => assert_eq!(c, '.', "{stamp:?}"),
                23 => assert_eq!(c, 'Z', "{stamp:?}"),
                _ => assert!(c.is_ascii_digit(), "{stamp:?}"),
            }
        }
    }

    /// Recovers each stream from a prefixed log by the rule of the module docs.
    fn split_prefixed(log: &[u8], timestamps: bool) -> (Vec<u8>, Vec<u8>) {
        struct Entry<'a> {
            stream: Stream,
            continuation: bool,
            payload: &'a [u8],
            newline: bool,
        }
        let mut entries = Vec::new();
        let mut rest = log;
        while !rest.is_empty() {
            let (mut line, newline, tail) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], true, &rest[at + 1..]),
                None => (rest, false, &[][..]),
            };
            if timestamps {
                assert_timestamp_shape(&line[..24]);
                assert_eq!(line[24], b' ');
                line = &line[25..];
            }
            let stream = if line.starts_with(b"stdout ") {
                Stream::Stdout
            } else if line.starts_with(b"stderr ") {
                Stream::Stderr
            } else {
                panic!("no stream marker: {:?}", String::from_utf8_lossy(line));
            };
            let continuation = match &line[7..9] {
                b"| " => false,
                b"+ " => true,
                other => panic!("bad kind {other:?}"),
            };
            entries.push(Entry {
                stream,
                continuation,
                payload: &line[9..],
                newline,
            });
            rest = tail;
        }
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        for (at, entry) in entries.iter().enumerate() {
            let out = match entry.stream {
                Stream::Stdout => &mut stdout,
                Stream::Stderr => &mut stderr,
            };
            out.extend_from_slice(entry.payload);
            let continued = entries[at + 1..]
                .iter()
                .find(|next| next.stream == entry.stream)
                .is_some_and(|next| next.continuation);
            if entry.newline && !continued {
                out.push(b'\n');
            }
        }
        (stdout, stderr)
    }

    #[test]
    fn uncapped_log_holds_the_exact_bytes() {
        let dir = ScratchDir::new("exact");
        let path = dir.join("build.log");
        let mut sink = FileSink::create(&path, FileSinkOptions::default()).unwrap();
        let mut expected = Vec::new();
        for (stream, chunk) in random_chunks(1, 500, 3000) {
            sink.write(stream, &chunk).unwrap();
            expected.extend_from_slice(&chunk);
        }
        // A line far longer than any buffer, and every byte value.
        let long_line: Vec<u8> = (0..5 * MIB).map(|i| (i % 251) as u8 | 0x80).collect();
        sink.write(Stream::Stdout, &long_line).unwrap();
        expected.extend_from_slice(&long_line);
        let all_bytes: Vec<u8> = (0..=255u8).collect();
        sink.write(Stream::Stderr, &all_bytes).unwrap();
        expected.extend_from_slice(&all_bytes);
        sink.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), expected);
        let snapshot = sink.state().snapshot();
        assert_eq!(snapshot.bytes_written_total, expected.len() as u64);
        assert_eq!(snapshot.bytes_dropped, 0);
        assert_eq!(snapshot.generation, 0);
    }

    #[test]
    fn log_is_created_at_construction_with_its_modes() {
        let dir = ScratchDir::new("modes");
        let path = dir.join("a/b/root.log");
        let sink = FileSink::create(&path, FileSinkOptions::default()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(mode_of(&path), 0o644);
        assert_eq!(mode_of(&dir.join("a")), 0o755);
        assert_eq!(mode_of(&dir.join("a/b")), 0o755);
        drop(sink);

        // An existing log of an earlier attempt is emptied and gets the log mode back.
        let old = dir.join("old.log");
        fs::write(&old, b"stale").unwrap();
        fs::set_permissions(&old, Permissions::from_mode(0o600)).unwrap();
        let _sink = FileSink::create(&old, FileSinkOptions::default()).unwrap();
        assert_eq!(fs::metadata(&old).unwrap().len(), 0);
        assert_eq!(mode_of(&old), 0o644);
    }

    #[test]
    fn cap_keeps_the_newest_bytes_behind_a_marker() {
        let dir = ScratchDir::new("cap");
        let path = dir.join("build.log");
        let cap = 10 * MIB as u64;
        let options = FileSinkOptions {
            cap_bytes: Some(cap),
            ..FileSinkOptions::default()
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        let state = sink.state();
        // Small, odd, page-sized, large, and larger-than-the-cap chunks.
        let sizes = [1, 7, 4093, 65536, MIB, 3 * MIB + 5, 12 * MIB, 333, 100_000];
        let total = 100 * MIB as u64;
        let mut written = 0u64;
        let mut round = 0;
        while written < total {
            let size = sizes[round % sizes.len()].min((total - written) as usize);
            round += 1;
            sink.write(Stream::Stdout, &bytes_at(written, size))
                .unwrap();
            written += size as u64;
            let on_disk = fs::metadata(&path).unwrap().len();
            assert!(on_disk <= cap, "{on_disk} > {cap} after {written} bytes");
        }
        sink.finish().unwrap();

        let log = fs::read(&path).unwrap();
        let (dropped, marker_cap, marker_len) = parse_marker(&log).expect("drop marker");
        assert_eq!(marker_cap, cap);
        let kept = &log[marker_len..];
        assert_eq!(dropped + kept.len() as u64, total);
        assert!(kept == bytes_at(dropped, kept.len()), "kept bytes differ");
        assert!(
            kept.len() as u64 >= cap / 2 - 4096,
            "kept only {}",
            kept.len()
        );
        assert!(parse_marker(kept).is_none(), "a second marker");

        let snapshot = state.snapshot();
        assert_eq!(snapshot.bytes_written_total, total);
        assert_eq!(snapshot.bytes_dropped, dropped);
        assert!(snapshot.generation >= 10, "{snapshot:?}");
        assert!(snapshot.finished);
        assert!(!temp_path(&path).unwrap().exists());
    }

    #[test]
    fn cap_rewrite_starts_the_kept_output_at_a_line() {
        let dir = ScratchDir::new("align");
        let path = dir.join("build.log");
        let options = FileSinkOptions {
            cap_bytes: Some(8192),
            ..FileSinkOptions::default()
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        let mut all = Vec::new();
        for n in 0..1000 {
            let line = format!("line {n:05} {}\n", "x".repeat(n % 50));
            sink.write(Stream::Stdout, line.as_bytes()).unwrap();
            all.extend_from_slice(line.as_bytes());
        }
        let log = fs::read(&path).unwrap();
        let (dropped, _, marker_len) = parse_marker(&log).unwrap();
        assert!(log.len() <= 8192);
        assert_eq!(&log[marker_len..], &all[dropped as usize..]);
        assert_eq!(all[dropped as usize - 1], b'\n');
        assert!(log[marker_len..].starts_with(b"line "));
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_never_written_through() {
        let dir = ScratchDir::new("planted");
        let path = dir.join("build.log");
        let victim = dir.join("host-file");
        fs::write(&victim, b"host file").unwrap();
        std::os::unix::fs::symlink(&victim, temp_path(&path).unwrap()).unwrap();
        let options = FileSinkOptions {
            cap_bytes: Some(8192),
            ..FileSinkOptions::default()
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        for _ in 0..10 {
            sink.write(Stream::Stdout, &[b'x'; 3000]).unwrap();
        }
        assert!(sink.state().snapshot().generation >= 1);
        assert_eq!(fs::read(&victim).unwrap(), b"host file");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
        assert!(parse_marker(&fs::read(&path).unwrap()).is_some());
    }

    #[test]
    fn reader_of_the_old_file_keeps_a_consistent_view() {
        let dir = ScratchDir::new("rename");
        let path = dir.join("build.log");
        let options = FileSinkOptions {
            cap_bytes: Some(8192),
            ..FileSinkOptions::default()
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        sink.write(Stream::Stdout, &[b'a'; 6000]).unwrap();
        let mut reader = File::open(&path).unwrap();
        let old_inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        sink.write(Stream::Stdout, &[b'b'; 6000]).unwrap();
        assert_eq!(sink.state().snapshot().generation, 1);

        let mut seen = Vec::new();
        reader.read_to_end(&mut seen).unwrap();
        assert_eq!(seen, vec![b'a'; 6000]);
        let new_inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        assert_ne!(old_inode, new_inode, "kojid's sync_log notices a new inode");
        assert_eq!(mode_of(&path), 0o644);
    }

    #[test]
    fn markers_keep_interleaved_partial_lines_apart() {
        let dir = ScratchDir::new("markers");
        let path = dir.join("container.log");
        let options = FileSinkOptions {
            stream_markers: true,
            ..FileSinkOptions::default()
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        sink.write(Stream::Stdout, b"abc").unwrap();
        sink.write(Stream::Stderr, b"def\n").unwrap();
        sink.write(Stream::Stdout, b"ghi\njk").unwrap();
        sink.write(Stream::Stdout, b"l\n\n").unwrap();
        sink.write(Stream::Stderr, b"\xff\xfe").unwrap();
        sink.finish().unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            b"stdout | abc\nstderr | def\nstdout + ghi\nstdout | jkl\nstdout | \nstderr | \xff\xfe"
                .to_vec()
        );
    }

    #[test]
    fn prefixed_log_recovers_each_stream_in_order() {
        for timestamps in [false, true] {
            let dir = ScratchDir::new("recover");
            let path = dir.join("container.log");
            let options = FileSinkOptions {
                timestamps,
                stream_markers: true,
                cap_bytes: None,
            };
            let mut sink = FileSink::create(&path, options).unwrap();
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let mut chunks = random_chunks(7, 2000, 200);
            // One chunk larger than the batch, so it is written from the caller's buffer.
            chunks.push((Stream::Stderr, vec![b'z'; PREFIX_BATCH_BYTES * 2]));
            chunks.push((Stream::Stdout, b"\n".to_vec()));
            chunks.push((Stream::Stderr, b"\n".to_vec()));
            for (stream, chunk) in &chunks {
                sink.write(*stream, chunk).unwrap();
                match stream {
                    Stream::Stdout => stdout.extend_from_slice(chunk),
                    Stream::Stderr => stderr.extend_from_slice(chunk),
                }
            }
            let log = fs::read(&path).unwrap();
            let (got_stdout, got_stderr) = split_prefixed(&log, timestamps);
            assert!(
                got_stdout == stdout,
                "stdout differs (timestamps {timestamps})"
            );
            assert!(
                got_stderr == stderr,
                "stderr differs (timestamps {timestamps})"
            );
            assert_eq!(
                sink.state().snapshot().bytes_written_total,
                log.len() as u64
            );
        }
    }

    #[test]
    fn timestamp_prefix_is_the_documented_format() {
        let dir = ScratchDir::new("stamp");
        let path = dir.join("container.log");
        let options = FileSinkOptions {
            timestamps: true,
            ..FileSinkOptions::default()
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        let before = format_timestamp(SystemTime::now());
        sink.write(Stream::Stdout, b"hello\n").unwrap();
        let after = format_timestamp(SystemTime::now());
        let log = fs::read(&path).unwrap();
        assert_timestamp_shape(&log[..24]);
        let stamp = std::str::from_utf8(&log[..24]).unwrap();
        assert!(before.as_str() <= stamp && stamp <= after.as_str());
        assert_eq!(&log[24..], b" | hello\n");
    }

    #[test]
    fn timestamps_are_utc_civil_dates() {
        let at = |seconds: u64, millis: u64| {
            format_timestamp(UNIX_EPOCH + Duration::from_millis(seconds * 1000 + millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_709_164_800, 0), "2024-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_654_923, 456), "2026-11-26T01:02:03.456Z");
        assert_eq!(at(4_107_542_400, 999), "2100-03-01T00:00:00.999Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            format_timestamp(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn capped_prefixed_log_stays_within_the_cap() {
        let dir = ScratchDir::new("capped-prefixed");
        let path = dir.join("container.log");
        let cap = 64 * 1024;
        let options = FileSinkOptions {
            cap_bytes: Some(cap),
            timestamps: true,
            stream_markers: true,
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        for (stream, chunk) in random_chunks(3, 3000, 500) {
            sink.write(stream, &chunk).unwrap();
            assert!(fs::metadata(&path).unwrap().len() <= cap);
        }
        let log = fs::read(&path).unwrap();
        let (dropped, _, marker_len) = parse_marker(&log).unwrap();
        let snapshot = sink.state().snapshot();
        assert_eq!(snapshot.bytes_dropped, dropped);
        assert_eq!(
            (log.len() - marker_len) as u64,
            snapshot.bytes_written_total - dropped
        );
        // The kept output starts at a line, with its prefix.
        assert_timestamp_shape(&log[marker_len..marker_len + 24]);
    }

    #[test]
    fn concurrent_reader_reassembles_the_growing_log() {
        let dir = ScratchDir::new("reader");
        let path = dir.join("build.log");
        let mut sink = FileSink::create(&path, FileSinkOptions::default()).unwrap();
        let state = sink.state();
        let chunks = random_chunks(11, 4000, 10_000);
        let expected: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.clone()).collect();

        let writer = std::thread::spawn(move || {
            for (at, (stream, chunk)) in chunks.iter().enumerate() {
                sink.write(*stream, chunk).unwrap();
                if at % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sink.finish().unwrap();
        });

        // The file exists from construction on: the reader can open it right away.
        let mut reader = File::open(state.path()).unwrap();
        let mut got = Vec::new();
        let mut buffer = [0u8; 4099];
        let mut step = 1;
        loop {
            let published = state.snapshot();
            let n = reader.read(&mut buffer[..step]).unwrap();
            if n == 0 {
                // Counters are published after their bytes reached the file.
                assert!(got.len() as u64 >= published.bytes_written_total);
                if published.finished {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            got.extend_from_slice(&buffer[..n]);
            step = step % buffer.len() + 97;
            step = step.min(buffer.len());
        }
        writer.join().unwrap();
        assert!(got == expected, "reassembled log differs");
    }

    /// An uploader following the protocol of the module docs (as kojid's `sync_log` does with
    /// inodes) ends with an exact copy of the capped log.
    #[test]
    fn uploader_following_generations_ends_with_the_final_log() {
        let dir = ScratchDir::new("uploader");
        let path = dir.join("build.log");
        let options = FileSinkOptions {
            cap_bytes: Some(64 * 1024),
            stream_markers: true,
            ..FileSinkOptions::default()
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        let state = sink.state();
        let writer = std::thread::spawn(move || {
            for (at, (stream, chunk)) in random_chunks(13, 3000, 2000).iter().enumerate() {
                sink.write(*stream, chunk).unwrap();
                if at % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sink.finish().unwrap();
        });

        let mut generation = 0;
        let mut reader = File::open(state.path()).unwrap();
        // What the hub holds: an upload at offset 0 truncates it.
        let mut uploaded = Vec::new();
        let mut reopened = 0;
        loop {
            let snapshot = state.snapshot();
            if snapshot.generation != generation {
                generation = snapshot.generation;
                reader = File::open(state.path()).unwrap();
                uploaded.clear();
                reopened += 1;
            }
            reader.read_to_end(&mut uploaded).unwrap();
            if snapshot.finished {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        writer.join().unwrap();
        assert!(reopened > 0);
        assert!(
            uploaded == fs::read(&path).unwrap(),
            "upload differs from the log"
        );
        assert!(parse_marker(&uploaded).is_some());
    }

    #[test]
    fn unwritable_path_fails_with_the_path_in_the_message() {
        let dir = ScratchDir::new("unwritable");
        let blocker = dir.join("not-a-dir");
        fs::write(&blocker, b"").unwrap();
        let path = blocker.join("sub/build.log");
        let err = FileSink::create(&path, FileSinkOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );

        let err = FileSink::create(&dir.0, FileSinkOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains(&dir.0.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn full_disk_fails_the_write_with_the_path() {
        let mut sink = FileSink::create("/dev/full", FileSinkOptions::default()).unwrap();
        let err = sink.write(Stream::Stdout, b"data").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/dev/full"), "{message}");
        let io = err
            .downcast_ref::<Error>()
            .and_then(|e| std::error::Error::source(e))
            .and_then(|e| e.downcast_ref::<io::Error>())
            .expect("an io::Error source");
        assert_eq!(io.kind(), io::ErrorKind::StorageFull);
        assert_eq!(sink.state().snapshot().bytes_written_total, 0);
    }

    #[test]
    fn invalid_caps_are_refused() {
        let dir = ScratchDir::new("caps");
        let small = FileSinkOptions {
            cap_bytes: Some(FileSink::MIN_CAP_BYTES - 1),
            ..FileSinkOptions::default()
        };
        let err = FileSink::create(dir.join("x.log"), small).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
        assert!(
            !dir.join("x.log").exists(),
            "nothing is created for an invalid spec"
        );
        let device = FileSinkOptions {
            cap_bytes: Some(1 << 20),
            ..FileSinkOptions::default()
        };
        let err = FileSink::create("/dev/full", device).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    }

    #[test]
    fn log_state_tracks_progress_and_the_end() {
        let dir = ScratchDir::new("state");
        let path = dir.join("root.log");
        let options = FileSinkOptions {
            cap_bytes: Some(8192),
            ..FileSinkOptions::default()
        };
        let mut sink = FileSink::create(&path, options).unwrap();
        let state = sink.state();
        assert_eq!(state.path(), path.as_path());
        assert_eq!(state.snapshot(), LogSnapshot::default());

        sink.write(Stream::Stdout, &[b'x'; 5000]).unwrap();
        assert_eq!(state.snapshot().bytes_written_total, 5000);
        assert_eq!(state.snapshot().generation, 0);
        sink.write(Stream::Stderr, &[b'y'; 5000]).unwrap();
        let snapshot = state.snapshot();
        assert_eq!(snapshot.bytes_written_total, 10_000);
        assert_eq!(snapshot.generation, 1);
        assert!(snapshot.bytes_dropped > 0);
        assert!(!snapshot.finished);
        let log = fs::read(&path).unwrap();
        let (dropped, _, marker_len) = parse_marker(&log).unwrap();
        assert_eq!(dropped, snapshot.bytes_dropped);
        assert_eq!((log.len() - marker_len) as u64, 10_000 - dropped);

        sink.finish().unwrap();
        assert!(state.snapshot().finished);
        let err = sink.write(Stream::Stdout, b"late").unwrap_err();
        assert!(err.to_string().contains("after finish"), "{err}");
        assert_eq!(state.snapshot().bytes_written_total, 10_000);

        let other = FileSink::create(dir.join("dropped.log"), FileSinkOptions::default()).unwrap();
        let other_state = other.state();
        drop(other);
        assert!(
            other_state.snapshot().finished,
            "a dropped sink is finished"
        );
    }

    /// Records calls, failing writes when told to.
    #[derive(Default)]
    struct Recorder {
        log: Arc<Mutex<Vec<String>>>,
        name: &'static str,
        fail: bool,
    }

    impl OutputSink for Recorder {
        fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
            let entry = format!(
                "{} {} {}",
                self.name,
                stream.name(),
                String::from_utf8_lossy(data)
            );
            self.log.lock().unwrap().push(entry);
            if self.fail {
                return Err(format!("{} failed", self.name).into());
            }
            Ok(())
        }

        fn finish(&mut self) -> Result<(), SinkFailure> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} finish", self.name));
            if self.fail {
                return Err(format!("{} failed to finish", self.name).into());
            }
            Ok(())
        }
    }

    #[test]
    fn tee_feeds_every_sink_and_returns_the_first_error() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = |name, fail| -> Box<dyn OutputSink> {
            Box::new(Recorder {
                log: log.clone(),
                name,
                fail,
            })
        };
        let mut tee = Tee::new(vec![sink("a", false), sink("b", true), sink("c", true)]);
        let err = tee.write(Stream::Stderr, b"x").unwrap_err();
        assert_eq!(err.to_string(), "b failed");
        let err = tee.finish().unwrap_err();
        assert_eq!(err.to_string(), "b failed to finish");
        assert_eq!(
            *log.lock().unwrap(),
            [
                "a stderr x",
                "b stderr x",
                "c stderr x",
                "a finish",
                "b finish",
                "c finish"
            ]
        );
    }

    #[test]
    fn splitter_yields_whole_lines_per_stream() {
        let mut splitter = TextLineSplitter::default();
        assert_eq!(splitter.push(Stream::Stdout, b"one\ntw"), ["one"]);
        assert_eq!(splitter.push(Stream::Stderr, b"err\r\npart"), ["err"]);
        assert_eq!(splitter.push(Stream::Stdout, b"o\r"), Vec::<String>::new());
        assert_eq!(splitter.push(Stream::Stdout, b"\n\nthree"), ["two", ""]);
        assert_eq!(
            splitter.flush_partial(),
            [
                (Stream::Stdout, "three".to_string()),
                (Stream::Stderr, "part".to_string())
            ]
        );
        assert!(splitter.flush_partial().is_empty());
        assert_eq!(
            splitter.push(Stream::Stdout, b"bad \xff\xfe\n"),
            ["bad \u{fffd}\u{fffd}"]
        );
    }

    #[test]
    fn splitter_cuts_long_lines_between_characters() {
        let mut splitter = TextLineSplitter::new(5);
        // A line of exactly the maximum is one line, not a piece and an empty line.
        assert_eq!(splitter.push(Stream::Stdout, b"12345\n"), ["12345"]);
        assert_eq!(
            splitter.push(Stream::Stdout, b"123456789012\n"),
            ["12345", "67890", "12"]
        );
        // "€" is 3 bytes: the piece ends before it rather than splitting it.
        assert_eq!(
            splitter.push(Stream::Stdout, "abcd€€x\n".as_bytes()),
            ["abcd", "€", "€x"]
        );
        let mut splitter = TextLineSplitter::new(4);
        let pieces = splitter.push(Stream::Stderr, &[b'a'; 10]);
        assert_eq!(pieces, ["aaaa", "aaaa"]);
        assert_eq!(
            splitter.flush_partial(),
            [(Stream::Stderr, "aa".to_string())]
        );
        // Invalid UTF-8 longer than the maximum still makes progress.
        let mut splitter = TextLineSplitter::new(1);
        assert_eq!(
            splitter.push(Stream::Stdout, b"\x80\x80\n"),
            ["\u{fffd}", "\u{fffd}"]
        );
    }

    #[test]
    fn splitter_reassembles_random_chunks() {
        let max = 64;
        let mut splitter = TextLineSplitter::new(max);
        let mut got = Vec::new();
        let mut stdout = Vec::new();
        for (stream, chunk) in random_chunks(5, 300, 300) {
            let lines = splitter.push(stream, &chunk);
            if stream == Stream::Stdout {
                stdout.extend_from_slice(&chunk);
                got.extend(lines);
            }
        }
        let partial = splitter.flush_partial();
        got.extend(
            partial
                .into_iter()
                .filter(|(stream, _)| *stream == Stream::Stdout)
                .map(|(_, line)| line),
        );
        // The generator makes no UTF-8 continuation bytes, so every piece is cut at exactly
        // `max` bytes and lossy conversion of the pieces equals that of the whole line.
        let mut expected = Vec::new();
        let mut segments: Vec<&[u8]> = stdout.split(|&b| b == b'\n').collect();
        let unfinished = segments.pop().unwrap_or_default();
        for line in segments {
            if line.is_empty() {
                expected.push(String::new());
            }
            expected.extend(
                line.chunks(max)
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
            );
        }
        expected.extend(
            unfinished
                .chunks(max)
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        );
        assert!(expected.len() > 100);
        assert_eq!(got, expected);
    }

    /// `cargo test --release --lib core::logsink::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "writes 9 GB to the temp dir; run by hand with --release"]
    fn throughput_of_one_gigabyte() {
        /// The baseline: plain `write_all` on a `std::fs::File`.
        struct PlainFile(File);
        impl OutputSink for PlainFile {
            fn write(&mut self, _: Stream, data: &[u8]) -> Result<(), SinkFailure> {
                Ok(self.0.write_all(data)?)
            }
        }
        let dir = ScratchDir::new("throughput");
        let chunk: Vec<u8> = (0..64 * 1024)
            .map(|i| {
                if i % 80 == 79 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        let gigabyte = 1u64 << 30;
        let capped = FileSinkOptions {
            cap_bytes: Some(10 << 20),
            ..FileSinkOptions::default()
        };
        let prefixed = FileSinkOptions {
            timestamps: true,
            stream_markers: true,
            cap_bytes: None,
        };
        type Open = Box<dyn Fn(&Path) -> Box<dyn OutputSink>>;
        // Whatever runs first after freeing a large file is slowed down by the disk (seen on a
        // VM): the warm-up takes that hit.
        let variants: [(&str, Open); 5] = [
            (
                "warm-up (ignore)",
                Box::new(|p| Box::new(PlainFile(File::create(p).unwrap()))),
            ),
            (
                "std::fs::File",
                Box::new(|p| Box::new(PlainFile(File::create(p).unwrap()))),
            ),
            (
                "FileSink, no cap",
                Box::new(|p| Box::new(FileSink::create(p, FileSinkOptions::default()).unwrap())),
            ),
            (
                "FileSink, 10 MiB cap",
                Box::new(move |p| Box::new(FileSink::create(p, capped).unwrap())),
            ),
            (
                "FileSink, timestamps + markers (80-byte lines)",
                Box::new(move |p| Box::new(FileSink::create(p, prefixed).unwrap())),
            ),
        ];
        for round in 0..2 {
            for (name, open) in &variants {
                let path = dir.join("bench.log");
                let mut sink = open(&path);
                let started = std::time::Instant::now();
                for _ in 0..gigabyte / chunk.len() as u64 {
                    sink.write(Stream::Stdout, &chunk).unwrap();
                }
                sink.finish().unwrap();
                let written = started.elapsed().as_secs_f64();
                File::open(&path).unwrap().sync_all().unwrap();
                let synced = started.elapsed().as_secs_f64();
                let size = fs::metadata(&path).unwrap().len();
                eprintln!(
                    "round {round} {name}: {written:.2} s ({:.0} MiB/s) to page cache, \
                     {synced:.2} s ({:.0} MiB/s) with fsync, file {size} bytes",
                    1024.0 / written,
                    1024.0 / synced
                );
                drop(sink);
                fs::remove_file(&path).unwrap();
            }
        }
    }

    /// Both streams in one buffer, in the order written.
    #[derive(Default)]
    struct Joined {
        text: Vec<u8>,
        finished: bool,
    }

    impl OutputSink for Joined {
        fn write(&mut self, _: Stream, data: &[u8]) -> Result<(), SinkFailure> {
            self.text.extend_from_slice(data);
            Ok(())
        }

        fn finish(&mut self) -> Result<(), SinkFailure> {
            self.finished = true;
            Ok(())
        }
    }

    #[test]
    fn merged_streams_never_splice_a_line_of_one_into_the_other() {
        let mut merged = LineMerged::new(Joined::default());
        merged.write(Stream::Stdout, b"+ echo hel").unwrap();
        merged.write(Stream::Stderr, b"warning: x\nwarn").unwrap();
        merged.write(Stream::Stdout, b"lo\nhello\npart").unwrap();
        merged.write(Stream::Stderr, b"ing: y\n").unwrap();
        merged.end_lines().unwrap();
        merged.write_lines(Stream::Stdout, b"note\n").unwrap();
        assert_eq!(
            String::from_utf8(merged.inner().text.clone()).unwrap(),
            "warning: x\n+ echo hello\nhello\nwarning: y\npart\nnote\n"
        );
        // Bytes are kept as they are, invalid UTF-8 included; a line at the cap is cut.
        let mut merged = LineMerged::new(Joined::default());
        merged.max_line_bytes = 4;
        merged.write(Stream::Stdout, b"\xff\xfeabcdef").unwrap();
        merged.finish().unwrap();
        assert_eq!(merged.inner().text, b"\xff\xfeabcdef\n");
        assert!(merged.inner().finished);
    }
}
