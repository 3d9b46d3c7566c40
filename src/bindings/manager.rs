//! `PodmanManager`: the container lifecycle for Python. Each method converts, calls the core
//! through `block_on`, and converts back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bindings::block::block_on;
use crate::bindings::sinks::sink_from;
use crate::bindings::types::{PyContainerHandle, PyContainerRunResult, PyContainerSpec};
use crate::core::buildroot::kept;
use crate::core::error::Error;
use crate::core::podman::{self, ExecOptions, PodmanClient, PullPolicy};

/// A connection to a podman service (its REST API over a unix socket).
///
/// `socket` is a path or a `unix://` URL; by default `$KOJI_ADJUTANT_PODMAN_SOCKET`, else
/// `/run/podman/podman.sock`. `worker_id` labels every container this manager creates; by
/// default the host name. `timeout` (seconds, default 60) bounds every Podman call: a call
/// the service does not answer in time, or a long one (an output stream, a wait, a pull, a
/// commit) during which it stops answering its ping for that long, raises ContainerError.
#[pyclass(name = "PodmanManager", module = "koji_adjutant", frozen)]
pub struct PyPodmanManager {
    pub client: Arc<PodmanClient>,
}

pub fn default_worker_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[pymethods]
impl PyPodmanManager {
    #[new]
    #[pyo3(signature = (socket = None, *, worker_id = None, timeout = None))]
    fn new(
        socket: Option<String>,
        worker_id: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let socket = socket
            .or_else(|| {
                std::env::var(podman::SOCKET_ENV)
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| podman::DEFAULT_SOCKET.to_string());
        let worker_id = worker_id.unwrap_or_else(default_worker_id);
        let mut client = PodmanClient::new(&socket, &worker_id)?;
        if let Some(seconds) = timeout {
            let timeout = Duration::try_from_secs_f64(seconds).map_err(|_| {
                Error::invalid(format!(
                    "timeout must be a number of seconds, not {seconds}"
                ))
            })?;
            client = client.with_timeout(timeout)?;
        }
        Ok(PyPodmanManager {
            client: Arc::new(client),
        })
    }

    /// Seconds one Podman call may take, and the service may leave a ping unanswered while
    /// a long operation (an output stream, a wait, a pull, a commit) is pending.
    #[getter]
    fn timeout(&self) -> f64 {
        self.client.timeout().as_secs_f64()
    }

    #[getter]
    fn socket(&self) -> String {
        self.client.socket().to_string()
    }

    #[getter]
    fn worker_id(&self) -> String {
        self.client.worker_id().to_string()
    }

    /// Checks that the service answers; returns its reply ("OK").
    fn ping(&self, py: Python<'_>) -> PyResult<String> {
        let client = &self.client;
        block_on(py, |_| client.ping())
    }

    /// Makes `image` available under `pull_policy` ("always", "if-not-present", "never");
    /// returns the image ID. Raises ImageError when it is missing or cannot be pulled.
    #[pyo3(signature = (image, *, pull_policy = "if-not-present"))]
    fn ensure_image_available(
        &self,
        py: Python<'_>,
        image: String,
        pull_policy: &str,
    ) -> PyResult<String> {
        let policy = PullPolicy::parse(pull_policy)?;
        let client = &self.client;
        block_on(
            py,
            |_| async move { client.ensure_image(&image, policy).await },
        )
    }

    /// podman's inspect of a local image as a dict (what `podman image inspect` prints: Id,
    /// Digest, RootFS, Config, Labels, ...). Raises ImageError when it is not present.
    fn inspect_image<'py>(&self, py: Python<'py>, image: String) -> PyResult<Bound<'py, PyAny>> {
        let client = &self.client;
        let value = block_on(py, |_| async move { client.inspect_image(&image).await })?;
        pythonize::pythonize(py, &value)
            .map_err(|e| Error::invalid(format!("image inspect: {e}")).into())
    }

    /// Runs a container to completion, streaming its output to `sink`; removes it afterwards
    /// (when `spec.remove_after_exit`) and on every error, signal and sink exception.
    #[pyo3(signature = (spec, sink = None))]
    fn run(
        &self,
        py: Python<'_>,
        spec: &PyContainerSpec,
        sink: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyContainerRunResult> {
        let spec = spec.to_core()?;
        let mut sink = sink_from(sink)?;
        let client = &self.client;
        let result = block_on(py, |cancel| async move {
            client.run(&spec, sink.as_mut(), &cancel).await
        })?;
        Ok(PyContainerRunResult(result))
    }

    /// Creates (does not start) a container.
    fn create(&self, py: Python<'_>, spec: &PyContainerSpec) -> PyResult<PyContainerHandle> {
        let spec = spec.to_core()?;
        let client = &self.client;
        let id = block_on(py, |_| async move { client.create(&spec).await })?;
        Ok(PyContainerHandle::new(Arc::clone(&self.client), id))
    }

    /// Starts a created container; its output goes to `sink` while it runs. `wait` returns
    /// its exit code (and raises what the sink raised).
    #[pyo3(signature = (handle, sink = None))]
    fn start(
        &self,
        py: Python<'_>,
        handle: &PyContainerHandle,
        sink: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let sink = sink_from(sink)?;
        let client = &self.client;
        let id = handle.id();
        block_on(py, |_| client.start(id, sink))
    }

    /// Blocks until the container exits; returns its exit code.
    fn wait(&self, py: Python<'_>, handle: &PyContainerHandle) -> PyResult<i64> {
        let client = &self.client;
        let id = handle.id();
        block_on(py, |cancel| async move { client.wait(id, &cancel).await })
    }

    /// Runs `argv` once in the running container; returns its exit code.
    #[pyo3(signature = (handle, argv, *, sink = None, environment = None, workdir = None, user = None))]
    #[allow(clippy::too_many_arguments)]
    fn exec(
        &self,
        py: Python<'_>,
        handle: &PyContainerHandle,
        argv: Vec<String>,
        sink: Option<&Bound<'_, PyAny>>,
        environment: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
        user: Option<String>,
    ) -> PyResult<i64> {
        let mut sink = sink_from(sink)?;
        let opts = ExecOptions {
            environment: environment.unwrap_or_default(),
            workdir,
            user,
        };
        let client = &self.client;
        let id = handle.id();
        block_on(py, |cancel| async move {
            client.exec(id, &argv, &opts, sink.as_mut(), &cancel).await
        })
    }

    /// Copies a host file into the container at `container_path`.
    fn copy_to(
        &self,
        py: Python<'_>,
        handle: &PyContainerHandle,
        host_path: PathBuf,
        container_path: String,
    ) -> PyResult<()> {
        let client = &self.client;
        let id = handle.id();
        block_on(py, |_| async move {
            client.copy_to(id, &host_path, &container_path).await
        })
    }

    /// Writes podman's tar of `path` in the container to `dest` (a new file, never a link);
    /// returns its size. The archive's entries are not extracted.
    fn export(
        &self,
        py: Python<'_>,
        handle: &PyContainerHandle,
        path: String,
        dest: PathBuf,
    ) -> PyResult<u64> {
        let client = &self.client;
        let id = handle.id();
        block_on(py, |cancel| async move {
            client.archive_to_file(id, &path, &dest, &cancel).await
        })
    }

    /// Stops the container, killing it after `grace_seconds`.
    #[pyo3(signature = (handle, *, grace_seconds = 10))]
    fn stop(&self, py: Python<'_>, handle: &PyContainerHandle, grace_seconds: u64) -> PyResult<()> {
        let client = &self.client;
        let id = handle.id();
        block_on(py, |_| client.stop(id, grace_seconds))
    }

    /// Removes the container (killing it first when `force`); a missing one is not an error.
    #[pyo3(signature = (handle, *, force = true))]
    fn remove(&self, py: Python<'_>, handle: &PyContainerHandle, force: bool) -> PyResult<()> {
        let client = &self.client;
        let id = handle.id();
        // Removal is cleanup: it is not cancelled by a signal (the signal is still raised).
        block_on(py, |_| async move { client.remove(id, force).await })
    }

    /// Containers in any state carrying all of `labels`, as dicts (id, names, image, state,
    /// labels).
    fn list_containers<'py>(
        &self,
        py: Python<'py>,
        labels: BTreeMap<String, String>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let client = &self.client;
        let listed = block_on(py, |_| async move { client.list(&labels).await })?;
        listed
            .into_iter()
            .map(|c| {
                let d = PyDict::new(py);
                d.set_item("id", c.id)?;
                d.set_item("names", c.names)?;
                d.set_item("image", c.image)?;
                d.set_item("state", c.state)?;
                d.set_item("labels", c.labels)?;
                Ok(d)
            })
            .collect()
    }

    /// Removes every container carrying all of `labels` (at least one); returns the count.
    fn reap(&self, py: Python<'_>, labels: BTreeMap<String, String>) -> PyResult<usize> {
        let client = &self.client;
        block_on(py, |_| async move { client.reap(&labels).await })
    }

    /// Local images carrying all of `labels`, as dicts (id, size, created, labels).
    fn list_images<'py>(
        &self,
        py: Python<'py>,
        labels: BTreeMap<String, String>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let client = &self.client;
        let listed = block_on(
            py,
            |_| async move { client.images_with_labels(&labels).await },
        )?;
        listed
            .into_iter()
            .map(|img| {
                let d = PyDict::new(py);
                d.set_item("id", img.id)?;
                d.set_item("size", img.size)?;
                d.set_item("created", img.created)?;
                d.set_item("labels", img.labels)?;
                Ok(d)
            })
            .collect()
    }

    /// Removes a local image; False when a container still uses it (a missing one is not an
    /// error).
    fn remove_image(&self, py: Python<'_>, image: String) -> PyResult<bool> {
        let client = &self.client;
        block_on(py, |_| async move { client.remove_image(&image).await })
    }

    /// Removes this worker's kept failed buildroots whose time is up; returns the count.
    fn remove_expired_kept_roots(&self, py: Python<'_>) -> PyResult<usize> {
        let client = &self.client;
        block_on(py, |_| async move { kept::remove_expired(client).await })
    }

    fn __repr__(&self) -> String {
        format!(
            "PodmanManager(socket={:?}, worker_id={:?})",
            self.client.socket(),
            self.client.worker_id()
        )
    }
}
