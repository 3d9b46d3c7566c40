//! Python value types of the container layer: frozen, compared by value, `repr` as a call.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use pyo3::prelude::*;

use crate::core::podman::RunResult;
use crate::core::spec::{self, NetworkMode, SelinuxLabel};

/// A host path bind-mounted into the container.
#[pyclass(
    name = "VolumeMount",
    module = "koji_adjutant",
    frozen,
    get_all,
    eq,
    skip_from_py_object
)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyVolumeMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    pub selinux_label: Option<String>,
}

#[pymethods]
impl PyVolumeMount {
    #[new]
    #[pyo3(signature = (source, target, *, read_only = true, selinux_label = None))]
    fn new(
        source: PathBuf,
        target: PathBuf,
        read_only: bool,
        selinux_label: Option<String>,
    ) -> PyResult<Self> {
        if let Some(label) = &selinux_label {
            SelinuxLabel::parse(label)?;
        }
        Ok(PyVolumeMount {
            source,
            target,
            read_only,
            selinux_label,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "VolumeMount(source={:?}, target={:?}, read_only={}, selinux_label={})",
            self.source.display().to_string(),
            self.target.display().to_string(),
            py_bool(self.read_only),
            py_opt_str(&self.selinux_label)
        )
    }
}

impl PyVolumeMount {
    pub fn to_core(&self) -> PyResult<spec::VolumeMount> {
        Ok(spec::VolumeMount {
            source: self.source.clone(),
            target: self.target.clone(),
            read_only: self.read_only,
            selinux_label: self
                .selinux_label
                .as_deref()
                .map(SelinuxLabel::parse)
                .transpose()?,
        })
    }
}

/// cgroup limits of a container; `None` leaves that resource unlimited.
#[pyclass(
    name = "ResourceLimits",
    module = "koji_adjutant",
    frozen,
    get_all,
    eq,
    skip_from_py_object
)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyResourceLimits {
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
}

#[pymethods]
impl PyResourceLimits {
    #[new]
    #[pyo3(signature = (memory_bytes = None, cpus = None, pids = Some(4096)), text_signature = "(memory_bytes=None, cpus=None, pids=4096)")]
    fn new(memory_bytes: Option<u64>, cpus: Option<f64>, pids: Option<i64>) -> Self {
        PyResourceLimits {
            memory_bytes,
            cpus,
            pids,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "ResourceLimits(memory_bytes={}, cpus={}, pids={})",
            py_opt(&self.memory_bytes),
            py_opt(&self.cpus),
            py_opt(&self.pids)
        )
    }
}

impl From<&PyResourceLimits> for spec::ResourceLimits {
    fn from(l: &PyResourceLimits) -> Self {
        spec::ResourceLimits {
            memory_bytes: l.memory_bytes,
            cpus: l.cpus,
            pids: l.pids,
        }
    }
}

/// Everything needed to create one container. Validated (InvalidSpec) when used, before
/// anything is created.
#[pyclass(
    name = "ContainerSpec",
    module = "koji_adjutant",
    frozen,
    get_all,
    skip_from_py_object
)]
#[derive(Debug)]
pub struct PyContainerSpec {
    pub image: String,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub mounts: Vec<Py<PyVolumeMount>>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub network: String,
    pub limits: Py<PyResourceLimits>,
    pub timeout: Option<u64>,
    pub remove_after_exit: bool,
    pub cap_add: Vec<String>,
    pub task_id: Option<i64>,
}

#[pymethods]
impl PyContainerSpec {
    #[new]
    #[pyo3(signature = (image, command, *, environment = None, workdir = None, mounts = Vec::new(),
        user = None, labels = None, network = "none", limits = None, timeout = None,
        remove_after_exit = true, cap_add = Vec::new(), task_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        image: String,
        command: Vec<String>,
        environment: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
        mounts: Vec<Py<PyVolumeMount>>,
        user: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        network: &str,
        limits: Option<Py<PyResourceLimits>>,
        timeout: Option<u64>,
        remove_after_exit: bool,
        cap_add: Vec<String>,
        task_id: Option<i64>,
    ) -> PyResult<Self> {
        NetworkMode::parse(network)?;
        let network = network.to_owned();
        let limits = match limits {
            Some(l) => l,
            None => Py::new(
                py,
                PyResourceLimits::new(None, None, Some(spec::DEFAULT_PIDS_LIMIT)),
            )?,
        };
        Ok(PyContainerSpec {
            image,
            command,
            environment: environment.unwrap_or_default(),
            workdir,
            mounts,
            user,
            labels: labels.unwrap_or_default(),
            network,
            limits,
            timeout,
            remove_after_exit,
            cap_add,
            task_id,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "ContainerSpec(image={:?}, command={:?}, network={:?}, user={}, mounts={}, task_id={})",
            self.image,
            self.command,
            self.network,
            py_opt_str(&self.user),
            self.mounts.len(),
            py_opt(&self.task_id)
        )
    }
}

impl PyContainerSpec {
    pub fn to_core(&self, py: Python<'_>) -> PyResult<spec::ContainerSpec> {
        let mounts = self
            .mounts
            .iter()
            .map(|m| m.borrow(py).to_core())
            .collect::<PyResult<Vec<_>>>()?;
        let spec = spec::ContainerSpec {
            image: self.image.clone(),
            command: self.command.clone(),
            environment: self.environment.clone(),
            workdir: self.workdir.clone(),
            mounts,
            user: self.user.clone(),
            labels: self.labels.clone(),
            network: NetworkMode::parse(&self.network)?,
            limits: (&*self.limits.borrow(py)).into(),
            timeout: self.timeout,
            remove_after_exit: self.remove_after_exit,
            cap_add: self.cap_add.clone(),
            task_id: self.task_id,
            init: false,
            scratch_volumes: Vec::new(),
            userns: None,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// A created container.
#[pyclass(
    name = "ContainerHandle",
    module = "koji_adjutant",
    frozen,
    get_all,
    eq,
    hash,
    skip_from_py_object
)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyContainerHandle {
    pub container_id: String,
}

#[pymethods]
impl PyContainerHandle {
    #[new]
    fn new(container_id: String) -> Self {
        PyContainerHandle { container_id }
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
    get_all,
    skip_from_py_object
)]
#[derive(Debug, Clone)]
pub struct PyContainerRunResult {
    pub exit_code: i64,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
    pub container_id: String,
}

#[pymethods]
impl PyContainerRunResult {
    fn __repr__(&self) -> String {
        let secs = self
            .finished_at
            .duration_since(self.started_at)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        format!(
            "ContainerRunResult(exit_code={}, container_id={:?}, duration={secs:.3}s)",
            self.exit_code, self.container_id
        )
    }
}

impl From<RunResult> for PyContainerRunResult {
    fn from(r: RunResult) -> Self {
        PyContainerRunResult {
            exit_code: r.exit_code,
            started_at: r.started_at,
            finished_at: r.finished_at,
            container_id: r.container_id,
        }
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
