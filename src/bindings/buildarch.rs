//! `BuildArchAdapter` for Python.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::bindings::block::block_on;
use crate::bindings::context::PyTaskContext;
use crate::bindings::manager::PyPodmanManager;
use crate::bindings::sinks::sink_from;
use crate::bindings::types::PyResourceLimits;
use crate::core::buildarch::{self, BuildArchConfig, BuildHooks, TaskUsage};
use crate::core::buildroot::cache::CacheConfig;
use crate::core::buildroot::result::kojid_result;
use crate::core::buildroot::{
    BuildArchRequest, BuildConfig, BuildrootMode, BuildrootOptions, BuildrootRpm, Checkout, Input,
    Product, RepoLocation,
};
use crate::core::error::{Error, Result};
use crate::core::podman::{PodmanClient, PullPolicy};
use crate::core::spec::{IdMap, ResourceLimits, SelinuxLabel};
use crate::core::task;

/// Builds a source RPM into binary RPMs in Podman containers, as kojid's buildArch task does
/// with mock: the buildroot installed from the tag's repo alone by the bootstrap image's dnf
/// (`buildroot_mode="tag"`, mock's bootstrap model) or over the image itself
/// (`buildroot_mode="image"`), rpmbuild run as an unprivileged user without network or
/// capabilities, results and logs in `ctx.work_dir/result`.
///
/// Every step is bounded (`rpmbuild_timeout` for rpmbuild's, `dnf_timeout` for the others),
/// and podman kills either container after `container_timeout` seconds (default
/// `rpmbuild_timeout + 3 * dnf_timeout`), a backstop should the caller die. `limits=None`
/// gives both containers the task defaults: 75% of this host's memory, its CPUs but half of
/// one, 4096 processes.
#[pyclass(name = "BuildArchAdapter", module = "koji_adjutant", frozen)]
pub struct PyBuildArchAdapter {
    client: Arc<PodmanClient>,
    config: BuildArchConfig,
}

