//! The buildArch runner: carries out a [`BuildrootPlan`] with a build container and, for root
//! steps, a bootstrap container (see `buildroot::plan` for what each holds), and collects what
//! kojid uploads.
//!
//! Order of work: check every input and make the task's logs (in the result dir, which no
//! container ever mounts); create the build container from the cached root, or from an empty
//! image (tag mode) / the image (image mode) and install the root into it from the bootstrap
//! container (root.log), storing it in the cache; write the per-task files; start it and list
//! its packages for the caller (kojid's `setBuildRootList` then `BUILDING`); rebuild the SRPM,
//! install its checked BuildRequires; build as the unprivileged user with no network
//! (build.log); list the packages again; take the results out through podman's archive
//! endpoint and check their headers; remove both containers on every path.
//!
//! Logs besides root.log and build.log, as kojid uploads them from mock: `buildroot_config.log`
//! (the buildroot's effective configuration, written before any container exists),
//! `hw_info.log` (mock's hw_info sections, from inside the build container),
//! `installed_pkgs.log` (mock's package_state format, just before the build) and dnf's logs
//! (taken out again after every root step, so they reach the hub while the task runs and
//! after a failure). After a failure past the initial package list, the list is read again
//! for the hub (kojid's `updateBuildRootList` after a failed build) and the root is kept as
//! an image for inspection ([`kept`]). Every task that made a container ends with what its
//! containers used (cgroup figures) in state.log and in kojid's log.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use crate::core::accounting::{self, oom_words, Usage};
use crate::core::archive::{take_staged, Extraction, Skipped};
use crate::core::buildroot::arch::image_arches_from;
use crate::core::buildroot::cache::{self, CacheConfig, Cached, Record, Source};
use crate::core::buildroot::header::{read_package, read_srpm, Package, PackageKind};
use crate::core::buildroot::kept;
use crate::core::buildroot::pkglist::{parse_package_list, InstalledRpm, LockedRpm};
use crate::core::buildroot::plan::{
    check_task, plan, ConfigFile, LEAD_END, LEFTOVERS_SURVIVED, REQUIRES_MISSING, RPMDB_WRITABLE,
    SRPM_REBUILD_FAILED,
};
use crate::core::buildroot::requires::install_arguments;
use crate::core::buildroot::result::check_result_package;
use crate::core::buildroot::{
    BuildArchRequest, BuildConfig, BuildrootMode, BuildrootOptions, BuildrootPlan, BuildrootRpm,
    ExtraValue, Input, LogTarget, Product, RepoLocation, RunAs, Step, BUILD_GID, BUILD_UID,
    INSTALL_ROOT, MAX_BUILDREQUIRES_LOOPS, PAUSE_UID, RPMS_DIR, SRPMS_DIR,
};
use crate::core::cancel::Cancel;
use crate::core::error::{Error, Result, SinkFailure};
use crate::core::frames;
use crate::core::logsink::{format_timestamp, FileSink, FileSinkOptions, LineMerged};
use crate::core::podman::{ExecOptions, ImageInfo, PodmanClient, PullPolicy};
use crate::core::shell;
use crate::core::sink::{NullSink, OutputSink, Stream};
use crate::core::spec::{
    ContainerSpec, IdMap, NetworkMode, ResourceLimits, SelinuxLabel, VolumeMount,
};
use crate::core::task::TaskContext;

const LOG_TARGET: &str = "koji_adjutant::buildarch";

/// Capabilities root needs in the bootstrap container to install RPMs into the root (file
/// owners, modes, file capabilities, scriptlets switching users, rpm chrooting into the root
/// for scriptlets). The build container gets none: its bounding set is empty.
pub const INSTALL_CAPS: [&str; 8] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETFCAP",
    "SETGID",
    "SETUID",
    "SYS_CHROOT",
];

/// The main process of both containers: podman's catatonit (PID 1, which reaps orphans)
/// running a second catatonit that pauses, as `nobody`. Nothing of the root runs as it.
const PAUSE_COMMAND: [&str; 2] = ["/run/podman-init", "-P"];

/// Where dnf's cache goes: a scratch volume of the bootstrap container, so downloads never
/// land in the root (or in a cached root).
const DNF_CACHE: &str = "/br/var/cache/dnf";

/// Largest stdout a query may produce (a package list of 50 000 packages is ~8 MB).
const QUERY_LIMIT: usize = 64 * 1024 * 1024;
/// Largest package manager log taken out of a root.
const DNF_LOG_LIMIT: u64 = 256 * 1024 * 1024;

/// How an adapter builds (from kojid's options and the adapter's config).
#[derive(Debug, Clone)]
pub struct BuildArchConfig {
    /// Tag mode: the bootstrap image, whose dnf installs the root. Image mode: the image that
    /// is the root (and its own bootstrap).
    pub image: String,
    pub mode: BuildrootMode,
    pub pull_policy: PullPolicy,
    pub options: BuildrootOptions,
    pub limits: ResourceLimits,
    /// Applied to the mounts the task owns (the SRPM), never to Koji's shared directories.
    pub selinux_label: Option<SelinuxLabel>,
    /// Image mode: name of the Koji external repo the image's own RPMs come from, if any.
    pub image_external_repo: Option<String>,
    pub cache: CacheConfig,
    pub log_cap_bytes: Option<u64>,
    /// Arches the image builds; `None` derives them from the image's architecture.
    pub image_arches: Option<Vec<String>>,
    /// One user namespace mapping for both containers of a task; `None`: none.
    pub userns: Option<IdMap>,
    /// How long a failed build's root is kept for inspection; `None`: not kept.
    pub keep_failed_root: Option<Duration>,
    /// Seconds each step without a timeout of its own (every root step: dnf's installs, the
    /// root's export; and the queries) may run (the bindings' default: two hours).
    /// rpmbuild's steps have `rpmbuild_timeout`.
    pub dnf_timeout: u64,
    /// Seconds podman lets either container live before it kills it, a backstop should this
    /// process die without removing them; `None`: [`default_backstop`].
    pub container_timeout: Option<u64>,
}

/// The containers' backstop unless one is configured: the longest a task runs without a
/// hang, rpmbuild's timeout plus three of dnf's (the root, static and dynamic
/// BuildRequires). Never the primary limit: each step has its own.
pub fn default_backstop(rpmbuild_timeout: u64, dnf_timeout: u64) -> u64 {
    rpmbuild_timeout.saturating_add(dnf_timeout.saturating_mul(3))
}

impl BuildArchConfig {
    fn backstop(&self) -> u64 {
        self.container_timeout
            .unwrap_or_else(|| default_backstop(self.options.rpmbuild_timeout, self.dnf_timeout))
    }
}

/// Where the caller reports to the hub while the task runs.
pub trait BuildHooks: Send {
    /// After init, before the build: kojid's `setBuildRootList`, then `BUILDING`.
    fn buildroot_ready(&mut self, buildroot_arch: &str, packages: &[BuildrootRpm]) -> Result<()>;

    /// The buildroot's packages after the build step, or after a failure that came after
    /// `buildroot_ready`: kojid's `updateBuildRootList`, which it sends whatever the outcome.
    fn buildroot_final(&mut self, _packages: &[BuildrootRpm]) -> Result<()> {
        Ok(())
    }

    /// What the task's containers used, once they are done (every path but cancellation).
    fn usage(&mut self, _usage: &TaskUsage) -> Result<()> {
        Ok(())
    }
}

/// What the containers of one task used (`None`: that container was never made, or its
/// cgroup could not be read).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct TaskUsage {
    pub build: Option<Usage>,
    pub bootstrap: Option<Usage>,
}

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct BuildArchOutcome {
    pub result_dir: PathBuf,
    pub rpms: Vec<PathBuf>,
    pub srpms: Vec<PathBuf>,
    pub logs: Vec<PathBuf>,
    /// The buildroot's packages after the build (kojid's `updateBuildRootList`).
    pub buildroot: Vec<BuildrootRpm>,
    /// Every installed package as a lockfile records it (image mode: the image's too).
    pub lock: Vec<LockedRpm>,
    /// Image mode: image RPMs Koji cannot know (no `image_external_repo` configured).
    pub unknown_rpms: Vec<BuildrootRpm>,
    pub buildroot_arch: String,
    pub cache_hit: bool,
    /// The bootstrap image (tag mode) or the buildroot image (image mode).
    pub image: ImageInfo,
    pub usage: TaskUsage,
}

/// The task's log files: root.log and build.log as mock writes them, state.log for the
/// adapter's own steps, and container.log with every byte of container output but the data
/// the runner captures from stdout (package lists, the root's tar for the cache).
struct TaskLogs {
    root: LineMerged<FileSink>,
    build: LineMerged<FileSink>,
    state: FileSink,
    container: FileSink,
    /// Every log of the task in the result dir, in the order made (what kojid uploads).
    paths: Vec<PathBuf>,
    dir: PathBuf,
    options: FileSinkOptions,
}

impl TaskLogs {
    fn open(result_dir: &Path, container_log: PathBuf, cap: Option<u64>) -> Result<Self> {
        let plain = FileSinkOptions {
            cap_bytes: cap,
            ..Default::default()
        };
        let root = LineMerged::new(FileSink::create(result_dir.join("root.log"), plain)?);
        let build = LineMerged::new(FileSink::create(result_dir.join("build.log"), plain)?);
        let state = FileSink::create(result_dir.join("state.log"), plain)?;
        let container = FileSink::create(container_log, FileSinkOptions::container_log(cap))?;
        let paths = [root.inner(), build.inner(), &state]
            .iter()
            .map(|s| s.path().to_path_buf())
            .collect();
        Ok(TaskLogs {
            root,
            build,
            state,
            container,
            paths,
            dir: result_dir.to_path_buf(),
            options: plain,
        })
    }

    /// Writes the whole log `name` (a new file in the result dir).
    fn write_log(&mut self, name: &str, content: &[u8]) -> Result<PathBuf> {
        let mut sink = FileSink::create(self.dir.join(name), self.options)?;
        sink.write(Stream::Stdout, content).map_err(Error::Sink)?;
        sink.finish().map_err(Error::Sink)?;
        let path = sink.path().to_path_buf();
        self.add_path(path.clone());
        Ok(path)
    }

    /// Counts `path`, a log in the result dir, among the task's logs (once).
    fn add_path(&mut self, path: PathBuf) {
        if !self.paths.contains(&path) {
            self.paths.push(path);
        }
    }

    /// A timestamped line of the adapter's own in state.log, root.log or build.log.
    fn note(&mut self, target: Option<LogTarget>, line: &str) -> Result<()> {
        self.note_at(target, SystemTime::now(), line)
    }

    /// [`TaskLogs::note`] stamped with `when`.
    fn note_at(&mut self, target: Option<LogTarget>, when: SystemTime, line: &str) -> Result<()> {
        let text = format!("{} {line}\n", format_timestamp(when));
        match target {
            None => self.state.write(Stream::Stdout, text.as_bytes()),
            Some(target) => self
                .merged(target)
                .write_lines(Stream::Stdout, text.as_bytes()),
        }
        .map_err(Error::Sink)
    }

