//! `TaskContext` for Python.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::bindings::types::py_opt_str;
use crate::core::task::TaskContext;

/// The Koji task an adapter runs for: `task_id`, its private `work_dir` (kojid's
/// `self.workdir`), the `worker_id` and the `log_dir` where `<task_id>/container.log` is kept.
#[pyclass(
    name = "TaskContext",
    module = "koji_adjutant",
    frozen,
    get_all,
    eq,
    skip_from_py_object
)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyTaskContext {
    pub task_id: i64,
    pub work_dir: PathBuf,
    pub worker_id: Option<String>,
    pub log_dir: Option<PathBuf>,
}

#[pymethods]
impl PyTaskContext {
    #[new]
    #[pyo3(signature = (task_id, work_dir, *, worker_id = None, log_dir = None))]
    fn new(
        task_id: i64,
        work_dir: PathBuf,
        worker_id: Option<String>,
        log_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let ctx = PyTaskContext {
            task_id,
            work_dir,
            worker_id,
            log_dir,
        };
        ctx.to_core().validate()?;
        Ok(ctx)
    }

    fn __repr__(&self) -> String {
        format!(
            "TaskContext(task_id={}, work_dir={:?}, worker_id={}, log_dir={})",
            self.task_id,
            self.work_dir.display().to_string(),
            py_opt_str(&self.worker_id),
            py_opt_str(&self.log_dir.as_ref().map(|p| p.display().to_string()))
        )
    }
}

impl PyTaskContext {
    pub fn to_core(&self) -> TaskContext {
        TaskContext {
            task_id: self.task_id,
            work_dir: self.work_dir.clone(),
            worker_id: self.worker_id.clone(),
            log_dir: self.log_dir.clone(),
        }
    }
}