#[pymethods]
impl PyBuildArchAdapter {
    #[new]
    #[pyo3(signature = (manager, image, *, buildroot_mode = "tag", pull_policy = "if-not-present", vendor = "Koji",
        packager = "Koji", distribution = "Koji", mockhost = "koji-linux-gnu",
        rpmbuild_timeout = 86400, install_group = "build", buildhost = None, rpmdb_path = None,
        limits = None, selinux_label = None, image_external_repo = None, cache = true, cache_max_images = 8,
        cache_max_bytes = 21474836480, cache_dir = None, log_cap_bytes = None, image_arches = None,
        userns_base = None, keep_failed_root = 0, yum_proxy = None,
        dnf_timeout = 7200, container_timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        manager: &PyPodmanManager,
        image: String,
        buildroot_mode: &str,
        pull_policy: &str,
        vendor: &str,
        packager: &str,
        distribution: &str,
        mockhost: &str,
        rpmbuild_timeout: u64,
        install_group: &str,
        buildhost: Option<String>,
        rpmdb_path: Option<String>,
        limits: Option<PyRef<'_, PyResourceLimits>>,
        selinux_label: Option<String>,
        image_external_repo: Option<String>,
        cache: bool,
        cache_max_images: usize,
        cache_max_bytes: u64,
        cache_dir: Option<PathBuf>,
        log_cap_bytes: Option<u64>,
        image_arches: Option<Vec<String>>,
        userns_base: Option<u32>,
        keep_failed_root: u64,
        yum_proxy: Option<String>,
        dnf_timeout: u64,
        container_timeout: Option<u64>,
    ) -> PyResult<Self> {
        let limits = limits
            .map(|l| l.0.clone())
            .unwrap_or_else(ResourceLimits::task_defaults);
        for (name, value) in [
            ("rpmbuild_timeout", Some(rpmbuild_timeout)),
            ("dnf_timeout", Some(dnf_timeout)),
            ("container_timeout", container_timeout),
        ] {
            if value == Some(0) {
                return Err(Error::invalid(format!("{name} must be at least 1 second")).into());
            }
        }
        Ok(PyBuildArchAdapter {
            client: manager.client.clone(),
            config: BuildArchConfig {
                image,
                mode: BuildrootMode::parse(buildroot_mode)?,
                pull_policy: PullPolicy::parse(pull_policy)?,
                options: BuildrootOptions {
                    vendor: vendor.to_owned(),
                    packager: packager.to_owned(),
                    distribution: distribution.to_owned(),
                    mockhost: mockhost.to_owned(),
                    rpmbuild_timeout,
                    keep_srpm: false,
                    install_group: install_group.to_owned(),
                    buildhost,
                    rpmdb_path,
                    yum_proxy,
                },
                limits,
                selinux_label: selinux_label
                    .as_deref()
                    .map(SelinuxLabel::parse)
                    .transpose()?,
                image_external_repo,
                cache: CacheConfig {
                    enabled: cache,
                    max_images: cache_max_images,
                    max_bytes: cache_max_bytes,
                    dir: cache_dir,
                },
                log_cap_bytes,
                image_arches,
                userns: userns_base.map(IdMap::new).transpose()?,
                keep_failed_root: (keep_failed_root > 0)
                    .then(|| std::time::Duration::from_secs(keep_failed_root)),
                dnf_timeout,
                container_timeout,
            },
        })
    }

    #[getter]
    fn image(&self) -> String {
        self.config.image.clone()
    }

    #[getter]
    fn buildroot_mode(&self) -> &'static str {
        self.config.mode.as_str()
    }

    /// Whether this builder takes a buildArch task for `arch` of the tag whose
    /// `getBuildConfig` is `build_config`; call it before the hub's buildroot record. Raises
    /// TaskRefused when the image cannot build the arch (e.g. i686 on an x86_64 image) or the
    /// tag asks for what is not done here (`mock.package_manager` dnf5, `mock.forcearch`,
    /// mock's sign plugin): kojid refuses the task so another builder takes it. Makes the
    /// image available (ImageError). Returns the buildroot arch (for noarch: one the image
    /// and the tag share, or `buildroot_arch`).
    #[pyo3(signature = (arch, *, build_config, buildroot_arch = None))]
    fn check(
        &self,
        py: Python<'_>,
        arch: String,
        build_config: &Bound<'_, PyAny>,
        buildroot_arch: Option<String>,
    ) -> PyResult<String> {
        let build_config: BuildConfig = pythonize::depythonize(build_config)
            .map_err(|e| Error::invalid(format!("build_config: {e}")))?;
        let client = &self.client;
        let config = &self.config;
        block_on(py, |_| {
            let (arch, build_config, buildroot_arch) = (&arch, &build_config, &buildroot_arch);
            async move {
                buildarch::check(
                    client,
                    config,
                    arch,
                    build_config,
                    buildroot_arch.as_deref(),
                )
                .await
            }
        })
    }

    /// Builds `srpm_path` (inside `ctx.work_dir`) for `arch` from the tag repo `repo` (a local
    /// `<topdir>/repos/<tag>/<repo_id>/<arch>` dir or its URL; a URL repo needs
    /// `repomd_sha256`, the SHA-256 of its `repodata/repomd.xml`). Callbacks, where kojid talks
    /// to the hub: `on_buildroot_ready(packages)` after init, before the build;
    /// `on_buildroot_final(packages)` after the build step, and after a failure that came
    /// after `on_buildroot_ready` (kojid's `updateBuildRootList`, sent whatever the outcome);
    /// `on_usage(usage)` with what the containers used (`{"build": {...} | None,
    /// "bootstrap": ...}`), on every path but cancellation. Raises BuildError (with `.log`) on
    /// failure.
    #[pyo3(signature = (ctx, srpm_path, arch, *, repo, repo_id, tag_name, build_config, keep_srpm = false,
        topdir = None, buildroot_arch = None, repomd_sha256 = None, sink = None, on_buildroot_ready = None,
        on_buildroot_final = None, on_usage = None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        ctx: &PyTaskContext,
        srpm_path: PathBuf,
        arch: String,
        repo: String,
        repo_id: i64,
        tag_name: String,
        build_config: &Bound<'_, PyAny>,
        keep_srpm: bool,
        topdir: Option<PathBuf>,
        buildroot_arch: Option<String>,
        repomd_sha256: Option<String>,
        sink: Option<&Bound<'_, PyAny>>,
        on_buildroot_ready: Option<Py<PyAny>>,
        on_buildroot_final: Option<Py<PyAny>>,
        on_usage: Option<Py<PyAny>>,
    ) -> PyResult<PyBuildArchResult> {
        let place = RepoPlace::new(repo, topdir, repo_id, tag_name);
        let mut request = place.request(Input::Srpm(srpm_path), arch, build_config)?;
        request.keep_srpm = keep_srpm;
        request.buildroot_arch = buildroot_arch;
        request.repomd_sha256 = repomd_sha256;
        let hooks = PyHooks::new(on_buildroot_ready, on_buildroot_final, on_usage);
        self.execute(py, ctx, &request, sink, hooks)
    }

    /// Makes one SRPM in the buildroot of the tag's `srpm-build` group (`install_group`), as
    /// kojid's rebuildSRPM and buildSRPMFromSCM do with mock: from `srpm_path` (inside
    /// `ctx.work_dir`; unpacked and rebuilt with `rpmbuild -bs`), or from `checkout` (a
    /// directory inside `ctx.work_dir`, kojid's `scmroot`), mounted read-only and copied by
    /// the build user; `source_cmd` runs in the copy of `workdir`, in a container of its own
    /// with a network when `source_network`, else without one; then `rpmbuild -bs` of `spec`
    /// with `sources` as `%_sourcedir` (paths relative to `checkout`), without network.
    /// `scm_credentials_dir` (kojid's option) is mounted read-only at `/credentials` in the
    /// source container only.
    /// `arch` is rpmbuild's `--target` (kojid's `noarch`); `buildroot_arch` the buildroot's.
    /// Repo, callbacks and errors as `run` (no `on_buildroot_final`: kojid sends no list
    /// after these tools). The result's `srpms` holds the one SRPM, checked by its header.
    #[pyo3(signature = (ctx, *, build_config, srpm_path = None, checkout = None, workdir = "",
        spec = None, sources = None, source_cmd = None, source_network = false, scm_credentials_dir = None, repo, repo_id,
        tag_name, arch = "noarch", topdir = None, buildroot_arch = None, repomd_sha256 = None,
        sink = None, on_buildroot_ready = None, on_usage = None))]
    #[allow(clippy::too_many_arguments)]
    fn build_srpm(
        &self,
        py: Python<'_>,
        ctx: &PyTaskContext,
        build_config: &Bound<'_, PyAny>,
        srpm_path: Option<PathBuf>,
        checkout: Option<PathBuf>,
        workdir: &str,
        spec: Option<String>,
        sources: Option<String>,
        source_cmd: Option<Vec<String>>,
        source_network: bool,
        scm_credentials_dir: Option<PathBuf>,
        repo: String,
        repo_id: i64,
        tag_name: String,
        arch: &str,
        topdir: Option<PathBuf>,
        buildroot_arch: Option<String>,
        repomd_sha256: Option<String>,
        sink: Option<&Bound<'_, PyAny>>,
        on_buildroot_ready: Option<Py<PyAny>>,
        on_usage: Option<Py<PyAny>>,
    ) -> PyResult<PyBuildArchResult> {
        let input = match (srpm_path, checkout, spec) {
            (Some(srpm), None, None) if source_cmd.is_none() => Input::Srpm(srpm),
            (None, Some(dir), Some(spec)) => Input::Checkout(Checkout {
                dir,
                sources: sources.unwrap_or_else(|| workdir.to_owned()),
                workdir: workdir.to_owned(),
                spec,
                source_cmd: source_cmd.unwrap_or_default(),
                source_network,
                credentials: scm_credentials_dir,
            }),
            _ => {
                return Err(Error::invalid(
                    "build_srpm takes srpm_path alone, or checkout with spec (and workdir, sources, source_cmd)",
                )
                .into())
            }
        };
        let place = RepoPlace::new(repo, topdir, repo_id, tag_name);
        let mut request = place.request(input, arch.to_owned(), build_config)?;
        request.product = Product::Srpm;
        (request.buildroot_arch, request.repomd_sha256) = (buildroot_arch, repomd_sha256);
        // kojid sends no list after rebuild_srpm and build_srpm
        self.execute(
            py,
            ctx,
            &request,
            sink,
            PyHooks::new(on_buildroot_ready, None, on_usage),
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "BuildArchAdapter(image={:?}, buildroot_mode={:?}, cache={})",
            self.config.image,
            self.config.mode.as_str(),
            self.config.cache.enabled
        )
    }
}