    /// The sink of a step whose output goes to `target`, container.log and `extra`.
    fn step_sink<'a, 'c>(
        &'a mut self,
        target: LogTarget,
        extra: &'a mut dyn OutputSink,
        capture: Option<&'a mut (dyn Write + Send + 'c)>,
    ) -> StepSink<'a, 'c> {
        let log = match target {
            LogTarget::RootLog => &mut self.root,
            LogTarget::BuildLog => &mut self.build,
        };
        StepSink {
            log,
            container: &mut self.container,
            extra,
            capture,
        }
    }

    fn merged(&mut self, target: LogTarget) -> &mut LineMerged<FileSink> {
        match target {
            LogTarget::RootLog => &mut self.root,
            LogTarget::BuildLog => &mut self.build,
        }
    }

    fn path(&self, target: LogTarget) -> PathBuf {
        match target {
            LogTarget::RootLog => self.root.inner().path().to_path_buf(),
            LogTarget::BuildLog => self.build.inner().path().to_path_buf(),
        }
    }

    fn finish(mut self) {
        let results = [
            ("root.log", self.root.finish()),
            ("build.log", self.build.finish()),
            ("state.log", self.state.finish()),
            ("container.log", self.container.finish()),
        ];
        for (name, result) in results {
            if let Err(e) = result {
                warn!(target: LOG_TARGET, "finishing {name}: {e}");
            }
        }
    }
}

/// The sink of one step: its log, container.log and the caller's sink; stdout optionally
/// captured (bounded) for parsing instead.
struct StepSink<'a, 'c> {
    log: &'a mut LineMerged<FileSink>,
    container: &'a mut FileSink,
    extra: &'a mut dyn OutputSink,
    capture: Option<&'a mut (dyn Write + Send + 'c)>,
}

impl OutputSink for StepSink<'_, '_> {
    fn write(&mut self, stream: Stream, data: &[u8]) -> std::result::Result<(), SinkFailure> {
        if stream == Stream::Stdout {
            if let Some(capture) = self.capture.as_deref_mut() {
                return capture.write_all(data).map_err(|e| e.into());
            }
        }
        self.container.write(stream, data)?;
        self.log.write(stream, data)?;
        self.extra.write(stream, data)
    }
}

/// How long a lead step's container waits, after its command, for the hardware report
/// beside it (which runs as `nobody` in the container) before it is released.
const LEAD_REPORT_WAIT: Duration = Duration::from_secs(10);

/// How long a released lead step's container may take to end before it is stopped.
const LEAD_EXIT_WAIT: Duration = Duration::from_secs(10);

/// Why a lead step has no exit status.
#[derive(Debug)]
enum LeadEnd {
    /// The container ended before its wrapper said the command had.
    Exited,
    /// Its stdout had something else than the wrapper's one line.
    Unexpected,
    TimedOut,
}

/// The output of a lead step's container: stderr (the command's output) to the step's
/// sinks; stdout, where only [`LEAD_WRAPPER`] writes, parsed for its line
/// `koji-adjutant-lead-end STATUS`, sent on `ended`.
struct LeadSink<'a, 'c> {
    step: StepSink<'a, 'c>,
    line: Vec<u8>,
    ended: Option<tokio::sync::oneshot::Sender<std::result::Result<i64, LeadEnd>>>,
}

impl OutputSink for LeadSink<'_, '_> {
    fn write(&mut self, stream: Stream, data: &[u8]) -> std::result::Result<(), SinkFailure> {
        if stream == Stream::Stderr {
            return self.step.write(stream, data);
        }
        let Some(ended) = self.ended.take() else {
            return Ok(());
        };
        self.line.extend_from_slice(data);
        let said = match self.line.iter().position(|b| *b == b'\n') {
            Some(end) => parse_lead_end(self.line.get(..end).unwrap_or_default()),
            None if self.line.len() <= 64 => {
                self.ended = Some(ended);
                return Ok(());
            }
            None => Err(LeadEnd::Unexpected),
        };
        let _ = ended.send(said);
        Ok(())
    }

    fn finish(&mut self) -> std::result::Result<(), SinkFailure> {
        self.step.finish()
    }
}

/// The exit status in [`LEAD_WRAPPER`]'s line.
fn parse_lead_end(line: &[u8]) -> std::result::Result<i64, LeadEnd> {
    let line = std::str::from_utf8(line).map_err(|_| LeadEnd::Unexpected)?;
    match line.split(' ').collect::<Vec<_>>().as_slice() {
        [word, status] if *word == LEAD_END => status.parse().map_err(|_| LeadEnd::Unexpected),
        _ => Err(LeadEnd::Unexpected),
    }
}

/// A query's stdout, in memory up to [`QUERY_LIMIT`] bytes.
struct Bounded<'a>(&'a mut Vec<u8>);

impl Write for Bounded<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + data.len() > QUERY_LIMIT {
            return Err(std::io::Error::other(format!(
                "query output exceeds {QUERY_LIMIT} bytes"
            )));
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The SHA-256 of a local repo's `repodata/repomd.xml`: what the repo holds.
fn local_repomd_sha256(arch_dir: &Path) -> Result<String> {
    let path = arch_dir.join("repodata").join("repomd.xml");
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::invalid(format!(
            "cannot read the repo's {}: {e} (is the repo ready?)",
            path.display()
        ))
    })?;
    Ok(cache::sha256_hex(&bytes))
}

fn repomd_digest(request: &BuildArchRequest) -> Result<String> {
    match (&request.repomd_sha256, &request.repo) {
        (Some(d), _) => {
            if d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit()) {
                Ok(d.to_ascii_lowercase())
            } else {
                Err(Error::invalid(format!(
                    "repomd_sha256 must be 64 hex digits, not {d:?}"
                )))
            }
        }
        (None, RepoLocation::Local { arch_dir, .. }) => local_repomd_sha256(arch_dir),
        (None, RepoLocation::Url(url)) => Err(Error::invalid(format!(
            "a URL repo needs the SHA-256 of its repodata/repomd.xml (repomd_sha256): {url}"
        ))),
    }
}

/// The arches `config`'s image builds: as configured, else from its architecture.
fn image_arches(config: &BuildArchConfig, image: &ImageInfo) -> Vec<String> {
    match &config.image_arches {
        Some(arches) => arches.clone(),
        None => image_arches_from(&image.architecture),
    }
}

/// Whether this builder takes a buildArch task for `arch` of a tag with `build_config`
/// (`Error::Refused` if not; see [`check_task`]), before the caller makes the hub's
/// buildroot record. Makes the image available. Returns the buildroot arch.
pub async fn check(
    client: &PodmanClient,
    config: &BuildArchConfig,
    arch: &str,
    build_config: &BuildConfig,
    buildroot_arch: Option<&str>,
) -> Result<String> {
    client
        .ensure_image(&config.image, config.pull_policy)
        .await?;
    let image = client.image_info(&config.image).await?;
    check_task(
        arch,
        build_config,
        buildroot_arch,
        &image_arches(config, &image),
    )
}

/// Runs one buildArch task. Every path removes the containers; logs are kept.
pub async fn run(
    client: &PodmanClient,
    ctx: &TaskContext,
    config: &BuildArchConfig,
    request: &BuildArchRequest,
    sink: &mut dyn OutputSink,
    hooks: &mut dyn BuildHooks,
    cancel: &Cancel,
) -> Result<BuildArchOutcome> {
    // Everything that can be checked is checked before a container exists.
    ctx.validate()?;
    let mut request = request.clone();
    let srpm = match &mut request.input {
        Input::Srpm(path) => {
            *path = ctx.ensure_inside(path)?;
            Some(read_srpm(path)?)
        }
        Input::Checkout(checkout) => {
            checkout.dir = ctx.ensure_inside(&checkout.dir)?;
            None
        }
    };
    cache::validate(&config.cache)?;
    if config.mode == BuildrootMode::Tag && config.image_external_repo.is_some() {
        return Err(Error::invalid(
            "image_external_repo applies to image mode only: in tag mode every package of the buildroot comes from the tag's repo",
        ));
    }
    let repomd = repomd_digest(&request)?;
    client
        .ensure_image(&config.image, config.pull_policy)
        .await?;
    let image = client.image_info(&config.image).await?;
    let image_arches = image_arches(config, &image);
    let mut options = config.options.clone();
    options.keep_srpm = request.keep_srpm;
    let plan = plan(
        ctx.task_id,
        config.mode,
        &request,
        &options,
        &image_arches,
        srpm.as_ref(),
    )?;

    let result_dir = ctx.fresh_dir("result")?;
    let scratch_dir = ctx.fresh_dir("buildreqs")?;
    let container_log = ctx
        .container_log()
        .unwrap_or_else(|| result_dir.join("container.log"));
    let mut logs = TaskLogs::open(&result_dir, container_log, config.log_cap_bytes)?;
    let role = match config.mode {
        BuildrootMode::Tag => "bootstrap image",
        BuildrootMode::Image => "buildroot image (image mode: not a mock buildroot)",
    };
    logs.note(
        None,
        &format!(
            "Buildroot mode {}, {role} {} (id {}, digest {})",
            config.mode.as_str(),
            config.image,
            image.id,
            if image.digest.is_empty() {
                "none"
            } else {
                &image.digest
            }
        ),
    )?;
    logs.note(
        None,
        &format!(
            "Buildroot repo {} (repo {} of {}, repomd.xml sha256 {repomd})",
            plan.repo_baseurl, plan.repo_id, plan.tag_name
        ),
    )?;
    for ignored in &plan.ignored_extra {
        logs.note(
            None,
            &format!("Ignoring tag setting {ignored}: it does not apply to container buildroots"),
        )?;
    }
    logs.write_log(
        "buildroot_config.log",
        config_report(config, &plan, &image, &repomd).as_bytes(),
    )?;
    match kept::remove_expired(client).await {
        Ok(0) => {}
        Ok(n) => logs.note(None, &format!("Removed {n} expired kept buildroot(s)"))?,
        Err(e) => warn!(target: LOG_TARGET, "cannot look for expired kept buildroots: {e}"),
    }
    let key = cache::key(&plan, &image.id, &repomd);
    let (cached, cache_lock) = if config.cache.enabled {
        cached_or_locked(client, &config.cache, &key, cancel, &mut logs).await?
    } else {
        (None, None)
    };

    let staging = Staging::make(&scratch_dir, "staged", config.userns.map(|m| m.host_base))?;
    let mut task = Task {
        client,
        config,
        plan: &plan,
        logs,
        sink,
        cancel,
        arch: request.arch.clone(),
        build_id: None,
        source_id: None,
        bootstrap_id: None,
        scratch_dir,
        staging,
        rounds: 0,
        ready: false,
        last_listed: Vec::new(),
        baseline: Vec::new(),
        oom_seen: (0, 0),
        cache_lock,
        stored_image: None,
        rpmdb_writable: true,
        listed_after_root: false,
        step_started: std::sync::Arc::new(tokio::sync::watch::Sender::new(false)),
        hw_done: std::sync::Arc::new(tokio::sync::Notify::new()),
        lead_usage: None,
        retired: Vec::new(),
    };
    let mut outcome = task
        .work(&key, cached.as_ref(), hooks, &result_dir, image)
        .await;
    if !cancel.is_cancelled() {
        if let Err(e) = &outcome {
            task.after_failure(hooks, e).await;
        }
        let usage = task.usage().await;
        if let Err(e) = hooks.usage(&usage) {
            warn!(target: LOG_TARGET, "the usage callback failed: {e}");
        }
        if let Ok(o) = &mut outcome {
            o.usage = usage;
        }
    }
    task.remove_containers().await;
    let Task { mut logs, .. } = task;
    let outcome = match outcome {
        Ok(outcome) => {
            let _ = logs.note(None, "Finished: build succeeded");
            Ok(outcome)
        }
        Err(e) => {
            let _ = logs.note(None, &format!("Failed: {e}"));
            Err(e)
        }
    };
    let log_paths = logs.paths.clone();
    logs.finish();
    outcome.map(|mut o| {
        o.logs = log_paths;
        o
    })
}

