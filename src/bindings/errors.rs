//! Python exception classes and the one mapping from the core's `Error`.

use std::path::PathBuf;

use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::core::Error;

pyo3::create_exception!(
    koji_adjutant,
    AdjutantError,
    PyException,
    "Base class of every error koji-adjutant raises."
);
pyo3::create_exception!(
    koji_adjutant,
    ContainerError,
    AdjutantError,
    "Podman refused or failed an operation; the message is podman's."
);
pyo3::create_exception!(
    koji_adjutant,
    ImageError,
    ContainerError,
    "The task image is missing (pull policy \"never\") or cannot be pulled."
);
pyo3::create_exception!(
    koji_adjutant,
    LogSinkError,
    AdjutantError,
    "A log sink failed (for example a full disk); the run was aborted."
);
pyo3::create_exception!(
    koji_adjutant,
    BuildError,
    AdjutantError,
    "A buildArch step failed. Attributes: log (the log to read, or None) and exit_code (the \
     step's exit status, or None)."
);
pyo3::create_exception!(
    koji_adjutant,
    RepoError,
    AdjutantError,
    "A createrepo step failed or the repo on disk is not in the expected state. Attributes: \
     log (the log of the failed command, or None) and exit_code (or None)."
);
pyo3::create_exception!(
    koji_adjutant,
    TaskRefused,
    AdjutantError,
    "This builder cannot run the task as asked (its image cannot build the arch, the tag asks \
     for what is not done here, the repos dir is not mounted): kojid raises RefuseTask, so the \
     hub offers the task to another builder."
);

static INVALID_SPEC: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `InvalidSpec` is both an `AdjutantError` and a `ValueError`; `create_exception!` allows
/// one base only, so the class is made once with `type()`.
pub fn invalid_spec_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    INVALID_SPEC
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<AdjutantError>(),
                    py.get_type::<PyValueError>(),
                ],
            )?;
            let dict = PyDict::new(py);
            dict.set_item("__module__", "koji_adjutant")?;
            dict.set_item(
                "__doc__",
                "An invalid spec, option or input, rejected before anything was created.",
            )?;
            let made = py
                .get_type::<PyType>()
                .call1(("InvalidSpec", bases, dict))?
                .cast_into::<PyType>()?;
            Ok(made.unbind())
        })
        .map(|t| t.bind(py))
}

fn invalid_spec(py: Python<'_>, message: String) -> PyErr {
    match invalid_spec_type(py) {
        Ok(cls) => PyErr::from_type(cls.clone(), message),
        Err(e) => e,
    }
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| to_pyerr(py, err))
    }
}

fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    match err {
        Error::InvalidSpec(message) => invalid_spec(py, message),
        e @ Error::Container { .. } => ContainerError::new_err(e.to_string()),
        e @ Error::Image { .. } => ImageError::new_err(e.to_string()),
        // A Python sink's own exception travels through the core unchanged.
        Error::Sink(failure) => match failure.downcast::<PyErr>() {
            Ok(original) => *original,
            Err(other) => LogSinkError::new_err(format!("log sink failed: {other}")),
        },
        Error::Build {
            message,
            log,
            exit_code,
        } => {
            let e = BuildError::new_err(message);
            let value = e.value(py);
            let log = log.map(|p| p.to_string_lossy().into_owned());
            if let Err(set) = value
                .setattr("log", log)
                .and_then(|()| value.setattr("exit_code", exit_code))
            {
                return set;
            }
            e
        }
        Error::Repo(message) => repo_error(py, message, None, None),
        Error::RepoCommand {
            message,
            log,
            exit_code,
        } => repo_error(py, message, log, exit_code),
        Error::Refused(message) => TaskRefused::new_err(message),
        Error::Interrupted => PyKeyboardInterrupt::new_err("interrupted"),
        e @ Error::Io { .. } => AdjutantError::new_err(e.to_string()),
    }
}

