//! `CreaterepoAdapter` and `CreaterepoResult`: kojid's `createrepo` task in a container, for
//! Python. Conversions only; the work is `crate::core::createrepo_run`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::bindings::block::block_on;
use crate::bindings::buildarch::call_with;
use crate::bindings::context::PyTaskContext;
use crate::bindings::manager::PyPodmanManager;
use crate::bindings::sinks::sink_from;
use crate::bindings::types::{py_bool, py_opt, py_opt_str, PyResourceLimits};
use crate::core::accounting::Usage;
use crate::core::createrepo::{self, ExternalRepo, KojiExternalRepo};
use crate::core::createrepo_run::{self, CreaterepoOptions, CreaterepoOutcome, RepoInputs};
use crate::core::error::Error;
use crate::core::podman::{PodmanClient, PullPolicy};
use crate::core::spec::{ResourceLimits, SelinuxLabel};

/// Runs kojid's `createrepo` task (createrepo_c, then mergerepo_c for external repos) in one
/// container of `image` per call, with kojid's flags, logs and edge cases.
///
/// `createrepo_update` and `createrepo_skip_stat` are kojid's options of the same names;
/// `limits` the container's cgroup limits (`None`: the task defaults, 75% of this host's
/// memory, its CPUs but half of one, 4096 processes); `selinux_label` ("z"/"Z") relabels the
/// work dir mount only; `log_cap_bytes` caps each log; `timeout` (seconds) bounds the whole
/// task, and podman kills each container 60 s after it (24 h without a timeout), a backstop
/// should the caller die. With external repos, `mergerepo_c --version` runs once per image
/// (per process) first: as in kojid, `--arch-expand` is given to mergerepo_c 0.15.11 or newer
/// only, and a `simple` merge needs 0.13.0. The commands run as `exec`s in one container per
/// task, whose cgroup gives what the task used (`on_usage`, `CreaterepoResult.usage`,
/// `state.log` in the work dir).
#[pyclass(name = "CreaterepoAdapter", module = "koji_adjutant", frozen)]
pub struct PyCreaterepoAdapter {
    client: Arc<PodmanClient>,
    options: CreaterepoOptions,
    pull_policy: String,
}

#[pymethods]
impl PyCreaterepoAdapter {
    #[new]
    #[pyo3(signature = (manager, image, *, pull_policy = "if-not-present",
        createrepo_update = true, createrepo_skip_stat = false, limits = None,
        selinux_label = None, log_cap_bytes = None, timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        manager: &PyPodmanManager,
        image: String,
        pull_policy: &str,
        createrepo_update: bool,
        createrepo_skip_stat: bool,
        limits: Option<PyRef<'_, PyResourceLimits>>,
        selinux_label: Option<String>,
        log_cap_bytes: Option<u64>,
        timeout: Option<u64>,
    ) -> PyResult<Self> {
        let options = CreaterepoOptions {
            image,
            pull_policy: PullPolicy::parse(pull_policy)?,
            update: createrepo_update,
            skip_stat: createrepo_skip_stat,
            limits: limits
                .map(|l| l.0.clone())
                .unwrap_or_else(ResourceLimits::task_defaults),
            selinux_label: selinux_label
                .as_deref()
                .map(SelinuxLabel::parse)
                .transpose()?,
            log_cap_bytes,
            timeout,
        };
        Ok(PyCreaterepoAdapter {
            client: manager.client.clone(),
            options,
            pull_policy: pull_policy.to_string(),
        })
    }

    #[getter]
    fn image(&self) -> &str {
        &self.options.image
    }

    /// Runs the createrepo task for one arch of a repo into `ctx.work_dir`, as kojid's
    /// `CreaterepoTask`.
    ///
    /// `repo_dir` is kojid's `self.repodir`, `<topdir>/repos/<tag>/<repo_id>/<arch>`; its last
    /// component is the repo's arch. `topdir` defaults to the one `repo_dir` implies (tags
    /// without `/`); `groups` to `<topdir>/repos/<tag>/<repo_id>/groups/comps.xml` when
    /// present; `pkglist` to `<repo_dir>/pkglist`. `old_repodata` is the previous repo's
    /// `<arch>/repodata`, used with `--update`. `external_repos` are the hub's `getExternalRepoList` dicts.
    /// `sink` (write_stdout/write_stderr) gets the commands' output besides the logs.
    /// `on_usage(usage)` gets what the task's container used, `{"createrepo": {"peak_memory_bytes",
    /// "cpu_seconds", "bytes_written"}}` (the peak over all commands, CPU and writes summed),
    /// on every path but cancellation, failures included; an exception it raises is logged.
    ///
    /// Raises InvalidSpec or RepoError before anything runs when the request or the repo on
    /// disk is wrong (RepoError.refuse is True when kojid would refuse the task), RepoError
    /// with `log` and `exit_code` when a command fails, and what the sink raised.
    #[pyo3(signature = (ctx, *, repo_dir, topdir = None, groups = None, pkglist = None,
        old_repodata = None, external_repos = None, sink = None, on_usage = None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        ctx: &PyTaskContext,
        repo_dir: PathBuf,
        topdir: Option<PathBuf>,
        groups: Option<PathBuf>,
        pkglist: Option<PathBuf>,
        old_repodata: Option<PathBuf>,
        external_repos: Option<&Bound<'_, PyAny>>,
        sink: Option<&Bound<'_, PyAny>>,
        on_usage: Option<Py<PyAny>>,
    ) -> PyResult<PyCreaterepoResult> {
        let inputs = RepoInputs {
            arch_dir: repo_dir,
            topdir,
            groups,
            pkglist,
            old_repodata,
            external_repos: external_repos_from(external_repos)?,
        };
        let mut sink = sink_from(sink)?;
        let ctx = ctx.to_core();
        let client = &self.client;
        let options = &self.options;
        let mut report = |usage: &Usage| call_with(&on_usage, &role_usage(Some(usage)));
        let outcome = block_on(py, |cancel| async move {
            createrepo_run::run(
                client,
                options,
                &ctx,
                inputs,
                sink.as_mut(),
                &mut report,
                &cancel,
            )
            .await
        })?;
        Ok(outcome.into())
    }

    fn __repr__(&self) -> String {
        let o = &self.options;
        format!(
            "CreaterepoAdapter(image={:?}, pull_policy={:?}, createrepo_update={}, \
             createrepo_skip_stat={}, selinux_label={}, log_cap_bytes={}, timeout={})",
            o.image,
            self.pull_policy,
            py_bool(o.update),
            py_bool(o.skip_stat),
            py_opt_str(&o.selinux_label.map(|l| l.as_str().to_string())),
            py_opt(&o.log_cap_bytes),
            py_opt(&o.timeout)
        )
    }
}