/// The cached root of `key`, or else the key's lock, so that of the tasks missing the cache
/// for one key at once only one installs and stores the root while the others wait for it and
/// then start from what it stored. Without the lock (it could not be taken: a warning), the
/// task installs its own root as before.
async fn cached_or_locked(
    client: &PodmanClient,
    cache: &CacheConfig,
    key: &str,
    cancel: &Cancel,
    logs: &mut TaskLogs,
) -> Result<(Option<Cached>, Option<cache::KeyLock>)> {
    if let Some(cached) = cache::lookup(client, key).await? {
        return Ok((Some(cached), None));
    }
    let started = Instant::now();
    let mut waited = false;
    let locked = cache::lock(cache, key, cancel, || {
        waited = true;
        let _ = logs.note(
            None,
            &format!("Waiting for another task installing the buildroot of cache key {key}"),
        );
    })
    .await;
    let lock = match locked {
        Ok(lock) => Some(lock),
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(e) => {
            warn!(target: LOG_TARGET, "buildroot cache lock not taken: {e}");
            logs.note(None, &format!("Buildroot cache lock not taken: {e}"))?;
            None
        }
    };
    if waited {
        logs.note(
            None,
            &format!(
                "Waited {:.2} s for the buildroot of cache key {key}",
                started.elapsed().as_secs_f64()
            ),
        )?;
    }
    // the task that held the lock may have stored the root meanwhile
    match cache::lookup(client, key).await? {
        Some(cached) => Ok((Some(cached), None)),
        None => Ok((None, lock)),
    }
}

/// The build container's result directories on the host: `RPMS` and `SRPMS` in the task's
/// scratch dir, owned by the build user as the host sees it (in the user namespace: the
/// mapped ids), mounted read-write at [`RPMS_DIR`] and [`SRPMS_DIR`]. Only the build user
/// writes them; the host reads them with [`take_staged`] (no link followed, regular files
/// only) into directories no container sees.
struct Staging {
    rpms: PathBuf,
    srpms: PathBuf,
}

impl Staging {
    /// The two dirs `NAME-RPMS` and `NAME-SRPMS` in the scratch dir.
    fn make(scratch_dir: &Path, name: &str, host_base: Option<u32>) -> Result<Staging> {
        use std::os::unix::fs::DirBuilderExt;
        let base = host_base.unwrap_or(0);
        let (uid, gid) = (base + BUILD_UID, base + BUILD_GID);
        let make = |kind: &str| -> Result<PathBuf> {
            let dir = scratch_dir.join(format!("{name}-{kind}"));
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&dir)
                .and_then(|()| std::os::unix::fs::chown(&dir, Some(uid), Some(gid)))
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            Ok(dir)
        };
        Ok(Staging {
            rpms: make("RPMS")?,
            srpms: make("SRPMS")?,
        })
    }

    /// The host directory behind a container directory, if it is one of the staged ones.
    fn host_dir(&self, container_dir: &str) -> Option<PathBuf> {
        match container_dir {
            RPMS_DIR => Some(self.rpms.clone()),
            SRPMS_DIR => Some(self.srpms.clone()),
            _ => None,
        }
    }
}

/// Waits until the cgroup at `cgroup_path` has no process left (polled every 2 ms, for at
/// most [`LEAD_EXIT_WAIT`]).
async fn processes_gone(cgroup_path: &str, cancel: &Cancel) -> Result<()> {
    let root = Path::new(accounting::CGROUP_ROOT);
    let deadline = Instant::now() + LEAD_EXIT_WAIT;
    loop {
        match accounting::processes_left(root, cgroup_path) {
            Some(0) => return Ok(()),
            None => {
                return Err(Error::container(
                    "wait",
                    format!("cannot read the processes of cgroup {cgroup_path}"),
                ))
            }
            Some(_) if Instant::now() >= deadline => {
                return Err(Error::container(
                    "wait",
                    "the build container's processes did not end",
                ))
            }
            Some(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(2)) => {}
            () = cancel.cancelled() => return Err(Error::Interrupted),
        }
    }
}

/// [`take_staged`] off the runtime's threads (results can be large).
async fn take_staged_async(
    dir: PathBuf,
    wanted: fn(&str) -> bool,
    dest: &Path,
    max_bytes: Option<u64>,
) -> Result<Extraction> {
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || take_staged(&dir, &wanted, &dest, max_bytes))
        .await
        .map_err(|e| Error::io("taking the results", std::io::Error::other(e)))?
}

/// What runs in the build container beside the task's own steps, touching nothing of the
/// task but files of its own: the hardware report (mock's hw_info.log, as `nobody`, which no
/// build user process can signal, and which the steps' reaper leaves alone), and a cached
/// root's dnf logs (root's files, which the build user cannot change).
struct Beside<'a> {
    client: &'a PodmanClient,
    cancel: &'a Cancel,
    build_id: String,
    hw_step: Step,
    hw_timeout: u64,
    limits: ResourceLimits,
    logs_dir: PathBuf,
    log_options: FileSinkOptions,
    /// A scratch dir for a cached root's dnf logs (`None`: none to take).
    dnf_logs_into: Option<PathBuf>,
    /// The report's exec is requested once a step's exec has started (or the steps ended):
    /// podman starts one exec of a container at a time, and the first step comes first.
    step_started: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// Notified once the report has ended.
    hw_done: std::sync::Arc<tokio::sync::Notify>,
}

/// What [`Beside`] did: hw_info.log's path, the report's exit status and time; the dnf logs
/// put in the logs dir and the notes on what was not taken.
struct BesideDone {
    hw: Result<(PathBuf, i64, Duration)>,
    dnf_logs: Option<Result<TakenLogs>>,
}

impl Beside<'_> {
    async fn run(self) -> BesideDone {
        let hw = async {
            let hw = self.hw_info().await;
            self.hw_done.notify_one();
            hw
        };
        let (hw, dnf_logs) = tokio::join!(hw, self.dnf_logs());
        BesideDone { hw, dnf_logs }
    }

    /// hw_info.log: the report from inside the build container, then the container's limits.
    async fn hw_info(&self) -> Result<(PathBuf, i64, Duration)> {
        self.step_started_wait().await;
        let started = Instant::now();
        let mut report = Vec::new();
        let opts = exec_options(&self.hw_step);
        let mut sink = Captured(&mut report);
        let argv = self.hw_step.exec_argv();
        let run = self
            .client
            .exec(&self.build_id, &argv, &opts, &mut sink, self.cancel);
        let code = tokio::time::timeout(Duration::from_secs(self.hw_timeout), run)
            .await
            .map_err(|_| {
                Error::container(
                    "exec",
                    format!("the hardware report took over {} s", self.hw_timeout),
                )
            })??;
        let limit = |v: Option<String>| v.unwrap_or_else(|| "unlimited".to_owned());
        report.extend_from_slice(
            format!(
                "\n\nContainer limits:\nmemory: {}\ncpus: {}\npids: {}\n",
                limit(self.limits.memory_bytes.map(|b| format!("{b} bytes"))),
                limit(self.limits.cpus.map(|c| c.to_string())),
                limit(self.limits.pids.map(|p| p.to_string())),
            )
            .as_bytes(),
        );
        let mut file = FileSink::create(self.logs_dir.join("hw_info.log"), self.log_options)?;
        file.write(Stream::Stdout, &report).map_err(Error::Sink)?;
        file.finish().map_err(Error::Sink)?;
        Ok((file.path().to_path_buf(), code, started.elapsed()))
    }

    /// Returns once a step's exec has started (or the steps have ended).
    async fn step_started_wait(&self) {
        let _ = self
            .step_started
            .subscribe()
            .wait_for(|started| *started)
            .await;
    }

    /// A cached root's dnf logs (see [`take_dnf_logs`]).
    async fn dnf_logs(&self) -> Option<Result<TakenLogs>> {
        let scratch = self.dnf_logs_into.as_ref()?;
        // not before the first step has started: podman would make its start wait for the copy
        self.step_started_wait().await;
        Some(
            take_dnf_logs(
                self.client,
                &self.build_id,
                scratch,
                &self.logs_dir,
                self.cancel,
            )
            .await,
        )
    }
}

/// dnf's logs put in the logs dir, and what was not taken.
type TakenLogs = (Vec<PathBuf>, Vec<Skipped>);

/// dnf's logs of the build container's root (`/var/log/dnf*.log`), taken out through the
/// archive endpoint into `scratch` (made here, removed after) and renamed into `logs_dir`, in
/// place of earlier copies (a new file: an uploader reads it again).
async fn take_dnf_logs(
    client: &PodmanClient,
    build_id: &str,
    scratch: &Path,
    logs_dir: &Path,
    cancel: &Cancel,
) -> Result<TakenLogs> {
    let taken = async {
        std::fs::create_dir(scratch)
            .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
        let got = client
            .extract_files(
                build_id,
                "/var/log",
                is_dnf_log,
                scratch,
                Some(DNF_LOG_LIMIT),
                cancel,
            )
            .await?;
        let mut paths = Vec::new();
        for file in got.files {
            let into = logs_dir.join(&file.name);
            std::fs::rename(&file.path, &into)
                .map_err(|e| Error::io(format!("moving {} into place", into.display()), e))?;
            paths.push(into);
        }
        Ok((paths, got.skipped))
    }
    .await;
    let _ = std::fs::remove_dir_all(scratch);
    taken
}

/// How podman runs `step`: its environment, working directory and user.
fn exec_options(step: &Step) -> ExecOptions {
    ExecOptions {
        environment: step.exec_env().into_iter().collect(),
        workdir: Some(step.workdir.clone()),
        user: Some(step.user.podman_user()),
    }
}

/// Both streams of an exec, in memory up to [`QUERY_LIMIT`] bytes.
struct Captured<'a>(&'a mut Vec<u8>);

impl OutputSink for Captured<'_> {
    fn write(&mut self, _stream: Stream, data: &[u8]) -> std::result::Result<(), SinkFailure> {
        Bounded(self.0).write_all(data).map_err(|e| e.into())
    }
}

/// A root ready to be saved as an image (see `Task::snapshot`).
enum Snapshot {
    Container(String),
    Tar(PathBuf),
}

/// The buildroot's first list, split as the hub gets it.
struct Listed {
    /// What Koji knows (`buildroot_ready`'s list).
    initial: Vec<BuildrootRpm>,
    /// Image mode: the image's own RPMs Koji cannot know.
    unknown: Vec<BuildrootRpm>,
}

struct Task<'a> {
    client: &'a PodmanClient,
    config: &'a BuildArchConfig,
    plan: &'a BuildrootPlan,
    logs: TaskLogs,
    sink: &'a mut dyn OutputSink,
    cancel: &'a Cancel,
    arch: String,
    /// The build container, once created.
    build_id: Option<String>,
    /// The source container while its step runs.
    source_id: Option<String>,
    /// The bootstrap container, once created (lazily: a warm build without requirements to
    /// install never needs one).
    bootstrap_id: Option<String>,
    /// Host directory for the rebuilt SRPMs whose requirements are read.
    scratch_dir: PathBuf,
    /// Host directories bind-mounted read-write at [`RPMS_DIR`] and [`SRPMS_DIR`] of the build
    /// container: rpmbuild's results, read with [`take_staged`] once the step's processes
    /// are gone.
    staging: Staging,
    rounds: usize,
    /// `buildroot_ready` was called: the hub has a list to update.
    ready: bool,
    /// The packages as last listed (for installed_pkgs.log).
    last_listed: Vec<InstalledRpm>,
    /// Image mode: the image's own packages (see `classify`).
    baseline: Vec<String>,
    /// OOM kills already reported, of the build and the bootstrap container.
    oom_seen: (u64, u64),
    /// The cache key's lock while this task installs and stores a fresh root.
    cache_lock: Option<cache::KeyLock>,
    /// The cache image this task stored, if it made and stored a fresh root.
    stored_image: Option<String>,
    /// The last package list said the build user can write the rpm database (or no list was
    /// read yet): the list is read again after the build.
    rpmdb_writable: bool,
    /// `last_listed` is what the rpm database held after the last root step.
    listed_after_root: bool,
    /// Notified when an exec of a step has started (and when the steps end): the hardware
    /// report waits for it, so that its exec does not delay the first step's start.
    step_started: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// Notified when the hardware report has ended (a lead step's container waits for it).
    hw_done: std::sync::Arc<tokio::sync::Notify>,
    /// A lead step's container and what it used, read before it ended (see [`Task::lead`]).
    lead_usage: Option<(String, Usage)>,
    /// Build containers the task no longer uses (a lead step's, once the task went on the
    /// stepwise way), removed with the others.
    retired: Vec<String>,
}

