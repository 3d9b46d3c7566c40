//! Where container output goes. A sink receives the bytes of each stream, in order and
//! unchanged, while the container runs. Sinks are composable (see `Tee`); the bindings adapt
//! any Python object with `write_stdout(bytes)` / `write_stderr(bytes)` to this trait.

use crate::core::error::{Result, SinkFailure};

/// Which of the container's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A consumer of container output.
///
/// `write` gets every chunk in arrival order; chunks are arbitrary byte slices (partial lines,
/// invalid UTF-8). An error aborts the run that feeds the sink: the container is removed and
/// the error reaches the caller. `finish` is called once when the stream that fed the sink has
/// ended (also after an error), so a sink can flush and mark its output complete.
pub trait OutputSink: Send {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure>;

    fn finish(&mut self) -> Result<(), SinkFailure> {
        Ok(())
    }
}

/// Discards everything (the sink of a run whose output nobody wants).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl OutputSink for NullSink {
    fn write(&mut self, _stream: Stream, _data: &[u8]) -> Result<(), SinkFailure> {
        Ok(())
    }
}

/// Collects output in memory, per stream (tests only: the runners bound what they capture).
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub struct CaptureSink {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[cfg(test)]
impl OutputSink for CaptureSink {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        match stream {
            Stream::Stdout => self.stdout.extend_from_slice(data),
            Stream::Stderr => self.stderr.extend_from_slice(data),
        }
        Ok(())
    }
}

impl<S: OutputSink + ?Sized> OutputSink for &mut S {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        (**self).write(stream, data)
    }
    fn finish(&mut self) -> Result<(), SinkFailure> {
        (**self).finish()
    }
}

impl<S: OutputSink + ?Sized> OutputSink for Box<S> {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        (**self).write(stream, data)
    }
    fn finish(&mut self) -> Result<(), SinkFailure> {
        (**self).finish()
    }
}