/// Where a run's buildroot comes from, as `run` and `build_srpm` take it.
struct RepoPlace {
    repo: String,
    topdir: Option<PathBuf>,
    repo_id: i64,
    tag_name: String,
}

impl RepoPlace {
    fn new(repo: String, topdir: Option<PathBuf>, repo_id: i64, tag_name: String) -> Self {
        RepoPlace {
            repo,
            topdir,
            repo_id,
            tag_name,
        }
    }

    /// A buildArch request (binaries, no kept SRPM) of `input` for `arch`.
    fn request(
        self,
        input: Input,
        arch: String,
        build_config: &Bound<'_, PyAny>,
    ) -> Result<BuildArchRequest> {
        Ok(BuildArchRequest {
            input,
            product: Product::Binaries,
            arch,
            repo: repo_location(&self.repo, self.topdir)?,
            repo_id: self.repo_id,
            tag_name: self.tag_name,
            build_config: pythonize::depythonize(build_config)
                .map_err(|e| Error::invalid(format!("build_config: {e}")))?,
            keep_srpm: false,
            buildroot_arch: None,
            repomd_sha256: None,
        })
    }
}

impl PyBuildArchAdapter {
    /// Runs `request` with the callbacks of `hooks`; the result as Python sees it.
    fn execute(
        &self,
        py: Python<'_>,
        ctx: &PyTaskContext,
        request: &BuildArchRequest,
        sink: Option<&Bound<'_, PyAny>>,
        mut hooks: PyHooks,
    ) -> PyResult<PyBuildArchResult> {
        let ctx = ctx.to_core();
        let mut sink = sink_from(sink)?;
        let client = &self.client;
        let config = &self.config;
        let outcome = block_on(py, |cancel| {
            let (ctx, sink, hooks) = (&ctx, &mut sink, &mut hooks);
            async move {
                buildarch::run(client, ctx, config, request, sink.as_mut(), hooks, &cancel).await
            }
        })?;
        Ok(PyBuildArchResult {
            task_id: ctx.task_id,
            keep_srpm: request.keep_srpm,
            result_dir: outcome.result_dir,
            rpms: outcome.rpms,
            srpms: outcome.srpms,
            logs: outcome.logs,
            buildroot: dict_list(py, &outcome.buildroot)?,
            lock_rpms: dict_list(py, &outcome.lock)?,
            unknown_rpms: dict_list(py, &outcome.unknown_rpms)?,
            buildroot_arch: outcome.buildroot_arch,
            cache_hit: outcome.cache_hit,
            image_id: outcome.image.id,
            image_digest: outcome.image.digest,
            usage: pythonize::pythonize(py, &outcome.usage)
                .map_err(|e| Error::invalid(format!("usage: {e}")))?
                .unbind(),
        })
    }
}