impl Task<'_> {
    async fn work(
        &mut self,
        key: &str,
        cached: Option<&Cached>,
        hooks: &mut dyn BuildHooks,
        result_dir: &Path,
        image: ImageInfo,
    ) -> Result<BuildArchOutcome> {
        let base = match (cached, self.plan.mode) {
            (Some(c), _) => c.image_id.clone(),
            (None, BuildrootMode::Tag) => self.client.ensure_empty_image().await?,
            (None, BuildrootMode::Image) => self.config.image.clone(),
        };
        let record = cached.and_then(|c| cache::read_record(&self.config.cache, key, &c.image_id));
        // A warm build whose root is listed by its cache record, in an rpm database the build
        // user cannot write, needs no step before the build and no list after it: the build
        // is the build container's main process (see `Task::lead`).
        let lead = self.plan.product == Product::Binaries
            && record.as_ref().is_some_and(|r| !r.rpmdb_writable);
        self.logs.note(
            None,
            &format!(
                "Creating build container from {} ({}){}",
                base,
                match cached {
                    Some(_) => format!("cached buildroot {key}"),
                    None => format!("fresh buildroot, cache key {key}"),
                },
                if lead {
                    ", the build as its main process"
                } else {
                    ""
                }
            ),
        )?;
        let build_id = if lead {
            self.create_lead_container(&base).await?
        } else {
            self.create_build_container(&base).await?
        };
        let baseline = match cached {
            Some(c) => {
                cache::touch(&self.config.cache, key);
                // what mock's root.log says of a root cache, so that a warm task's root.log
                // (no root step runs in it) says where its root came from
                self.logs.note(
                    Some(LogTarget::RootLog),
                    &format!(
                        "Using the cached buildroot {key} (image {}): installed from the tag's repo when it was cached, not installed again",
                        c.image_id
                    ),
                )?;
                self.note_kernel()?;
                c.baseline.clone()
            }
            None => self.install_root(key).await?,
        };
        if !lead {
            put_files_and_start(self.client, &build_id, &self.plan.build_files).await?;
        }
        self.baseline = baseline.clone();
        // Beside the task's steps: the hardware report, and a cached root's dnf logs (a fresh
        // root's were taken after each of its root steps).
        let beside = Beside {
            client: self.client,
            cancel: self.cancel,
            build_id,
            hw_step: self.plan.hw_info.clone(),
            hw_timeout: self.config.dnf_timeout,
            limits: self.config.limits.clone(),
            logs_dir: self.logs.dir.clone(),
            log_options: self.logs.options,
            dnf_logs_into: cached.map(|_| self.scratch_dir.join("cached-logs")),
            step_started: self.step_started.clone(),
            hw_done: self.hw_done.clone(),
        };
        let steps = async {
            let outcome = async {
                if lead {
                    return self
                        .lead_then_steps(key, cached, record, hooks, result_dir, image, &base)
                        .await;
                }
                let listed = self.initial_packages(key, cached, record).await?;
                let listed = self.ready(listed, hooks)?;
                self.steps(listed, None, cached, hooks, result_dir, image)
                    .await
            }
            .await;
            // a report still waiting for a step to start waits no longer
            self.step_started.send_replace(true);
            outcome
        };
        let (beside, outcome) = tokio::join!(beside.run(), steps);
        self.beside_done(beside);
        outcome
    }

    /// A warm build begun by [`Task::lead`]. When rpmbuild finds a BuildRequires missing, the
    /// task goes on the stepwise way in a new build container from the same cached root
    /// (the lead's root is left as it was: its build user's processes ran there as its main
    /// process), starting with the installs the lead's rebuilt SRPM asks for.
    #[allow(clippy::too_many_arguments)]
    async fn lead_then_steps(
        &mut self,
        key: &str,
        cached: Option<&Cached>,
        record: Option<Record>,
        hooks: &mut dyn BuildHooks,
        result_dir: &Path,
        image: ImageInfo,
        base: &str,
    ) -> Result<BuildArchOutcome> {
        let listed = self.initial_packages(key, cached, record).await?;
        let listed = self.ready(listed, hooks)?;
        // the hub has a list to update, after a failure too
        self.ready = true;
        self.write_installed_pkgs_log()?;
        let code = self.lead(&self.plan.rebuild_and_build_step.clone()).await?;
        if code != REQUIRES_MISSING {
            return self
                .finish_build(listed.unknown, cached, hooks, result_dir, image)
                .await;
        }
        let rebuilt = self
            .take_one(SRPMS_DIR, is_srpm, PackageKind::Source)
            .await?;
        self.retired.extend(self.build_id.take());
        self.staging = Staging::make(
            &self.scratch_dir,
            "again",
            self.config.userns.map(|m| m.host_base),
        )?;
        self.logs.note(
            None,
            &format!(
                "Creating build container from {base} again: the build needs packages the cached root lacks"
            ),
        )?;
        let build_id = self.create_build_container(base).await?;
        put_files_and_start(self.client, &build_id, &self.plan.build_files).await?;
        self.steps(listed, Some(rebuilt), cached, hooks, result_dir, image)
            .await
    }

    /// What [`Beside`] did, in state.log and the task's list of logs.
    fn beside_done(&mut self, done: BesideDone) {
        let line = match done.hw {
            Ok((path, code, took)) => {
                self.logs.add_path(path);
                format!(
                    "Reported the hardware in hw_info.log beside the task's steps (exit status {code}, {:.2} s){}",
                    took.as_secs_f64(),
                    if code == 0 { "" } else { ": the report is incomplete" }
                )
            }
            Err(e) => format!("Could not report the hardware: {e}"),
        };
        let _ = self.logs.note(None, &line);
        if let Some(taken) = done.dnf_logs {
            self.dnf_logs_taken(taken);
        }
    }

    /// dnf's logs taken ([`take_dnf_logs`]) counted among the task's logs, what was not taken
    /// in state.log; a failure is logged: the logs are not worth a build.
    fn dnf_logs_taken(&mut self, taken: Result<TakenLogs>) {
        match taken {
            Ok((paths, skipped)) => {
                for path in paths {
                    self.logs.add_path(path);
                }
                for s in skipped {
                    let _ = self
                        .logs
                        .note(None, &format!("Not taking /var/log/{}: {}", s.name, s.why));
                }
            }
            Err(e) => {
                warn!(target: LOG_TARGET, "cannot take dnf's logs: {e}");
                let _ = self
                    .logs
                    .note(None, &format!("Could not take dnf's logs: {e}"));
            }
        }
    }

    /// The buildroot's first package list: the cache record of a cached root (read when the
    /// root was made), else read now, before anything of the task runs in the root, and kept
    /// as the record of the cache image it came from.
    async fn initial_packages(
        &mut self,
        key: &str,
        cached: Option<&Cached>,
        record: Option<Record>,
    ) -> Result<Vec<BuildrootRpm>> {
        if let Some(record) = record {
            self.logs.note(
                None,
                "Buildroot packages: as listed when the cached root was made (its record)",
            )?;
            self.rpmdb_writable = record.rpmdb_writable;
            self.listed_after_root = true;
            self.last_listed = record.packages;
            return Ok(self.last_listed.iter().map(|i| i.rpm.clone()).collect());
        }
        let installed = self.installed().await?;
        let image_id = cached
            .map(|c| c.image_id.clone())
            .or_else(|| self.stored_image.clone());
        if let Some(image_id) = image_id {
            cache::write_record(
                &self.config.cache,
                key,
                &Record {
                    image_id,
                    packages: installed.clone(),
                    rpmdb_writable: self.rpmdb_writable,
                },
            );
        }
        Ok(installed.into_iter().map(|i| i.rpm).collect())
    }

    /// The first list to the hub (kojid's buildroot list once mock's root is ready), split
    /// by what Koji can know (see `classify`).
    fn ready(&mut self, listed: Vec<BuildrootRpm>, hooks: &mut dyn BuildHooks) -> Result<Listed> {
        let baseline = self.baseline.clone();
        let (initial, unknown) = self.classify(listed, &baseline);
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.iter().map(BuildrootRpm::nevra_key).collect();
            self.logs.note(
                None,
                &format!(
                    "The image's own RPMs are unknown to Koji (set image_external_repo): {}",
                    names.join(", ")
                ),
            )?;
        }
        hooks.buildroot_ready(&self.plan.buildroot_arch, &initial)?;
        Ok(Listed { initial, unknown })
    }

    /// The task's steps in the started build container, up to its results. `rebuilt`: the
    /// SRPM a lead step rebuilt and found requirements of missing, installed first.
    async fn steps(
        &mut self,
        listed: Listed,
        rebuilt: Option<Package>,
        cached: Option<&Cached>,
        hooks: &mut dyn BuildHooks,
        result_dir: &Path,
        image: ImageInfo,
    ) -> Result<BuildArchOutcome> {
        if self.plan.product == Product::Srpm {
            // kojid's rebuild_srpm and build_srpm send no list after the tool run.
            let srpms = self.make_srpm(result_dir).await?;
            return Ok(BuildArchOutcome {
                result_dir: result_dir.to_path_buf(),
                rpms: Vec::new(),
                srpms,
                logs: Vec::new(),
                buildroot: listed.initial,
                lock: self.last_listed.iter().map(InstalledRpm::locked).collect(),
                unknown_rpms: listed.unknown,
                buildroot_arch: self.plan.buildroot_arch.clone(),
                cache_hit: cached.is_some(),
                image,
                usage: TaskUsage::default(),
            });
        }
        self.ready = true;

        // mock's order of work, with the build in the rebuild's exec when rpmbuild finds every
        // BuildRequires installed: rebuild the SRPM; while rpmbuild says requirements are
        // missing, install the rebuilt SRPM's (checked) and try again, until the package set
        // stops changing; dynamic BuildRequires then go through mock's `-br` rounds.
        let mut previous = listed.initial.clone();
        let mut pending = rebuilt;
        let mut dynamic = false;
        let mut built = false;
        for _ in 0..MAX_BUILDREQUIRES_LOOPS {
            let rebuilt = match pending.take() {
                Some(rebuilt) => rebuilt,
                None => {
                    self.write_installed_pkgs_log()?;
                    let code = self
                        .checked(&self.plan.rebuild_and_build_step.clone(), true)
                        .await?;
                    if code != REQUIRES_MISSING {
                        built = true;
                        break;
                    }
                    self.take_one(SRPMS_DIR, is_srpm, PackageKind::Source)
                        .await?
                }
            };
            dynamic = rebuilt.dynamic_buildrequires();
            let reqs = install_arguments(&rebuilt.requires, &rebuilt.file_name(), "root.log")
                .map_err(|e| self.refused(e))?;
            if !self.install_changed(&reqs, &mut previous).await? || dynamic {
                break;
            }
        }
        if !built {
            if dynamic {
                for round in 0..MAX_BUILDREQUIRES_LOOPS {
                    let step = self.plan.dynamic_buildrequires_step(round == 0);
                    self.checked(&step, false).await?;
                    let generated = self
                        .take_one(SRPMS_DIR, is_buildreqs, PackageKind::Source)
                        .await?;
                    let reqs =
                        install_arguments(&generated.requires, &generated.file_name(), "root.log")
                            .map_err(|e| self.refused(e))?;
                    if !self.install_changed(&reqs, &mut previous).await? {
                        break;
                    }
                }
            }
            self.write_installed_pkgs_log()?;
            let build = self.plan.build_step(dynamic);
            self.checked(&build, true).await?;
        }
        self.finish_build(listed.unknown, cached, hooks, result_dir, image)
            .await
    }

    /// After a successful build: the list after it (kojid's updateBuildRootList), then the
    /// results.
    async fn finish_build(
        &mut self,
        unknown: Vec<BuildrootRpm>,
        cached: Option<&Cached>,
        hooks: &mut dyn BuildHooks,
        result_dir: &Path,
        image: ImageInfo,
    ) -> Result<BuildArchOutcome> {
        let installed = self.installed_after().await?;
        let lock = installed.iter().map(InstalledRpm::locked).collect();
        let listed = installed.into_iter().map(|i| i.rpm).collect();
        let baseline = self.baseline.clone();
        let final_list = self.classify(listed, &baseline).0;
        self.ready = false;
        hooks.buildroot_final(&final_list)?;
        let (rpms, srpms) = self.collect(result_dir).await?;
        Ok(BuildArchOutcome {
            result_dir: result_dir.to_path_buf(),
            rpms,
            srpms,
            logs: Vec::new(),
            buildroot: final_list,
            lock,
            unknown_rpms: unknown,
            buildroot_arch: self.plan.buildroot_arch.clone(),
            cache_hit: cached.is_some(),
            image,
            usage: TaskUsage::default(),
        })
    }

    /// The packages after the build or its failure (kojid reads the rpmdb again): read again
    /// when they may have changed since they were last read (a root step since, or a
    /// database the build user can write), else as last listed.
    async fn installed_after(&mut self) -> Result<Vec<InstalledRpm>> {
        if self.listed_after_root && !self.rpmdb_writable {
            self.logs.note(
                None,
                "Buildroot packages after the build: as last listed (nothing was installed since, and the build user cannot write the rpm database)",
            )?;
            return Ok(self.last_listed.clone());
        }
        self.installed().await
    }

    /// mock's `installed_pkgs.log`: the packages as last listed, just before a build.
    fn write_installed_pkgs_log(&mut self) -> Result<()> {
        let installed_log = installed_pkgs_log(&self.last_listed);
        self.logs
            .write_log("installed_pkgs.log", installed_log.as_bytes())?;
        Ok(())
    }

    /// An SRPM task's steps (see `plan::srpm_steps`), then its one SRPM taken out and checked
    /// by header.
    async fn make_srpm(&mut self, result_dir: &Path) -> Result<Vec<PathBuf>> {
        let installed_log = installed_pkgs_log(&self.last_listed);
        self.logs
            .write_log("installed_pkgs.log", installed_log.as_bytes())?;
        for step in self.plan.srpm_steps.clone() {
            self.checked(&step, false).await?;
        }
        let build_log = self.logs.path(LogTarget::BuildLog);
        let mut srpms = Vec::new();
        for file in self.take(SRPMS_DIR, is_srpm, result_dir, None).await?.files {
            check_result_package(&file.path, PackageKind::Source, &build_log)?;
            srpms.push(file.path);
        }
        self.sync_dnf_logs().await;
        match srpms.len() {
            1 => Ok(srpms),
            n => Err(Error::Build {
                message: format!(
                    "{} srpms found for task {}; see build.log",
                    if n == 0 { "No" } else { "Multiple" },
                    self.plan.task_id
                ),
                log: Some(build_log),
                exit_code: None,
            }),
        }
    }

    /// The source container of a networked step: the build container's root filesystem
    /// (podman's mount of it, as the bootstrap container sees it at `/br`) as its root, a
    /// bridge network, the build container's user, limits and lack of capabilities; made for
    /// one step and removed after it, so nothing it started outlives the step.
    async fn create_source_container(&mut self) -> Result<String> {
        let build_id = self
            .build_id
            .clone()
            .ok_or_else(|| Error::container("source", "no build container"))?;
        let root = self.client.mount(&build_id).await?;
        let mut spec = self.task_container(
            &format!("rootfs-of-{build_id}"),
            "source",
            NetworkMode::Bridge,
        );
        spec.rootfs = Some(root);
        spec.mounts = self.plan.source_mounts.clone();
        self.logs.note(
            None,
            "Creating source container on the build container's root (network bridge)",
        )?;
        let id = self.client.create(&spec).await?;
        self.source_id = Some(id.clone());
        self.client.start(&id, Box::new(NullSink)).await?;
        Ok(id)
    }

    /// What a failed task still owes: the root's list for the hub (when the hub was given
    /// one), dnf's logs, and the root itself kept for inspection. Each part is best effort:
    /// its own failure is logged, never put in place of the build's error.
    async fn after_failure(&mut self, hooks: &mut dyn BuildHooks, error: &Error) {
        if self.build_id.is_none() {
            return;
        }
        if self.ready {
            self.ready = false;
            let listed = self
                .installed_after()
                .await
                .map(|installed| installed.into_iter().map(|i| i.rpm).collect());
            let result = listed.and_then(|listed| {
                let baseline = self.baseline.clone();
                hooks.buildroot_final(&self.classify(listed, &baseline).0)
            });
            if let Err(e) = result {
                let _ = self.logs.note(
                    None,
                    &format!("Could not report the buildroot's packages after the failure: {e}"),
                );
            }
        }
        self.sync_dnf_logs().await;
        if let (Some(keep), Error::Build { .. }) = (self.config.keep_failed_root, error) {
            self.keep_root(keep).await;
        }
    }

    /// Saves the failed root (with its `/builddir`) as an image kept for `keep`.
    async fn keep_root(&mut self, keep: Duration) {
        let started = Instant::now();
        let _ = self.logs.note(None, "Start: keep the failed buildroot");
        let task_id = self.plan.task_id;
        let base = self.config.userns.map(|m| m.host_base);
        let kept = match self.snapshot().await {
            Ok(Snapshot::Container(id)) => {
                kept::keep(self.client, Source::Container(&id), task_id, keep, base).await
            }
            Ok(Snapshot::Tar(tar)) => {
                let kept = kept::keep(self.client, Source::Tar(&tar), task_id, keep, base).await;
                let _ = std::fs::remove_file(&tar);
                kept
            }
            Err(e) => Err(e),
        };
        let line = match kept {
            Ok(image) => format!(
                "Finish: keep the failed buildroot ({:.2} s): {image} for {} min; \
                 `koji-adjutant shell {task_id}` opens a shell in it",
                started.elapsed().as_secs_f64(),
                keep.as_secs() / 60
            ),
            Err(e) => {
                warn!(target: LOG_TARGET, task_id, "cannot keep the failed buildroot: {e}");
                format!("Could not keep the failed buildroot: {e}")
            }
        };
        let _ = self.logs.note(None, &line);
    }

    /// What the task's containers used, noted in state.log and kojid's log.
    async fn usage(&mut self) -> TaskUsage {
        let mut usage = TaskUsage::default();
        let lead = self.lead_usage.clone();
        for (role, id, slot) in [
            ("build", self.build_id.clone(), &mut usage.build),
            ("bootstrap", self.bootstrap_id.clone(), &mut usage.bootstrap),
        ] {
            let Some(id) = id else { continue };
            let earlier = lead.as_ref().filter(|_| role == "build");
            let used = match earlier {
                // the lead's container has ended: what it used was read before
                Some((lead_id, used)) if *lead_id == id => Some(*used),
                _ => match self.client.usage(&id).await {
                    Ok(used) => used.map(|used| match earlier {
                        Some((_, before)) => before.then(&used),
                        None => used,
                    }),
                    Err(e) => {
                        warn!(target: LOG_TARGET, "cannot read the {role} container's usage: {e}");
                        None
                    }
                },
            };
            if let Some(used) = used {
                let line = format!("Usage of the {role} container: {}", used.describe());
                info!(target: LOG_TARGET, task_id = self.plan.task_id, "{line}");
                let _ = self.logs.note(None, &line);
                *slot = Some(used);
            }
        }
        usage
    }

    /// A container of this task with `role`: catatonit pausing as `nobody` as its main
    /// process, the task's limits, backstop, user namespace and labels, no capabilities.
    fn task_container(&self, image: &str, role: &str, network: NetworkMode) -> ContainerSpec {
        let mut spec = ContainerSpec::new(image, PAUSE_COMMAND.map(str::to_owned).to_vec());
        spec.task_id = Some(self.plan.task_id);
        spec.user = Some(format!("{PAUSE_UID}:{PAUSE_UID}"));
        spec.init = true;
        spec.network = network;
        spec.limits = self.config.limits.clone();
        spec.timeout = Some(self.config.backstop());
        spec.userns = self.config.userns;
        spec.labels
            .insert("io.koji.adjutant.role".to_owned(), role.to_owned());
        // `koji-adjutant status` names the task's method by it
        spec.labels.insert(
            "io.koji.adjutant.method".to_owned(),
            self.plan.method().to_owned(),
        );
        spec
    }

    /// The build container: the root as its root filesystem, catatonit pausing as `nobody`,
    /// no capabilities, no network, only the SRPM mounted.
    async fn create_build_container(&mut self, image: &str) -> Result<String> {
        let spec = self.build_container_spec(image).await?;
        let id = self.client.create(&spec).await?;
        self.build_id = Some(id.clone());
        Ok(id)
    }

    /// The spec of a build container: its mounts are the SRPM (read-only) and the staging
    /// dirs.
    async fn build_container_spec(&mut self, image: &str) -> Result<ContainerSpec> {
        let mut spec = self.task_container(image, "build", NetworkMode::None);
        for mount in self.plan.build_mounts.clone() {
            spec.mounts.push(self.owned_mount(mount).await?);
        }
        for (source, target) in [
            (&self.staging.rpms, RPMS_DIR),
            (&self.staging.srpms, SRPMS_DIR),
        ] {
            spec.mounts.push(VolumeMount {
                source: source.clone(),
                target: target.into(),
                read_only: false,
                selinux_label: self.config.selinux_label,
            });
        }
        Ok(spec)
    }

    /// The build container of a lead step ([`Task::lead`]): as [`Task::create_build_container`]
    /// makes it, but with the lead step's command as its main process (under podman's init),
    /// as the build user with the step's environment and stdin held open, and the files a
    /// build container gets (the build user's macros) as read-only mounts of the task's own
    /// copies, which nothing but the host writes.
    async fn create_lead_container(&mut self, image: &str) -> Result<String> {
        let step = &self.plan.rebuild_and_build_step;
        let mut spec = self.build_container_spec(image).await?;
        spec.command = step.lead_argv();
        spec.user = Some(step.user.podman_user());
        spec.environment = step.exec_env().into_iter().collect();
        spec.workdir = Some(step.workdir.clone());
        spec.open_stdin = true;
        let files = self.scratch_dir.join("files");
        std::fs::create_dir(&files)
            .map_err(|e| Error::io(format!("creating {}", files.display()), e))?;
        for (n, file) in self.plan.build_files.iter().enumerate() {
            let copy = files.join(n.to_string());
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(file.mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&copy)
                .and_then(|mut f| f.write_all(file.content.as_bytes()))
                .map_err(|e| Error::io(format!("writing {}", copy.display()), e))?;
            spec.mounts.push(VolumeMount {
                source: copy,
                target: file.dest.clone().into(),
                read_only: true,
                selinux_label: self.config.selinux_label,
            });
        }
        let id = self.client.create(&spec).await?;
        self.build_id = Some(id.clone());
        Ok(id)
    }

    /// Runs `step` as the main process of the build container made by
    /// [`Task::create_lead_container`] and returns its exit status (one of its
    /// `ok_exit_codes`; any other is the step's error, as [`Task::checked`] words it).
    ///
    /// The container's stdout carries only [`LEAD_WRAPPER`]'s line saying the command ended
    /// and its processes are gone (the command's output is on stderr). Then the container's
    /// usage and OOM kills are read from its cgroup (which goes with the container), the
    /// hardware report beside it is awaited, the wrapper is released and the container
    /// ends. Whatever the build does to that line (it can write it too: its processes run as
    /// the wrapper's user) it can only end its own build early, as exiting would: the host
    /// reads the usage itself and takes the results only once the container has ended.
    async fn lead(&mut self, step: &Step) -> Result<i64> {
        let id = self
            .build_id
            .clone()
            .ok_or_else(|| Error::container("start", "no build container"))?;
        let (client, cancel) = (self.client, self.cancel);
        let started = Instant::now();
        self.note_start(step, "network off, the build container's main process")?;
        let mut held = client.start_held(&id).await?;
        self.step_started.send_replace(true);
        let output = held
            .output()
            .ok_or_else(|| Error::container("attach", "no output stream"))?;
        let cgroup = match client.cgroup_path(&id).await {
            Ok(path) => path,
            Err(e) => {
                warn!(target: LOG_TARGET, "cannot find the build container's cgroup: {e}");
                None
            }
        };
        let limit = step.timeout_secs.unwrap_or(self.config.dnf_timeout);
        let hw_done = self.hw_done.clone();
        let (ended, ended_at, used, kills) = {
            let (tx, ended) = tokio::sync::oneshot::channel();
            let mut sink = LeadSink {
                step: self.logs.step_sink(step.log, &mut *self.sink, None),
                line: Vec::new(),
                ended: Some(tx),
            };
            let pump = frames::pump_to_end(output, &mut sink);
            tokio::pin!(pump);
            let ended = tokio::select! {
                pumped = &mut pump => {
                    pumped?;
                    Err(LeadEnd::Exited)
                }
                said = ended => said.unwrap_or(Err(LeadEnd::Exited)),
                () = tokio::time::sleep(Duration::from_secs(limit)) => Err(LeadEnd::TimedOut),
                () = cancel.cancelled() => return Err(Error::Interrupted),
            };
            let ended_at = SystemTime::now();
            let root = Path::new(accounting::CGROUP_ROOT);
            let used = cgroup.as_deref().map(|p| accounting::read_usage(root, p));
            let kills = cgroup
                .as_deref()
                .and_then(|p| accounting::read_oom_kills(root, p));
            if ended.is_ok() {
                // the report runs as `nobody` beside the build; it ends with the container
                let _ = tokio::time::timeout(LEAD_REPORT_WAIT, hw_done.notified()).await;
                if let Err(e) = held.release().await {
                    warn!(target: LOG_TARGET, "cannot release the build container: {e}");
                }
            } else {
                let _ = client.stop(&id, 0).await;
            }
            // the rest of the output (stderr the end line overtook), until the container ends
            match tokio::time::timeout(LEAD_EXIT_WAIT, &mut pump).await {
                Ok(pumped) => pumped?,
                Err(_) => {
                    client.stop(&id, 0).await?;
                    0
                }
            };
            (ended, ended_at, used, kills)
        };
        let exited = match (&ended, cgroup.as_deref()) {
            // the wrapper exited 0 after its line; its container's processes are gone once
            // its cgroup has none (sooner than podman notes the exit)
            (Ok(_), Some(cgroup)) => {
                processes_gone(cgroup, cancel).await?;
                0
            }
            _ => client.wait_exit(&id, cancel).await?,
        };
        self.logs
            .merged(step.log)
            .end_lines()
            .map_err(Error::Sink)?;
        let code = match ended {
            Ok(code) => code,
            Err(LeadEnd::Exited) => {
                return Err(Error::Build {
                    message: format!(
                        "the build container of task {} (arch {}) ended (exit status {exited}) before its command did; see {}",
                        self.plan.task_id,
                        self.arch,
                        step.log.file_name()
                    ),
                    log: Some(self.logs.path(step.log)),
                    exit_code: Some(exited),
                });
            }
            Err(LeadEnd::Unexpected) => {
                return Err(Error::Build {
                    message: format!(
                        "the build of task {} (arch {}) wrote on the channel that says when it ended; see {}",
                        self.plan.task_id,
                        self.arch,
                        step.log.file_name()
                    ),
                    log: Some(self.logs.path(step.log)),
                    exit_code: None,
                });
            }
            Err(LeadEnd::TimedOut) => return Err(self.timed_out(step, limit)),
        };
        self.logs.note_at(
            None,
            ended_at,
            &format!(
                "The build container's command ended (exit status {code}), its processes with it"
            ),
        )?;
        self.note_finish(step, code, started)?;
        match used {
            Some(used) => self.lead_usage = Some((id, used)),
            None => {
                let _ = self.logs.note(
                    None,
                    "Could not read the build container's usage before it ended",
                );
            }
        }
        if step.ok_exit_codes.contains(&code) {
            return Ok(code);
        }
        let oom = kills.and_then(|kills| self.oom_words_for(step, "build", kills));
        Err(self.failure(step, code, true, oom))
    }

    /// A mount of the task's own file (the SRPM), with the SELinux label when one is set.
    /// Relabelling changes the inode, so for every path to it: a source with other hard
    /// links (kojid's glue links an SRPM of a local topdir into the work dir) is copied into
    /// the task's scratch dir first, and only the task's copy is relabelled.
    async fn owned_mount(&mut self, mount: VolumeMount) -> Result<VolumeMount> {
        let Some(label) = self.config.selinux_label else {
            return Ok(mount);
        };
        self.rounds += 1;
        let copy = self.scratch_dir.join(format!("mount-{}", self.rounds));
        let source = mount.source.clone();
        let source = tokio::task::spawn_blocking(move || private_copy(&source, &copy))
            .await
            .map_err(|e| Error::io("copying a mount source", std::io::Error::other(e)))??;
        Ok(VolumeMount {
            source,
            selinux_label: Some(label),
            ..mount
        })
    }

    /// The bootstrap container, created and started on first use: the bootstrap image as
    /// root with the install capabilities, the build container's root at [`INSTALL_ROOT`],
    /// the repo (read-only, or a network for a URL repo), dnf's cache on a scratch volume.
    async fn bootstrap(&mut self) -> Result<String> {
        if let Some(id) = &self.bootstrap_id {
            return Ok(id.clone());
        }
        let build_id = self
            .build_id
            .clone()
            .ok_or_else(|| Error::container("bootstrap", "no build container to install into"))?;
        if self.config.userns.is_some() {
            // In a user namespace, a fresh root's top directory is owned by the mapped root
            // only once the container is initialised; before, the bootstrap could not write.
            self.client.init(&build_id).await?;
        }
        let root = self.client.mount(&build_id).await?;
        let network = if self.plan.repo_network {
            NetworkMode::Bridge
        } else {
            NetworkMode::None
        };
        let mut spec = self.task_container(&self.config.image, "bootstrap", network);
        spec.cap_add = INSTALL_CAPS.iter().map(|c| (*c).to_owned()).collect();
        // Koji's directories are shared: never relabelled.
        spec.mounts = self.plan.bootstrap_mounts.clone();
        spec.mounts.push(VolumeMount {
            source: root,
            target: INSTALL_ROOT.into(),
            read_only: false,
            selinux_label: None,
        });
        spec.scratch_volumes = vec![DNF_CACHE.to_owned()];
        self.logs.note(
            None,
            &format!(
                "Creating bootstrap container from {} (network {})",
                self.config.image,
                spec.network.as_str()
            ),
        )?;
        let id = self.client.create(&spec).await?;
        self.bootstrap_id = Some(id.clone());
        put_files_and_start(self.client, &id, &self.plan.bootstrap_files).await?;
        Ok(id)
    }

    /// A fresh root: the init steps in the bootstrap container, then (before anything of
    /// the task runs in it) the cache image. Returns the image mode baseline.
    async fn install_root(&mut self, key: &str) -> Result<Vec<String>> {
        self.bootstrap().await?;
        let baseline = if self.plan.mode == BuildrootMode::Image {
            let listed = self.query(&self.plan.image_package_list.clone()).await?;
            parse_package_list(&listed)?
                .iter()
                .map(|installed| installed.rpm.nevra_key())
                .collect()
        } else {
            Vec::new()
        };
        self.note_kernel()?;
        for step in self.plan.init_steps.clone() {
            self.checked(&step, false).await?;
        }
        if self.config.cache.enabled {
            let started = Instant::now();
            self.logs.note(None, "Start: store buildroot in cache")?;
            match self.store_root(key, &baseline).await {
                Ok(image) => {
                    self.stored_image = Some(image.clone());
                    self.logs.note(
                        None,
                        &format!(
                            "Finish: store buildroot in cache (exit status 0, {:.2} s): image {image}",
                            started.elapsed().as_secs_f64()
                        ),
                    )?;
                    cache::touch(&self.config.cache, key);
                    if let Err(e) = cache::evict(self.client, &self.config.cache).await {
                        warn!(target: LOG_TARGET, "buildroot cache eviction failed: {e}");
                    }
                }
                Err(e) => {
                    // A failure only costs the cache, never the build.
                    warn!(target: LOG_TARGET, "could not save the buildroot cache: {e}");
                    self.logs
                        .note(None, &format!("Could not save the buildroot cache: {e}"))?;
                }
            }
        }
        // stored (or not): the tasks waiting for this key look it up now
        self.cache_lock = None;
        Ok(baseline)
    }

    /// The kernel the buildroot runs on, in root.log (mock logs `uname -r` of the chroot).
    fn note_kernel(&mut self) -> Result<()> {
        self.logs.note(
            Some(LogTarget::RootLog),
            &format!(
                "kernel version: {}",
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            ),
        )
    }

    /// Stores the freshly installed root as the cache image of `key`.
    async fn store_root(&mut self, key: &str, baseline: &[String]) -> Result<String> {
        match self.snapshot().await? {
            Snapshot::Container(id) => {
                cache::store(self.client, Source::Container(&id), key, baseline).await
            }
            Snapshot::Tar(tar) => {
                let stored = cache::store(self.client, Source::Tar(&tar), key, baseline).await;
                let _ = std::fs::remove_file(&tar);
                stored
            }
        }
    }

    /// The build container's root, ready to be saved as an image: the container itself (to
    /// commit), or, in a user namespace (where podman 4.3's commit fails), a tar of the root
    /// read through the bootstrap container into the scratch dir.
    async fn snapshot(&mut self) -> Result<Snapshot> {
        let build_id = self
            .build_id
            .clone()
            .ok_or_else(|| Error::container("snapshot", "no build container"))?;
        if self.config.userns.is_none() {
            return Ok(Snapshot::Container(build_id));
        }
        self.rounds += 1;
        let tar = self.scratch_dir.join(format!("root-{}.tar", self.rounds));
        let written = async {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tar)
                .map_err(|e| Error::io(format!("creating {}", tar.display()), e))?;
            let step = self.plan.export_root_step();
            let code = self.exec(&step, Some(&mut file)).await?;
            if code != 0 {
                return Err(Error::container(
                    "snapshot",
                    format!("tar of the root exited with status {code}; see root.log"),
                ));
            }
            Ok(())
        }
        .await;
        match written {
            Ok(()) => Ok(Snapshot::Tar(tar)),
            Err(e) => {
                let _ = std::fs::remove_file(&tar);
                Err(e)
            }
        }
    }

    /// Splits a package list into what Koji can know (the tag repo's RPMs, and in image mode
    /// the image's own when an external repo is named for them: marked with
    /// `external_repo_name`, which the kojid glue resolves on the hub) and the image RPMs it
    /// cannot.
    fn classify(
        &self,
        packages: Vec<BuildrootRpm>,
        baseline: &[String],
    ) -> (Vec<BuildrootRpm>, Vec<BuildrootRpm>) {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for mut rpm in packages {
            if !baseline.contains(&rpm.nevra_key()) {
                known.push(rpm);
                continue;
            }
            match &self.config.image_external_repo {
                Some(repo) => {
                    let mut info = BTreeMap::new();
                    info.insert(
                        "external_repo_name".to_owned(),
                        ExtraValue::Str(repo.clone()),
                    );
                    rpm.external_repo = Some(info);
                    known.push(rpm);
                }
                None => unknown.push(rpm),
            }
        }
        (known, unknown)
    }

    /// A refused BuildRequires: the reason in root.log, then the error naming root.log.
    fn refused(&mut self, e: Error) -> Error {
        match e {
            Error::Build {
                message, exit_code, ..
            } => {
                let _ = self.logs.note(Some(LogTarget::RootLog), &message);
                Error::Build {
                    message,
                    log: Some(self.logs.path(LogTarget::RootLog)),
                    exit_code,
                }
            }
            other => other,
        }
    }

    /// Installs `requires` (when there are any) and says whether the package set changed,
    /// the stop condition of mock's BuildRequires loops.
    async fn install_changed(
        &mut self,
        requires: &[String],
        previous: &mut Vec<BuildrootRpm>,
    ) -> Result<bool> {
        let Some(install) = self.plan.install_step(requires) else {
            return Ok(false);
        };
        self.checked(&install, false).await?;
        let now = self.packages().await?;
        if now == *previous {
            return Ok(false);
        }
        *previous = now;
        Ok(true)
    }

    /// Runs a step; a failure is a BuildError naming the log to read, as kojid's
    /// `_mockResult` does (init and dependency steps: root.log; the build: build.log).
    async fn checked(&mut self, step: &Step, is_build: bool) -> Result<i64> {
        let code = self.exec(step, None).await?;
        if step.ok_exit_codes.contains(&code) {
            return Ok(code);
        }
        let oom = self.oom_note(step).await;
        Err(self.failure(step, code, is_build, oom))
    }

    /// The error of `step` exiting with `code` (not one of its `ok_exit_codes`); `oom`: the
    /// OOM killer's part in it.
    fn failure(&mut self, step: &Step, code: i64, is_build: bool, oom: Option<String>) -> Error {
        let log = step.log.file_name();
        // kojid's wording, with the OOM killer named when it struck: "status 137" alone
        // does not say that the build hit its memory limit.
        let status = match &oom {
            Some(oom) => format!("{code} ({oom})"),
            None => code.to_string(),
        };
        let message = if let (Some((words, tool)), false) =
            (&step.failure, code == LEFTOVERS_SURVIVED)
        {
            format!("{words}, {tool} exited with status {status}; see {log} for more information")
        } else if is_build && code == SRPM_REBUILD_FAILED {
            format!(
                "could not rebuild the SRPM of task {} (arch {}): rpm -U or rpmbuild -bs failed; see {log} for more information",
                self.plan.task_id, self.arch
            )
        } else if code == LEFTOVERS_SURVIVED {
            format!(
                "step \"{}\" of task {} (arch {}): its processes did not die; see {log}",
                step.name, self.plan.task_id, self.arch
            )
        } else if is_build {
            format!(
                "error building package (arch {}), rpmbuild exited with status {status}; see {log} for more information",
                self.arch
            )
        } else if step.log == LogTarget::RootLog {
            format!(
                "could not init buildroot for task {} (arch {}): step \"{}\" exited with status {status}; see root.log for more information",
                self.plan.task_id, self.arch, step.name
            )
        } else {
            format!(
                "buildroot step \"{}\" failed for task {} (arch {}) with status {status}; see {log} for more information",
                step.name, self.plan.task_id, self.arch
            )
        };
        Error::Build {
            message,
            log: Some(self.logs.path(step.log)),
            exit_code: Some(code),
        }
    }

    /// state.log's `Start:` of `step` and its log's `Executing command:` line, ending with
    /// `how` it runs.
    fn note_start(&mut self, step: &Step, how: &str) -> Result<()> {
        self.logs.note(None, &format!("Start: {}", step.name))?;
        self.logs.note(
            Some(step.log),
            &format!(
                "Executing command: {} (user {}, {how})",
                shell::format_cmd(&step.argv),
                step.user.podman_user(),
            ),
        )
    }

    /// state.log's `Finish:` of `step`, begun at `started`.
    fn note_finish(&mut self, step: &Step, code: i64, started: Instant) -> Result<()> {
        self.logs.note(
            None,
            &format!(
                "Finish: {} (exit status {code}, {:.2} s)",
                step.name,
                started.elapsed().as_secs_f64()
            ),
        )
    }

    /// The error of `step` running over its timeout of `limit` seconds, noted in its log.
    fn timed_out(&mut self, step: &Step, limit: u64) -> Error {
        let _ = self
            .logs
            .note(Some(step.log), &format!("Timed out after {limit} s"));
        Error::Build {
            message: format!(
                "step \"{}\" of task {} (arch {}) exceeded its timeout of {limit} s; see {}",
                step.name,
                self.plan.task_id,
                self.arch,
                step.log.file_name()
            ),
            log: Some(self.logs.path(step.log)),
            exit_code: None,
        }
    }

    /// Whether the kernel's OOM killer killed a process of `step`'s container since the last
    /// look (its cgroup's count; the container's main process is never the one killed, so
    /// podman's `OOMKilled` does not say): the words for the failure, also noted in the
    /// step's log and state.log.
    async fn oom_note(&mut self, step: &Step) -> Option<String> {
        let (role, id) = match step.user {
            RunAs::Root => ("bootstrap", self.bootstrap_id.clone()?),
            RunAs::Builder | RunAs::Observer => ("build", self.build_id.clone()?),
            // removed with its step; its limits are the build container's
            RunAs::Fetcher => return None,
        };
        let kills = match self.client.oom_kills(&id).await {
            Ok(kills) => kills?,
            Err(e) => {
                warn!(target: LOG_TARGET, "cannot read the {role} container's OOM kills: {e}");
                return None;
            }
        };
        self.oom_words_for(step, role, kills)
    }

    /// [`oom_words`] for `step` given its container's count of OOM kills now, noted in the
    /// step's log and state.log.
    fn oom_words_for(&mut self, step: &Step, role: &str, kills: u64) -> Option<String> {
        let seen = match step.user {
            RunAs::Root => &mut self.oom_seen.1,
            RunAs::Builder | RunAs::Fetcher | RunAs::Observer => &mut self.oom_seen.0,
        };
        let note = oom_words(role, kills, seen, self.config.limits.memory_bytes)?;
        let _ = self.logs.note(Some(step.log), &note);
        let _ = self.logs.note(None, &note);
        Some(note)
    }

    /// Runs a query step and returns its stdout (stderr goes to its log).
    async fn query(&mut self, step: &Step) -> Result<String> {
        Ok(self.query_status(step).await?.1)
    }

    /// [`Task::query`] with the query's exit status (one of its `ok_exit_codes`).
    async fn query_status(&mut self, step: &Step) -> Result<(i64, String)> {
        let mut capture = Vec::new();
        let code = self.exec(step, Some(&mut Bounded(&mut capture))).await?;
        if !step.ok_exit_codes.contains(&code) {
            let status = match self.oom_note(step).await {
                Some(oom) => format!("{code} ({oom})"),
                None => code.to_string(),
            };
            return Err(Error::Build {
                message: format!(
                    "buildroot query \"{}\" failed for task {} with status {status}; see {}",
                    step.name,
                    self.plan.task_id,
                    step.log.file_name()
                ),
                log: Some(self.logs.path(step.log)),
                exit_code: Some(code),
            });
        }
        Ok((code, String::from_utf8_lossy(&capture).into_owned()))
    }

    /// The buildroot's packages as the hub lists them.
    async fn packages(&mut self) -> Result<Vec<BuildrootRpm>> {
        Ok(self.installed().await?.into_iter().map(|i| i.rpm).collect())
    }

    /// The buildroot's packages with what a lockfile records of each.
    async fn installed(&mut self) -> Result<Vec<InstalledRpm>> {
        let (code, listed) = self.query_status(&self.plan.package_list.clone()).await?;
        let installed = parse_package_list(&listed)?;
        self.rpmdb_writable = code == RPMDB_WRITABLE;
        self.listed_after_root = true;
        self.last_listed = installed.clone();
        Ok(installed)
    }

    /// Takes dnf's logs out of the root again, in place of the previous copies; returns
    /// their paths. A failure is logged: the logs are not worth a build.
    async fn sync_dnf_logs(&mut self) {
        self.rounds += 1;
        let scratch = self.scratch_dir.join(format!("logs-{}", self.rounds));
        let taken = match &self.build_id {
            Some(id) => take_dnf_logs(self.client, id, &scratch, &self.logs.dir, self.cancel).await,
            None => Err(Error::container("copy", "no build container")),
        };
        self.dnf_logs_taken(taken);
    }

    async fn exec(&mut self, step: &Step, capture: Option<&mut (dyn Write + Send)>) -> Result<i64> {
        let container = match step.user {
            RunAs::Root => self.bootstrap().await?,
            RunAs::Builder | RunAs::Observer => self
                .build_id
                .clone()
                .ok_or_else(|| Error::container("exec", "no build container"))?,
            RunAs::Fetcher => {
                let result = match self.create_source_container().await {
                    Ok(id) => self.exec_in(id, step, capture).await,
                    Err(e) => Err(e),
                };
                if let Some(id) = self.source_id.take() {
                    self.client.remove_logged(&id).await;
                }
                return result;
            }
        };
        self.exec_in(container, step, capture).await
    }

    async fn exec_in(
        &mut self,
        container: String,
        step: &Step,
        capture: Option<&mut (dyn Write + Send)>,
    ) -> Result<i64> {
        let started = Instant::now();
        let network = if (step.user == RunAs::Root && self.plan.repo_network)
            || step.user == RunAs::Fetcher
        {
            "network on"
        } else {
            "network off"
        };
        self.note_start(step, network)?;
        let opts = exec_options(step);
        let mut sink = self.logs.step_sink(step.log, &mut *self.sink, capture);
        let argv = step.exec_argv();
        let run = self.client.exec_notifying(
            &container,
            &argv,
            &opts,
            &mut sink,
            self.cancel,
            Some(&self.step_started),
        );
        // Every step is bounded: rpmbuild's by rpmbuild_timeout, the others by dnf_timeout.
        let limit = step.timeout_secs.unwrap_or(self.config.dnf_timeout);
        let code = match tokio::time::timeout(Duration::from_secs(limit), run).await {
            Ok(code) => code?,
            Err(_) => return Err(self.timed_out(step, limit)),
        };
        self.logs
            .merged(step.log)
            .end_lines()
            .map_err(Error::Sink)?;
        self.note_finish(step, code, started)?;
        if step.user == RunAs::Root {
            self.listed_after_root = false;
        }
        if step.user == RunAs::Root && !step.capture_stdout {
            // dnf wrote its logs into the root: the hub sees them while the task runs.
            self.sync_dnf_logs().await;
        }
        Ok(code)
    }

    /// Takes files out of the build container (podman's archive endpoint), notes what was
    /// refused in state.log.
    async fn take(
        &mut self,
        dir: &str,
        wanted: fn(&str) -> bool,
        dest: &Path,
        max_bytes: Option<u64>,
    ) -> Result<Extraction> {
        let got = match self.staging.host_dir(dir) {
            Some(staged) => take_staged_async(staged, wanted, dest, max_bytes).await?,
            None => {
                let build_id = self
                    .build_id
                    .clone()
                    .ok_or_else(|| Error::container("copy", "no build container"))?;
                self.client
                    .extract_files(&build_id, dir, wanted, dest, max_bytes, self.cancel)
                    .await?
            }
        };
        for skipped in &got.skipped {
            self.logs.note(
                None,
                &format!("Not taking {dir}/{}: {}", skipped.name, skipped.why),
            )?;
        }
        Ok(got)
    }

    /// The one package matching `wanted` in `dir` of the build container, read by header.
    async fn take_one(
        &mut self,
        dir: &str,
        wanted: fn(&str) -> bool,
        kind: PackageKind,
    ) -> Result<Package> {
        self.rounds += 1;
        let dest = self.scratch_dir.join(self.rounds.to_string());
        std::fs::create_dir(&dest)
            .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        let got = self.take(dir, wanted, &dest, None).await?;
        let build_log = self.logs.path(LogTarget::BuildLog);
        match got.files.as_slice() {
            [one] => {
                let package = read_package(&one.path).map_err(|e| Error::Build {
                    message: format!("{} {}; see build.log", one.name, e.0),
                    log: Some(build_log.clone()),
                    exit_code: None,
                })?;
                if package.kind != kind {
                    return Err(Error::Build {
                        message: format!("{} is not a source package; see build.log", one.name),
                        log: Some(build_log),
                        exit_code: None,
                    });
                }
                Ok(package)
            }
            files => Err(Error::Build {
                message: format!(
                    "expected one rebuilt source package in {dir}, found {}; see build.log",
                    files.len()
                ),
                log: Some(build_log),
                exit_code: None,
            }),
        }
    }

    /// The results, taken from the staging dirs into the result dir and checked by header.
    /// dnf's logs are taken when dnf ran (after each root step) or, from a cached root,
    /// beside the steps.
    async fn collect(&mut self, result_dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
        let build_log = self.logs.path(LogTarget::BuildLog);
        let mut rpms = Vec::new();
        for file in self
            .take(RPMS_DIR, is_binary_rpm, result_dir, None)
            .await?
            .files
        {
            check_result_package(&file.path, PackageKind::Binary, &build_log)?;
            rpms.push(file.path);
        }
        let mut srpms = Vec::new();
        if self.plan.keep_srpm {
            for file in self.take(SRPMS_DIR, is_srpm, result_dir, None).await?.files {
                check_result_package(&file.path, PackageKind::Source, &build_log)?;
                srpms.push(file.path);
            }
        }
        rpms.sort();
        srpms.sort();
        if rpms.is_empty() {
            return Err(Error::Build {
                message: format!(
                    "the build of task {} (arch {}) produced no RPMs; see build.log",
                    self.plan.task_id, self.arch
                ),
                log: Some(build_log),
                exit_code: None,
            });
        }
        Ok((rpms, srpms))
    }

    /// Removes the bootstrap container, then the build container (whose root it mounted).
    async fn remove_containers(&mut self) {
        let retired = std::mem::take(&mut self.retired);
        for id in [
            self.source_id.take(),
            self.bootstrap_id.take(),
            self.build_id.take(),
        ]
        .into_iter()
        .flatten()
        .chain(retired)
        {
            self.client.remove_logged(&id).await;
        }
    }
}

