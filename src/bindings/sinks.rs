//! Sinks for Python: the Rust log sinks (`FileSink`, `LoggingSink`, `CallbackSink`,
//! `TeeSink`) and any Python object with `write_stdout(bytes)` / `write_stderr(bytes)`.
//!
//! A native sink passed to `PodmanManager.run`/`exec` or an adapter is written from Rust
//! without the GIL (file sinks) or with it once per line (logging) or chunk (callbacks).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::core::error::{Error, SinkFailure};
use crate::core::logsink::{FileSink, FileSinkOptions, LogState, Tee, TextLineSplitter};
use crate::core::sink::{NullSink, OutputSink, Stream};

/// Calls a Python object's `write_stdout` / `write_stderr` with each chunk (taking the GIL
/// per chunk). An exception it raises is carried back to the caller unchanged.
pub struct PyObjectSink {
    target: Py<PyAny>,
}

impl OutputSink for PyObjectSink {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        let method = match stream {
            Stream::Stdout => "write_stdout",
            Stream::Stderr => "write_stderr",
        };
        Python::attach(|py| {
            self.target
                .call_method1(py, method, (PyBytes::new(py, data),))
                .map(|_| ())
                .map_err(|e| Box::new(e) as SinkFailure)
        })
    }
}

/// A native sink shared between Python and the runs it is given to. Runs do not finish it:
/// one `FileSink` may collect several runs; Python calls `finish()`.
struct Shared<S>(Arc<Mutex<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S: OutputSink> OutputSink for Shared<S> {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(stream, data)
    }
}

fn sink_err(e: SinkFailure) -> PyErr {
    Error::Sink(e).into()
}

/// A log file written from Rust: every byte unchanged (or with per-line timestamps and
/// stream markers), readable by other users, created at once, flushed on every write so a
/// reader of the growing file sees whole data. With `cap_bytes` the newest output is kept
/// and a marker says how many older bytes were dropped.
#[pyclass(name = "FileSink", module = "koji_adjutant", frozen)]
pub struct PyFileSink {
    inner: Shared<FileSink>,
    state: LogState,
}

#[pymethods]
impl PyFileSink {
    #[new]
    #[pyo3(signature = (path, *, cap_bytes = None, timestamps = false, stream_markers = false))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        cap_bytes: Option<u64>,
        timestamps: bool,
        stream_markers: bool,
    ) -> PyResult<Self> {
        let options = FileSinkOptions {
            cap_bytes,
            timestamps,
            stream_markers,
        };
        let sink = py.detach(|| FileSink::create(path, options))?;
        let state = sink.state();
        Ok(PyFileSink {
            inner: Shared(Arc::new(Mutex::new(sink))),
            state,
        })
    }

    fn write_stdout(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let mut inner = self.inner.clone();
        py.detach(|| inner.write(Stream::Stdout, data))
            .map_err(sink_err)
    }

    fn write_stderr(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let mut inner = self.inner.clone();
        py.detach(|| inner.write(Stream::Stderr, data))
            .map_err(sink_err)
    }

    /// Marks the log complete: an uploader seeing `finished` reads it one last time.
    fn finish(&self) -> PyResult<()> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finish()
            .map_err(sink_err)
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.state.path().to_path_buf()
    }

    /// Progress for an uploader: `bytes_written` (log bytes produced), `bytes_dropped` (oldest
    /// bytes no longer in the file), `generation` (times the file was replaced by a cap
    /// rewrite: reopen and upload from 0 when it changes) and `finished`.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.state.snapshot();
        let d = PyDict::new(py);
        d.set_item("path", self.state.path())?;
        d.set_item("bytes_written", s.bytes_written_total)?;
        d.set_item("bytes_dropped", s.bytes_dropped)?;
        d.set_item("generation", s.generation)?;
        d.set_item("finished", s.finished)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "FileSink(path={:?})",
            self.state.path().display().to_string()
        )
    }
}

/// Logs container output line by line through Python's `logging` (stdout at `stdout_level`,
/// stderr at `stderr_level`); invalid UTF-8 is replaced, very long lines come in pieces.
#[pyclass(name = "LoggingSink", module = "koji_adjutant", frozen)]
pub struct PyLoggingSink {
    logger: Py<PyAny>,
    stdout_level: i32,
    stderr_level: i32,
    lines: Arc<Mutex<TextLineSplitter>>,
}

#[pymethods]
impl PyLoggingSink {
    #[new]
    #[pyo3(signature = (logger = "koji_adjutant.container", *, stdout_level = 20, stderr_level = 30))]
    fn new(py: Python<'_>, logger: &str, stdout_level: i32, stderr_level: i32) -> PyResult<Self> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", (logger,))?
            .unbind();
        Ok(PyLoggingSink {
            logger,
            stdout_level,
            stderr_level,
            lines: Arc::new(Mutex::new(TextLineSplitter::default())),
        })
    }

    fn write_stdout(&self, data: &[u8]) -> PyResult<()> {
        self.native().write(Stream::Stdout, data).map_err(sink_err)
    }

