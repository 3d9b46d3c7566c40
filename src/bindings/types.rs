//! Python value types of the container layer. Each wraps the core type it stands for (fields
//! are the core's, read through getters), is frozen, compares by value and has a `repr` as a
//! call.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::bindings::block::block_on;
use crate::bindings::manager::PyPodmanManager;
use crate::core::podman::{PodmanClient, RunResult};
use crate::core::spec::{self, NetworkMode, SelinuxLabel};

/// A host path bind-mounted into the container.
#[pyclass(
    name = "VolumeMount",
    module = "koji_adjutant",
    frozen,
    eq,
    skip_from_py_object
)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyVolumeMount(pub spec::VolumeMount);

#[pymethods]
impl PyVolumeMount {
    #[new]
    #[pyo3(signature = (source, target, *, read_only = true, selinux_label = None))]
    fn new(
        source: PathBuf,
        target: PathBuf,
        read_only: bool,
        selinux_label: Option<&str>,
    ) -> PyResult<Self> {
        Ok(PyVolumeMount(spec::VolumeMount {
            source,
            target,
            read_only,
            selinux_label: selinux_label.map(SelinuxLabel::parse).transpose()?,
        }))
    }

    #[getter]
    fn source(&self) -> PathBuf {
        self.0.source.clone()
    }

    #[getter]
    fn target(&self) -> PathBuf {
        self.0.target.clone()
    }

    #[getter]
    fn read_only(&self) -> bool {
        self.0.read_only
    }

    #[getter]
    fn selinux_label(&self) -> Option<&'static str> {
        self.0.selinux_label.map(SelinuxLabel::as_str)
    }

    fn __repr__(&self) -> String {
        format!(
            "VolumeMount(source={:?}, target={:?}, read_only={}, selinux_label={})",
            self.0.source.display().to_string(),
            self.0.target.display().to_string(),
            py_bool(self.0.read_only),
            py_opt_str(&self.selinux_label().map(str::to_owned))
        )
    }
}

/// cgroup limits of a container; `None` leaves that resource unlimited.
#[pyclass(
    name = "ResourceLimits",
    module = "koji_adjutant",
    frozen,
    eq,
    skip_from_py_object
)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyResourceLimits(pub spec::ResourceLimits);

#[pymethods]
impl PyResourceLimits {
    #[new]
    #[pyo3(signature = (memory_bytes = None, cpus = None, pids = Some(spec::DEFAULT_PIDS_LIMIT)), text_signature = "(memory_bytes=None, cpus=None, pids=4096)")]
    fn new(memory_bytes: Option<u64>, cpus: Option<f64>, pids: Option<i64>) -> Self {
        PyResourceLimits(spec::ResourceLimits {
            memory_bytes,
            cpus,
            pids,
        })
    }

    #[getter]
    fn memory_bytes(&self) -> Option<u64> {
        self.0.memory_bytes
    }

    #[getter]
    fn cpus(&self) -> Option<f64> {
        self.0.cpus
    }

    #[getter]
    fn pids(&self) -> Option<i64> {
        self.0.pids
    }

    fn __repr__(&self) -> String {
        format!(
            "ResourceLimits(memory_bytes={}, cpus={}, pids={})",
            py_opt(&self.0.memory_bytes),
            py_opt(&self.0.cpus),
            py_opt(&self.0.pids)
        )
    }
}

/// Everything needed to create one container. Validated (InvalidSpec) when used, before
/// anything is created.
#[pyclass(
    name = "ContainerSpec",
    module = "koji_adjutant",
    frozen,
    eq,
    skip_from_py_object
)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyContainerSpec(pub spec::ContainerSpec);