/// mock's installed_pkgs.log: `nevra buildtime size pkgid installed` per package (the pkgid
/// of an RPM is its SIGMD5, Koji's payloadhash).
fn installed_pkgs_log(installed: &[InstalledRpm]) -> String {
    let mut out = String::new();
    for InstalledRpm { rpm, .. } in installed {
        let epoch = rpm.epoch.map(|e| format!("{e}:")).unwrap_or_default();
        out.push_str(&format!(
            "{}-{epoch}{}-{}.{} {} {} {} installed\n",
            rpm.name, rpm.version, rpm.release, rpm.arch, rpm.buildtime, rpm.size, rpm.payloadhash
        ));
    }
    out
}

/// buildroot_config.log: what the buildroot is made of and how its containers run, as
/// mock_config.log shows mock's configuration.
fn config_report(
    config: &BuildArchConfig,
    plan: &BuildrootPlan,
    image: &ImageInfo,
    repomd: &str,
) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("# The buildroot of task {}", plan.task_id));
    line(format!("mode: {}", plan.mode.as_str()));
    line(format!(
        "{}: {} (id {}, digest {}, arch {})",
        match plan.mode {
            BuildrootMode::Tag => "bootstrap image",
            BuildrootMode::Image => "buildroot image",
        },
        config.image,
        image.id,
        if image.digest.is_empty() {
            "none"
        } else {
            &image.digest
        },
        image.architecture
    ));
    line(format!(
        "repo: {} (repo {} of tag {}, repomd.xml sha256 {repomd})",
        plan.repo_baseurl, plan.repo_id, plan.tag_name
    ));
    line(format!(
        "arch: buildroot {}, %_host_cpu {}, rpmbuild --target {}",
        plan.buildroot_arch, plan.target_arch, plan.rpmbuild_target
    ));
    let limits = &config.limits;
    line(format!(
        "limits: memory {}, cpus {}, pids {}; rpmbuild timeout {} s",
        limits
            .memory_bytes
            .map_or("unlimited".into(), |b| format!("{b} bytes")),
        limits.cpus.map_or("unlimited".into(), |c| c.to_string()),
        limits.pids.map_or("unlimited".into(), |p| p.to_string()),
        plan.rpmbuild_timeout
    ));
    line(format!(
        "network: build container none; bootstrap container {}{}",
        if plan.repo_network {
            "bridge (URL repo)"
        } else {
            "none"
        },
        if plan.fetches() {
            "; source container (source_cmd only) bridge"
        } else {
            ""
        }
    ));
    line(match config.userns {
        Some(map) => format!(
            "user namespace: container ids 0-{} are host ids {}-{}",
            map.size - 1,
            map.host_base,
            map.host_base + (map.size - 1)
        ),
        None => "user namespace: none".to_owned(),
    });
    for (title, files) in [
        ("bootstrap container", &plan.bootstrap_files),
        ("build container", &plan.build_files),
    ] {
        line(String::new());
        line(format!("## Files written into the {title}"));
        for file in files {
            line(format!("### {} (mode {:o})", file.dest, file.mode));
            line(file.content.trim_end().to_owned());
        }
    }
    line(String::new());
    line("## Environment of build steps".to_owned());
    for (key, value) in &plan.environment {
        line(format!("{key}={}", shell::quote(value)));
    }
    line(String::new());
    line("## Root steps that make a fresh root (bootstrap container, as root)".to_owned());
    for step in &plan.init_steps {
        line(format!("{}: {}", step.name, shell::format_cmd(&step.argv)));
    }
    out
}