/// A list of dicts, one per item (package lists as kojid and mock's lockfile have them).
fn dict_list<T: serde::Serialize>(py: Python<'_>, items: &[T]) -> PyResult<Py<PyList>> {
    let items = items
        .iter()
        .map(|item| pythonize::pythonize(py, item).map(|o| o.unbind()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(format!("package list: {e}")))?;
    Ok(PyList::new(py, items)?.unbind())
}

/// `repo` is a URL (http/https) or a local arch dir; a local dir's topdir is inferred from
/// Koji's layout `<topdir>/repos/<tag>/<repo_id>/<arch>` unless given.
fn repo_location(repo: &str, topdir: Option<PathBuf>) -> Result<RepoLocation> {
    if repo.starts_with("http://") || repo.starts_with("https://") {
        return Ok(RepoLocation::Url(repo.trim_end_matches('/').to_owned()));
    }
    let arch_dir = PathBuf::from(repo.strip_prefix("file://").unwrap_or(repo));
    if !arch_dir.is_absolute() {
        return Err(Error::invalid(format!(
            "repo must be an http(s) URL or an absolute path, not {repo:?}"
        )));
    }
    let topdir = match topdir {
        Some(t) => t,
        None => arch_dir
            .ancestors()
            .nth(4)
            .filter(|_| arch_dir.ancestors().nth(3).and_then(Path::file_name) == Some("repos".as_ref()))
            .map(Path::to_path_buf)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "cannot infer the Koji topdir from {repo} (expected <topdir>/repos/<tag>/<repo_id>/<arch>): pass topdir"
                ))
            })?,
    };
    Ok(RepoLocation::Local { arch_dir, topdir })
}