#[pymethods]
impl PyContainerSpec {
    #[new]
    #[pyo3(signature = (image, command, *, environment = None, workdir = None, mounts = Vec::new(),
        user = None, labels = None, network = "none", limits = None, timeout = None,
        remove_after_exit = true, cap_add = Vec::new(), task_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        image: String,
        command: Vec<String>,
        environment: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
        mounts: Vec<PyRef<'_, PyVolumeMount>>,
        user: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        network: &str,
        limits: Option<PyRef<'_, PyResourceLimits>>,
        timeout: Option<u64>,
        remove_after_exit: bool,
        cap_add: Vec<String>,
        task_id: Option<i64>,
    ) -> PyResult<Self> {
        Ok(PyContainerSpec(spec::ContainerSpec {
            environment: environment.unwrap_or_default(),
            workdir,
            mounts: mounts.iter().map(|m| m.0.clone()).collect(),
            user,
            labels: labels.unwrap_or_default(),
            network: NetworkMode::parse(network)?,
            limits: limits.map(|l| l.0.clone()).unwrap_or_default(),
            timeout,
            remove_after_exit,
            cap_add,
            task_id,
            ..spec::ContainerSpec::new(image, command)
        }))
    }

    #[getter]
    fn image(&self) -> &str {
        &self.0.image
    }

    #[getter]
    fn command(&self) -> Vec<String> {
        self.0.command.clone()
    }

    #[getter]
    fn environment(&self) -> BTreeMap<String, String> {
        self.0.environment.clone()
    }

    #[getter]
    fn workdir(&self) -> Option<&str> {
        self.0.workdir.as_deref()
    }

    #[getter]
    fn mounts(&self) -> Vec<PyVolumeMount> {
        self.0.mounts.iter().cloned().map(PyVolumeMount).collect()
    }

    #[getter]
    fn user(&self) -> Option<&str> {
        self.0.user.as_deref()
    }

    #[getter]
    fn labels(&self) -> BTreeMap<String, String> {
        self.0.labels.clone()
    }

    #[getter]
    fn network(&self) -> &'static str {
        self.0.network.as_str()
    }

    #[getter]
    fn limits(&self) -> PyResourceLimits {
        PyResourceLimits(self.0.limits.clone())
    }

    #[getter]
    fn timeout(&self) -> Option<u64> {
        self.0.timeout
    }

    #[getter]
    fn remove_after_exit(&self) -> bool {
        self.0.remove_after_exit
    }

    #[getter]
    fn cap_add(&self) -> Vec<String> {
        self.0.cap_add.clone()
    }

    #[getter]
    fn task_id(&self) -> Option<i64> {
        self.0.task_id
    }

    fn __repr__(&self) -> String {
        format!(
            "ContainerSpec(image={:?}, command={:?}, network={:?}, user={}, mounts={}, task_id={})",
            self.0.image,
            self.0.command,
            self.0.network.as_str(),
            py_opt_str(&self.0.user),
            self.0.mounts.len(),
            py_opt(&self.0.task_id)
        )
    }
}

impl PyContainerSpec {
    /// The core spec, validated.
    pub fn to_core(&self) -> PyResult<spec::ContainerSpec> {
        self.0.validate()?;
        Ok(self.0.clone())
    }
}

/// A created container of one `PodmanManager`. As a context manager it removes the container
/// (killing it if it still runs) when the block ends, however it ends.
#[pyclass(
    name = "ContainerHandle",
    module = "koji_adjutant",
    frozen,
    eq,
    hash,
    skip_from_py_object
)]
pub struct PyContainerHandle {
    container_id: String,
    client: Arc<PodmanClient>,
}

impl PyContainerHandle {
    pub fn new(client: Arc<PodmanClient>, container_id: String) -> Self {
        PyContainerHandle {
            container_id,
            client,
        }
    }

    pub fn id(&self) -> &str {
        &self.container_id
    }
}

/// Two handles are equal when they name the same container.
impl PartialEq for PyContainerHandle {
    fn eq(&self, other: &Self) -> bool {
        self.container_id == other.container_id
    }
}

impl Hash for PyContainerHandle {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.container_id.hash(state);
    }
}

#[pymethods]
impl PyContainerHandle {
    /// A handle on an existing container `container_id` of `manager`'s service.
    #[new]
    fn py_new(manager: PyRef<'_, PyPodmanManager>, container_id: String) -> Self {
        PyContainerHandle::new(Arc::clone(&manager.client), container_id)
    }

    #[getter]
    fn container_id(&self) -> &str {
        &self.container_id
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Removes the container; an exception of the block propagates.
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyType>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let client = &self.client;
        let id = &self.container_id;
        block_on(py, |_| async move { client.remove(id, true).await })?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("ContainerHandle(container_id={:?})", self.container_id)
    }
}

/// What `PodmanManager.run` reports; times are timezone-aware UTC datetimes.
#[pyclass(
    name = "ContainerRunResult",
    module = "koji_adjutant",
    frozen,
    skip_from_py_object
)]
#[derive(Debug, Clone)]
pub struct PyContainerRunResult(pub RunResult);

#[pymethods]
impl PyContainerRunResult {
    #[getter]
    fn exit_code(&self) -> i64 {
        self.0.exit_code
    }

    #[getter]
    fn started_at(&self) -> SystemTime {
        self.0.started_at
    }

    #[getter]
    fn finished_at(&self) -> SystemTime {
        self.0.finished_at
    }

    #[getter]
    fn container_id(&self) -> &str {
        &self.0.container_id
    }

    fn __repr__(&self) -> String {
        let secs = self
            .0
            .finished_at
            .duration_since(self.0.started_at)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        format!(
            "ContainerRunResult(exit_code={}, container_id={:?}, duration={secs:.3}s)",
            self.0.exit_code, self.0.container_id
        )
    }
}

pub fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

pub fn py_opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "None".to_string(), |v| v.to_string())
}

pub fn py_opt_str(v: &Option<String>) -> String {
    v.as_ref()
        .map_or_else(|| "None".to_string(), |v| format!("{v:?}"))
}