/// Writes a plan's config `files` into the created container `id`, then starts it.
async fn put_files_and_start(client: &PodmanClient, id: &str, files: &[ConfigFile]) -> Result<()> {
    let files: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|f| (f.dest.as_str(), f.content.as_bytes(), f.mode))
        .collect();
    client.put_files(id, &files).await?;
    client.start(id, Box::new(NullSink)).await
}

/// `source` when this path is its only link, else a copy of it at `copy` (see
/// `Task::owned_mount`).
fn private_copy(source: &Path, copy: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(source)
        .map_err(|e| Error::io(format!("inspecting {}", source.display()), e))?;
    if !meta.is_file() || meta.nlink() == 1 {
        return Ok(source.to_path_buf());
    }
    let mut from = std::fs::File::open(source)
        .map_err(|e| Error::io(format!("opening {}", source.display()), e))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(copy)
        .map_err(|e| Error::io(format!("creating {}", copy.display()), e))?;
    std::io::copy(&mut from, &mut to).map_err(|e| {
        Error::io(
            format!("copying {} to {}", source.display(), copy.display()),
            e,
        )
    })?;
    Ok(copy.to_path_buf())
}

fn is_binary_rpm(name: &str) -> bool {
    name.ends_with(".rpm") && !name.ends_with(".src.rpm") && !name.ends_with(".nosrc.rpm")
}