/// The Python callbacks of one run; an exception raised by one fails the run with it.
struct PyHooks {
    ready: Option<Py<PyAny>>,
    final_list: Option<Py<PyAny>>,
    usage: Option<Py<PyAny>>,
}

impl PyHooks {
    fn new(
        ready: Option<Py<PyAny>>,
        final_list: Option<Py<PyAny>>,
        usage: Option<Py<PyAny>>,
    ) -> Self {
        PyHooks {
            ready,
            final_list,
            usage,
        }
    }
}

/// Calls `callback` (if any) with `value` as Python data.
pub(crate) fn call_with<T: serde::Serialize + ?Sized>(
    callback: &Option<Py<PyAny>>,
    value: &T,
) -> Result<()> {
    let Some(callback) = callback else {
        return Ok(());
    };
    Python::attach(|py| {
        let value = pythonize::pythonize(py, value).map_err(|e| {
            Error::Sink(Box::new(pyo3::exceptions::PyValueError::new_err(
                e.to_string(),
            )))
        })?;
        callback
            .call1(py, (value,))
            .map(|_| ())
            .map_err(|e| Error::Sink(Box::new(e)))
    })
}

impl BuildHooks for PyHooks {
    fn buildroot_ready(&mut self, _arch: &str, packages: &[BuildrootRpm]) -> Result<()> {
        call_with(&self.ready, packages)
    }

    fn buildroot_final(&mut self, packages: &[BuildrootRpm]) -> Result<()> {
        call_with(&self.final_list, packages)
    }

    fn usage(&mut self, usage: &TaskUsage) -> Result<()> {
        call_with(&self.usage, usage)
    }
}

