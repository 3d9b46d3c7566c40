//! koji-adjutant's extension module `koji_adjutant._core`: the pyo3-free `core` and the thin
//! `bindings` that expose it.

mod bindings;
mod core;

use pyo3::prelude::*;

#[pymodule]
mod _core {
    use super::*;

    #[pymodule_export]
    use crate::bindings::buildarch::kojid_build_result;
    #[pymodule_export]
    use crate::bindings::buildarch::{PyBuildArchAdapter, PyBuildArchResult};
    #[pymodule_export]
    use crate::bindings::context::PyTaskContext;
    #[pymodule_export]
    use crate::bindings::createrepo::{PyCreaterepoAdapter, PyCreaterepoResult};
    #[pymodule_export]
    use crate::bindings::errors::{
        AdjutantError, BuildError, ContainerError, ImageError, LogSinkError, RepoError, TaskRefused,
    };
    #[pymodule_export]
    use crate::bindings::header::read_package;
    #[pymodule_export]
    use crate::bindings::manager::PyPodmanManager;
    #[pymodule_export]
    use crate::bindings::sinks::{PyCallbackSink, PyFileSink, PyLoggingSink, PyTeeSink};
    #[pymodule_export]
    use crate::bindings::types::{
        PyContainerHandle, PyContainerRunResult, PyContainerSpec, PyResourceLimits, PyVolumeMount,
    };

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        // Loggers are cached, levels are not: kojid's and pytest's level changes apply.
        // Only our own records cross into Python: hyper's per-request debug records would
        // take the GIL on every chunk of container output.
        let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?
            .filter(log::LevelFilter::Warn)
            .filter_target("koji_adjutant".to_owned(), log::LevelFilter::Debug);
        let _ = logger.install();
        m.add("InvalidSpec", bindings::errors::invalid_spec_type(py)?)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "INSTALL_CAPS",
            pyo3::types::PyTuple::new(py, core::buildarch::INSTALL_CAPS)?,
        )?;
        Ok(())
    }
}
