//! Sinks given by Python: any object with `write_stdout(bytes)` and `write_stderr(bytes)`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::core::error::SinkFailure;
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

/// The sink for a Python argument: `None` discards output; any other object must have both
/// methods of the LogSink protocol.
pub fn sink_from(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Box<dyn OutputSink>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Box::new(NullSink));
    };
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