fn is_srpm(name: &str) -> bool {
    name.ends_with(".src.rpm")
}

fn is_buildreqs(name: &str) -> bool {
    name.ends_with(".buildreqs.nosrc.rpm")
}

fn is_dnf_log(name: &str) -> bool {
    name.starts_with("dnf") && name.ends_with(".log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_names_are_sorted_into_their_kinds() {
        assert!(is_binary_rpm("a-1-1.x86_64.rpm"));
        assert!(!is_binary_rpm("a-1-1.src.rpm"));
        assert!(!is_binary_rpm("a-1-1.buildreqs.nosrc.rpm"));
        assert!(is_srpm("a-1-1.src.rpm") && !is_srpm("a-1-1.buildreqs.nosrc.rpm"));
        assert!(is_buildreqs("a-1-1.buildreqs.nosrc.rpm"));
        assert!(is_dnf_log("dnf.rpm.log") && !is_dnf_log("hawkey.log") && !is_dnf_log("dnf.log.1"));
    }

    #[test]
    fn only_a_file_of_the_tasks_own_is_relabelled() {
        let dir = crate::core::testutil::Scratch::new("owned");
        let own = dir.join("own.src.rpm");
        std::fs::write(&own, b"srpm").unwrap();
        assert_eq!(private_copy(&own, &dir.join("copy-1")).unwrap(), own);
        // A hard link to a shared file (the Koji topdir's SRPM): the task gets a copy.
        let shared = dir.join("shared.src.rpm");
        std::fs::write(&shared, b"shared srpm").unwrap();
        let linked = dir.join("linked.src.rpm");
        std::fs::hard_link(&shared, &linked).unwrap();
        let copy = private_copy(&linked, &dir.join("copy-2")).unwrap();
        assert_eq!(copy, dir.join("copy-2"));
        assert_eq!(std::fs::read(&copy).unwrap(), b"shared srpm");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&copy).unwrap().nlink(), 1);
        // A planted link at the copy's name is never written through.
        std::os::unix::fs::symlink(&own, dir.join("copy-3")).unwrap();
        assert!(private_copy(&linked, &dir.join("copy-3")).is_err());
        assert_eq!(std::fs::read(&own).unwrap(), b"srpm");
    }

    #[test]
    fn only_the_wrappers_own_line_gives_a_lead_steps_status() {
        assert!(matches!(parse_lead_end(b"koji-adjutant-lead-end 0"), Ok(0)));
        assert!(matches!(
            parse_lead_end(b"koji-adjutant-lead-end 99"),
            Ok(99)
        ));
        for bad in [
            &b"koji-adjutant-lead-end"[..],
            b"koji-adjutant-lead-end x",
            b"koji-adjutant-lead-end 0 1",
            b"you are done",
            b"koji-adjutant-lead-end \xff",
        ] {
            assert!(
                matches!(parse_lead_end(bad), Err(LeadEnd::Unexpected)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_backstop_outlasts_every_step() {
        assert_eq!(default_backstop(86400, 7200), 86400 + 3 * 7200);
        assert_eq!(default_backstop(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn a_url_repo_needs_its_repomd_digest_and_a_given_one_must_be_hex() {
        let mut r = crate::core::buildroot::plan::tests::request(&[]);
        assert!(
            matches!(repomd_digest(&r), Err(Error::InvalidSpec(m)) if m.contains("repomd_sha256"))
        );
        r.repomd_sha256 = Some("AB".repeat(32));
        assert_eq!(repomd_digest(&r).unwrap(), "ab".repeat(32));
        r.repomd_sha256 = Some("xyz".into());
        assert!(repomd_digest(&r).is_err());
    }
}