    fn write_stderr(&self, data: &[u8]) -> PyResult<()> {
        self.native().write(Stream::Stderr, data).map_err(sink_err)
    }

    /// Logs what is left of an unterminated last line.
    fn flush(&self) -> PyResult<()> {
        self.native().finish().map_err(sink_err)
    }
}

impl PyLoggingSink {
    fn native(&self) -> LoggingSink {
        Python::attach(|py| LoggingSink {
            logger: self.logger.clone_ref(py),
            levels: [self.stdout_level, self.stderr_level],
            lines: self.lines.clone(),
        })
    }
}

struct LoggingSink {
    logger: Py<PyAny>,
    levels: [i32; 2],
    lines: Arc<Mutex<TextLineSplitter>>,
}

impl LoggingSink {
    fn emit(&self, stream: Stream, lines: Vec<String>) -> Result<(), SinkFailure> {
        if lines.is_empty() {
            return Ok(());
        }
        let level = match stream {
            Stream::Stdout => self.levels[0],
            Stream::Stderr => self.levels[1],
        };
        Python::attach(|py| {
            for line in lines {
                self.logger
                    .call_method1(py, "log", (level, "%s", line))
                    .map_err(|e| Box::new(e) as SinkFailure)?;
            }
            Ok(())
        })
    }
}

impl OutputSink for LoggingSink {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        let lines = self
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stream, data);
        self.emit(stream, lines)
    }

    fn finish(&mut self) -> Result<(), SinkFailure> {
        let rest = self
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush_partial();
        for (stream, line) in rest {
            self.emit(stream, vec![line])?;
        }
        Ok(())
    }
}

/// Calls `callback(stream, data)` with each chunk (`stream` is "stdout" or "stderr").
#[pyclass(name = "CallbackSink", module = "koji_adjutant", frozen)]
pub struct PyCallbackSink {
    callback: Py<PyAny>,
}

#[pymethods]
impl PyCallbackSink {
    #[new]
    fn new(callback: Bound<'_, PyAny>) -> PyResult<Self> {
        if !callback.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "CallbackSink needs a callable",
            ));
        }
        Ok(PyCallbackSink {
            callback: callback.unbind(),
        })
    }

    fn write_stdout(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.callback
            .call1(py, ("stdout", PyBytes::new(py, data)))
            .map(|_| ())
    }

    fn write_stderr(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.callback
            .call1(py, ("stderr", PyBytes::new(py, data)))
            .map(|_| ())
    }
}

struct CallbackSink(Py<PyAny>);

impl OutputSink for CallbackSink {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        Python::attach(|py| {
            self.0
                .call1(py, (stream.name(), PyBytes::new(py, data)))
                .map(|_| ())
                .map_err(|e| Box::new(e) as SinkFailure)
        })
    }
}

/// Sends every chunk to each of `sinks` (native or Python); the first failure aborts the run.
#[pyclass(name = "TeeSink", module = "koji_adjutant", frozen)]
pub struct PyTeeSink {
    sinks: Vec<Py<PyAny>>,
}

#[pymethods]
impl PyTeeSink {
    #[new]
    #[pyo3(signature = (*sinks))]
    fn new(sinks: &Bound<'_, PyTuple>) -> PyResult<Self> {
        for sink in sinks.iter() {
            sink_from(Some(&sink))?;
        }
        Ok(PyTeeSink {
            sinks: sinks.iter().map(|s| s.unbind()).collect(),
        })
    }

    fn write_stdout(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.native(py)?
            .write(Stream::Stdout, data)
            .map_err(sink_err)
    }

    fn write_stderr(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.native(py)?
            .write(Stream::Stderr, data)
            .map_err(sink_err)
    }
}

impl PyTeeSink {
    fn native(&self, py: Python<'_>) -> PyResult<Tee> {
        let sinks = self
            .sinks
            .iter()
            .map(|s| sink_from(Some(s.bind(py))))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Tee::new(sinks))
    }
}

/// The sink for a Python argument: `None` discards output; native sinks are used directly;
/// any other object must have both methods of the LogSink protocol.
pub fn sink_from(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Box<dyn OutputSink>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Box::new(NullSink));
    };
    if let Ok(file) = obj.cast::<PyFileSink>() {
        return Ok(Box::new(file.get().inner.clone()));
    }
    if let Ok(logging) = obj.cast::<PyLoggingSink>() {
        return Ok(Box::new(logging.get().native()));
    }
    if let Ok(callback) = obj.cast::<PyCallbackSink>() {
        return Ok(Box::new(CallbackSink(
            callback.get().callback.clone_ref(obj.py()),
        )));
    }
    if let Ok(tee) = obj.cast::<PyTeeSink>() {
        return Ok(Box::new(tee.get().native(obj.py())?));
    }
    for method in ["write_stdout", "write_stderr"] {
        if !obj.hasattr(method)? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "sink must have write_stdout(bytes) and write_stderr(bytes); {} lacks {method}",
                obj.get_type().name()?
            )));
        }
    }
    Ok(Box::new(PyObjectSink {
        target: obj.clone().unbind(),
    }))
}