/// What a buildArch run produced: host paths in `result_dir`, the buildroot's package list
/// (kojid's `getPackageList` dicts) and kojid's result dict via `kojid_result`.
#[pyclass(
    name = "BuildArchResult",
    module = "koji_adjutant",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct PyBuildArchResult {
    pub task_id: i64,
    pub keep_srpm: bool,
    pub result_dir: PathBuf,
    pub rpms: Vec<PathBuf>,
    pub srpms: Vec<PathBuf>,
    pub logs: Vec<PathBuf>,
    pub buildroot: Py<PyList>,
    /// Every installed package as mock's buildroot_lock records it (without `url`).
    pub lock_rpms: Py<PyList>,
    pub unknown_rpms: Py<PyList>,
    pub buildroot_arch: String,
    pub cache_hit: bool,
    pub image_id: String,
    pub image_digest: String,
    /// What the task's containers used (see `BuildArchAdapter.run`'s `on_usage`).
    pub usage: Py<PyAny>,
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

#[pymethods]
impl PyBuildArchResult {
    /// kojid's `BuildArchTask.handler` result: `{'rpms', 'srpms', 'logs', 'brootid'}` with
    /// upload-relative paths (`tasks/<id % 10000>/<id>/<file>` unless `upload_path` is given).
    /// `logs` are the uploaded log names (default: this build's own logs); `extra_logs` are
    /// added to them (kojid adds `noarch_rpmdiff.json`). With `keep_srpm` there must be
    /// exactly one SRPM, as kojid requires.
    #[pyo3(signature = (brootid, *, upload_path = None, logs = None, extra_logs = Vec::new()))]
    fn kojid_result<'py>(
        &self,
        py: Python<'py>,
        brootid: i64,
        upload_path: Option<String>,
        logs: Option<Vec<String>>,
        extra_logs: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let upload_path = upload_path.unwrap_or_else(|| task::upload_path(self.task_id));
        let mut logs = logs.unwrap_or_else(|| names(&self.logs));
        logs.extend(extra_logs);
        result_dict(
            py,
            &upload_path,
            self.task_id,
            &names(&self.rpms),
            &names(&self.srpms),
            &logs,
            brootid,
            self.keep_srpm,
        )
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "BuildArchResult(task_id={}, rpms={}, srpms={}, buildroot={} packages, cache_hit={})",
            self.task_id,
            self.rpms.len(),
            self.srpms.len(),
            self.buildroot.bind(py).len(),
            if self.cache_hit { "True" } else { "False" }
        )
    }
}

/// kojid's `BuildArchTask.handler` result for files already chosen: `{'rpms', 'srpms', 'logs',
/// 'brootid'}`, each path `"<upload_path>/<file name>"`. With `keep_srpm` there must be exactly
/// one SRPM (BuildError otherwise, in kojid's words). The kojid glue builds its result with
/// this; `BuildArchResult.kojid_result` is the same for a result's own files.
#[pyfunction]
#[pyo3(signature = (upload_path, task_id, *, rpms, srpms, logs, brootid, keep_srpm))]
#[allow(clippy::too_many_arguments)]
pub fn kojid_build_result<'py>(
    py: Python<'py>,
    upload_path: &str,
    task_id: i64,
    rpms: Vec<PathBuf>,
    srpms: Vec<PathBuf>,
    logs: Vec<String>,
    brootid: i64,
    keep_srpm: bool,
) -> PyResult<Bound<'py, PyDict>> {
    result_dict(
        py,
        upload_path,
        task_id,
        &names(&rpms),
        &names(&srpms),
        &logs,
        brootid,
        keep_srpm,
    )
}

#[allow(clippy::too_many_arguments)]
fn result_dict<'py>(
    py: Python<'py>,
    upload_path: &str,
    task_id: i64,
    rpms: &[String],
    srpms: &[String],
    logs: &[String],
    brootid: i64,
    keep_srpm: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let result = kojid_result(upload_path, task_id, rpms, srpms, logs, brootid, keep_srpm)?;
    let d = PyDict::new(py);
    d.set_item("rpms", result.rpms)?;
    d.set_item("srpms", result.srpms)?;
    d.set_item("logs", result.logs)?;
    d.set_item("brootid", result.brootid)?;
    Ok(d)
}