/// The hub's external repo dicts (any iterable of mappings; extra keys are ignored).
fn external_repos_from(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<ExternalRepo>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.is_instance_of::<pyo3::types::PyDict>()
    {
        return Err(Error::invalid("external_repos must be a sequence of dicts").into());
    }
    let mut repos = Vec::new();
    for (index, item) in obj.try_iter()?.enumerate() {
        let item = item?;
        let repo: KojiExternalRepo = pythonize::depythonize(&item)
            .map_err(|e| Error::invalid(format!("external_repos[{index}]: {e}")))?;
        repos.push(repo.into());
    }
    Ok(repos)
}

/// `{"createrepo": {...} | None}`: the shape of buildArch's usage (by container role).
fn role_usage(usage: Option<&Usage>) -> BTreeMap<&'static str, Option<Usage>> {
    BTreeMap::from([(createrepo_run::ROLE, usage.copied())])
}

/// What a createrepo task produced: `repodata_dir` (in the work dir), its `files` (flat,
/// sorted, as kojid uploads them), whether the repo is `empty` (EMPTY_REPO written), the
/// `logs` of the commands that ran, kojid's `upload_path` for the task, the adapter's
/// `state_log` and the container's `usage` (as `on_usage` gets it).
#[pyclass(
    name = "CreaterepoResult",
    module = "koji_adjutant",
    frozen,
    eq,
    skip_from_py_object
)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyCreaterepoResult {
    #[pyo3(get)]
    pub repodata_dir: PathBuf,
    #[pyo3(get)]
    pub files: Vec<String>,
    #[pyo3(get)]
    pub empty: bool,
    #[pyo3(get)]
    pub logs: Vec<PathBuf>,
    #[pyo3(get)]
    pub upload_path: String,
    #[pyo3(get)]
    pub state_log: PathBuf,
    used: Option<Usage>,
}

#[pymethods]
impl PyCreaterepoResult {
    /// What the task's container used (see `CreaterepoAdapter.run`'s `on_usage`).
    #[getter]
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pythonize::pythonize(py, &role_usage(self.used.as_ref()))
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
    }

    /// kojid's task result, `[uploadpath, files]`, which the hub's `repoDone` consumes.
    /// `upload_path` defaults to the task's (`tasks/<id % 10000>/<id>`).
    #[pyo3(signature = (upload_path = None))]
    fn kojid_result<'py>(
        &self,
        py: Python<'py>,
        upload_path: Option<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let path = upload_path.unwrap_or_else(|| self.upload_path.clone());
        let (path, files) = createrepo::render_result(&path, &self.files)?;
        PyList::new(
            py,
            [
                path.into_pyobject(py)?.into_any(),
                files.into_pyobject(py)?.into_any(),
            ],
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "CreaterepoResult(repodata_dir={:?}, files={:?}, empty={}, logs={:?}, upload_path={:?})",
            self.repodata_dir.display().to_string(),
            self.files,
            py_bool(self.empty),
            self.logs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            self.upload_path
        )
    }
}

impl From<CreaterepoOutcome> for PyCreaterepoResult {
    fn from(o: CreaterepoOutcome) -> Self {
        PyCreaterepoResult {
            repodata_dir: o.repodata_dir,
            files: o.files,
            empty: o.empty,
            logs: o.logs,
            upload_path: o.upload_path,
            state_log: o.state_log,
            used: o.usage,
        }
    }
}