/// A `RepoError` that always carries `log` and `exit_code`, so the kojid glue can read them
/// without `getattr` defaults.
fn repo_error(
    py: Python<'_>,
    message: String,
    log: Option<PathBuf>,
    exit_code: Option<i64>,
) -> PyErr {
    let e = RepoError::new_err(message);
    let value = e.value(py);
    let log = log.map(|p| p.to_string_lossy().into_owned());
    let set = value
        .setattr("log", log)
        .and_then(|()| value.setattr("exit_code", exit_code));
    match set {
        Ok(()) => e,
        Err(set) => set,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: Error, expected: &str, message: &str) {
        Python::initialize();
        Python::attach(|py| {
            let e: PyErr = err.into();
            let name = e.get_type(py).name().unwrap().to_string();
            assert_eq!(name, expected);
            assert!(e.value(py).to_string().contains(message), "{}", e.value(py));
            assert!(
                e.is_instance_of::<PyException>(py),
                "not catchable by `except Exception`"
            );
        });
    }

    #[test]
    fn every_core_error_maps_to_one_python_class() {
        check(Error::invalid("bad spec"), "InvalidSpec", "bad spec");
        check(
            Error::container("start", "no such file"),
            "ContainerError",
            "start: no such file",
        );
        check(
            Error::Image {
                image: "x".into(),
                message: "absent".into(),
            },
            "ImageError",
            "image x: absent",
        );
        check(Error::Sink("disk full".into()), "LogSinkError", "disk full");
        check(
            Error::Build {
                message: "failed".into(),
                log: Some("/w/build.log".into()),
                exit_code: Some(1),
            },
            "BuildError",
            "failed",
        );
        check(Error::Repo("no repo".into()), "RepoError", "no repo");
        check(
            Error::RepoCommand {
                message: "failed to create repo".into(),
                log: None,
                exit_code: Some(2),
            },
            "RepoError",
            "failed to create repo",
        );
        check(
            Error::io("writing log", std::io::Error::other("EIO")),
            "AdjutantError",
            "writing log: EIO",
        );
    }

    #[test]
    fn invalid_spec_is_a_value_error_and_an_adjutant_error() {
        Python::initialize();
        Python::attach(|py| {
            let e: PyErr = Error::invalid("x").into();
            assert!(e.is_instance_of::<PyValueError>(py));
            assert!(e.is_instance_of::<AdjutantError>(py));
        });
    }

    #[test]
    fn a_python_exception_from_a_sink_comes_back_unchanged() {
        Python::initialize();
        Python::attach(|py| {
            let original = pyo3::exceptions::PyZeroDivisionError::new_err("from sink");
            let back: PyErr = Error::Sink(Box::new(original)).into();
            assert!(back.is_instance_of::<pyo3::exceptions::PyZeroDivisionError>(py));
        });
    }

    #[test]
    fn repo_errors_carry_their_log_and_whether_kojid_refuses_the_task() {
        Python::initialize();
        Python::attach(|py| {
            let attr = |e: &PyErr, name: &str| e.value(py).getattr(name).unwrap();
            let failed: PyErr = Error::RepoCommand {
                message: "failed to create repo: x exited with status 2".into(),
                log: Some("/w/createrepo.log".into()),
                exit_code: Some(2),
            }
            .into();
            assert_eq!(
                attr(&failed, "log").extract::<String>().unwrap(),
                "/w/createrepo.log"
            );
            assert_eq!(attr(&failed, "exit_code").extract::<i64>().unwrap(), 2);

            let refused: PyErr =
                Error::Refused("No access to repos dir /mnt/koji/repos".into()).into();
            assert!(refused.is_instance_of::<TaskRefused>(py));
            assert!(refused.is_instance_of::<AdjutantError>(py));

            let missing: PyErr =
                Error::Repo("Repo directory missing: /mnt/koji/repos/f40/7/x86_64".into()).into();
            assert!(attr(&missing, "log").is_none());
            assert!(attr(&missing, "exit_code").is_none());
        });
    }

    #[test]
    fn build_errors_carry_their_log() {
        Python::initialize();
        Python::attach(|py| {
            let e: PyErr = Error::Build {
                message: "m".into(),
                log: Some("/w/root.log".into()),
                exit_code: Some(3),
            }
            .into();
            let log: String = e.value(py).getattr("log").unwrap().extract().unwrap();
            assert_eq!(log, "/w/root.log");
        });
    }
}
