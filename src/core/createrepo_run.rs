//! The runner half of the createrepo adapter: carries out a [`CreaterepoPlan`] for one Koji
//! `createrepo` task in a Podman container.
//!
//! Order, and why:
//!
//! 1. Everything that can be checked is checked first ([`prepare`]): the task context, the
//!    repo on disk ([`createrepo::validate`]), the container spec and the log options. A bad
//!    request fails with a typed error before anything is pulled, created or written.
//! 2. One container for the task ([`container_spec`]): podman's catatonit pausing as its main
//!    process (as `nobody`), and each planned command (`createrepo_c`, then `mergerepo_c` when
//!    external repos are merged) run in it as an attached `exec` with the command's own argv,
//!    cwd, environment and log. The host steps between the commands (copying the old
//!    repodata, the premerge rename, the `EMPTY_REPO` marker) are plain file operations done
//!    here, on the host: the work dir is mounted at its host path, so the next command sees
//!    their result.
//! 3. What the task used (peak memory, CPU seconds, bytes written; [`accounting`]) and the
//!    kernel's OOM kills are read from the container's cgroup, which exists until the
//!    container is removed: a container per command would lose both when its process exits
//!    (runc deletes the cgroup). The figures cover every command of the task: one cgroup, so
//!    the peak is the highest of the commands' and CPU and writes are their sums.
//! 4. The container is removed on every path: success, a failed command, a failing sink,
//!    cancellation (kojid's signal handlers) and timeout. Cleanup never masks the error.
//!
//! Who the commands run as: the owner (uid:gid) of the task's work dir, with every
//! capability dropped. kojid runs as root, so this is normally root, and root without
//! `CAP_DAC_OVERRIDE` can still write the root-owned work dir and read the world-readable
//! topdir, which is all createrepo_c and mergerepo_c need. Entries the host creates for the
//! container are handed to that owner, so a work dir owned by another user works too.
//!
//! Output the hub reads: every file under the output dir ends up mode 0644 and every
//! directory 0755 (kojid's result under its usual umask 022), whatever the image's umask; the
//! logs are 0644 ([`FileSink`]).
//!
//! Logs: each command writes to the log kojid names (`createrepo.log`, `mergerepos.log` in
//! the work dir), starting with the `$ <argv>` line kojid's `log_output` writes, then the
//! command's stdout and stderr as they arrive (kojid sends both to the file). The caller's
//! sink, if any, gets the same bytes. The adapter's own `state.log` (work dir) says how each
//! command ended and what the task used, as buildArch's state.log does.
//!
//! [`accounting`]: crate::core::accounting

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use tracing::{debug, info, warn};

use crate::core::accounting::{oom_words, Usage};
use crate::core::cancel::{cancel_pair, Cancel};
use crate::core::createrepo::{
    self, Action, CommandOutcome, ContainerCommand, CreaterepoPlan, CreaterepoRequest,
    ExternalRepo, MergerepoVersion, ValidatedRepo,
};
use crate::core::error::{Error, Result, SinkFailure};
use crate::core::logsink::{format_timestamp, FileSink, FileSinkOptions};
use crate::core::podman::{ExecOptions, PodmanClient, PullPolicy};
use crate::core::sink::{NullSink, OutputSink, Stream};
use crate::core::spec::{ContainerSpec, NetworkMode, ResourceLimits, SelinuxLabel, VolumeMount};
use crate::core::task::TaskContext;

/// Python logger `koji_adjutant.createrepo`.
const LOG_TARGET: &str = "koji_adjutant::createrepo";

/// The task container's main process: podman's catatonit (`init`) pausing until the
/// container is removed; the commands are `exec`s beside it (as buildArch's containers).
const PAUSE_COMMAND: [&str; 2] = ["/run/podman-init", "-P"];
/// The pause process runs as `nobody`: it touches nothing.
const PAUSE_USER: &str = "65534:65534";
/// The name of the container's role (label `io.koji.adjutant.role`), as its usage is reported.
pub const ROLE: &str = "createrepo";
/// The adapter's own log in the work dir.
pub const STATE_LOG: &str = "state.log";

/// Podman's own timeout for the container is the task's plus this margin: a backstop should
/// this process die, never the primary limit (which ends the run with a clear error).
const PODMAN_TIMEOUT_MARGIN: u64 = 60;
/// Podman's timeout for a container of a task without a timeout of its own: a backstop, far
/// beyond what createrepo_c or mergerepo_c take for the largest Koji repos.
pub const DEFAULT_BACKSTOP: u64 = 24 * 3600;

const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// The adapter's settings, fixed for a builder (kojid's options and the container's limits).
#[derive(Debug, Clone, PartialEq)]
pub struct CreaterepoOptions {
    pub image: String,
    pub pull_policy: PullPolicy,
    /// kojid's `createrepo_update`: reuse the old repo's metadata with `--update`.
    pub update: bool,
    /// kojid's `createrepo_skip_stat`: `--skip-stat` with `--update`.
    pub skip_stat: bool,
    pub limits: ResourceLimits,
    /// Relabelling of the work dir mount (the only writable one). The read-only inputs are
    /// never relabelled: they are shared Koji storage, and relabelling would change them for
    /// the hub and every other builder. They must be readable by containers as they are.
    pub selinux_label: Option<SelinuxLabel>,
    /// Largest size of each log (see [`FileSinkOptions::cap_bytes`]).
    pub log_cap_bytes: Option<u64>,
    /// Seconds the whole task may take; `None` for no limit.
    pub timeout: Option<u64>,
}

impl CreaterepoOptions {
    #[cfg(test)]
    pub fn new(image: impl Into<String>) -> Self {
        CreaterepoOptions {
            image: image.into(),
            pull_policy: PullPolicy::IfNotPresent,
            update: true,
            skip_stat: false,
            limits: ResourceLimits::default(),
            selinux_label: None,
            log_cap_bytes: None,
            timeout: None,
        }
    }
}

/// What the kojid glue knows about one createrepo subtask besides the adapter's options; see
/// [`CreaterepoRequest`] for the other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInputs {
    /// kojid's `self.repodir`: `<topdir>/repos/<tag>/<repo_id>/<arch>`, whose last component
    /// is the repo arch (not the task's).
    pub arch_dir: PathBuf,
    pub topdir: Option<PathBuf>,
    pub groups: Option<PathBuf>,
    pub pkglist: Option<PathBuf>,
    pub old_repodata: Option<PathBuf>,
    pub external_repos: Vec<ExternalRepo>,
}

/// What a finished createrepo task produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CreaterepoOutcome {
    /// `<work_dir>/repo/repodata`, whose files kojid uploads.
    pub repodata_dir: PathBuf,
    /// The names of those files, sorted (every entry of `repodata/`, EMPTY_REPO included;
    /// kojid uses `os.listdir` order, the hub does not care).
    pub files: Vec<String>,
    /// The `EMPTY_REPO` marker was written.
    pub empty: bool,
    /// The logs of the commands that ran, in order.
    pub logs: Vec<PathBuf>,
    /// kojid's upload dir for the task (`tasks/<id % 10000>/<id>`).
    pub upload_path: String,
    /// The adapter's own log (`<work_dir>/state.log`): how each command ended, what the task
    /// used.
    pub state_log: PathBuf,
    /// What the task's container used (`None`: its cgroup could not be read).
    pub usage: Option<Usage>,
}

/// A checked request: the repo, the plan (made for the mergerepo_c version of the image,
/// see [`run`]) and the container that will carry it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub repo: ValidatedRepo,
    pub plan: CreaterepoPlan,
    pub spec: ContainerSpec,
    /// `uid:gid` the commands run as.
    pub user: String,
    /// Owner given to the entries the host creates in the work dir.
    owner: (u32, u32),
    log_options: FileSinkOptions,
}

/// Checks everything and plans, without writing anything or talking to podman.
pub fn prepare(
    ctx: &TaskContext,
    opts: &CreaterepoOptions,
    inputs: RepoInputs,
) -> Result<Prepared> {
    ctx.validate()?;
    if let Some(cap) = opts.log_cap_bytes {
        if cap < FileSink::MIN_CAP_BYTES {
            return Err(Error::invalid(format!(
                "log_cap_bytes is {cap}; it must be at least {}",
                FileSink::MIN_CAP_BYTES
            )));
        }
    }
    if opts.timeout == Some(0) {
        return Err(Error::invalid("timeout must be at least 1 second"));
    }
    let (repo_dir, arch) = split_arch_dir(&inputs.arch_dir)?;
    let request = CreaterepoRequest {
        repo_dir,
        work_dir: ctx.work_dir.clone(),
        arch,
        topdir: inputs.topdir,
        groups: inputs.groups,
        pkglist: inputs.pkglist,
        old_repodata: inputs.old_repodata,
        update: opts.update,
        skip_stat: opts.skip_stat,
        external_repos: inputs.external_repos,
    };
    let repo = createrepo::validate(&request)?;
    // Planned as for a current mergerepo_c; `run` plans again for the image's own.
    let plan = createrepo::plan(&repo, Some(MergerepoVersion::ARCH_EXPAND))?;
    let meta = fs::metadata(&ctx.work_dir)
        .map_err(|e| Error::io(format!("inspecting work dir {}", ctx.work_dir.display()), e))?;
    let owner = (meta.uid(), meta.gid());
    let user = format!("{}:{}", owner.0, owner.1);
    let spec = container_spec(&plan, ctx, opts);
    spec.validate()?;
    Ok(Prepared {
        repo,
        plan,
        spec,
        user,
        owner,
        log_options: FileSinkOptions {
            cap_bytes: opts.log_cap_bytes,
            ..FileSinkOptions::default()
        },
    })
}

/// `<repo_dir>/<arch>` -> (`<repo_dir>`, `<arch>`); the arch itself is checked by
/// [`createrepo::validate`].
fn split_arch_dir(arch_dir: &Path) -> Result<(PathBuf, String)> {
    let bad = || {
        Error::invalid(format!(
            "repo_dir must be <topdir>/repos/<tag>/<repo_id>/<arch>, not {}",
            arch_dir.display()
        ))
    };
    let mut components = arch_dir.components();
    match components.next_back() {
        Some(std::path::Component::Normal(arch)) => {
            let arch = arch.to_str().ok_or_else(bad)?.to_string();
            Ok((components.as_path().to_path_buf(), arch))
        }
        _ => Err(bad()),
    }
}

/// The task's container (each planned command is an `exec` in it as `user`, with its own
/// argv, cwd and environment): catatonit pausing as `nobody`, the plan's mounts at their
/// host paths, no network unless an external repo needs it, no capabilities, labelled with
/// the task, its role and method.
pub fn container_spec(
    plan: &CreaterepoPlan,
    ctx: &TaskContext,
    opts: &CreaterepoOptions,
) -> ContainerSpec {
    let mut spec = ContainerSpec::new(
        opts.image.clone(),
        PAUSE_COMMAND.iter().map(|s| s.to_string()).collect(),
    );
    spec.init = true;
    spec.mounts = plan
        .mounts
        .iter()
        .map(|m| VolumeMount {
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
            selinux_label: if m.read_only {
                None
            } else {
                opts.selinux_label
            },
        })
        .collect();
    spec.user = Some(PAUSE_USER.to_owned());
    spec.workdir = Some(ctx.work_dir.to_string_lossy().into_owned());
    spec.network = if plan.network_needed {
        NetworkMode::Bridge
    } else {
        NetworkMode::None
    };
    spec.limits = opts.limits.clone();
    spec.timeout = Some(opts.timeout.map_or(DEFAULT_BACKSTOP, |t| {
        t.saturating_add(PODMAN_TIMEOUT_MARGIN)
    }));
    spec.task_id = Some(ctx.task_id);
    spec.labels
        .insert("io.koji.adjutant.role".to_owned(), ROLE.to_owned());
    // `koji-adjutant status` names the task's method by it
    spec.labels.insert(
        "io.koji.adjutant.method".to_owned(),
        "createrepo".to_owned(),
    );
    spec
}

/// Runs one createrepo task: prepare, make the image available, then the plan's steps, each
/// command an `exec` in the task's container, which is removed on every path. `sink` gets
/// every command's output (besides the logs); it is finished once, at the end. `on_usage`
/// gets what the container used, on every path but cancellation (a signal), before the
/// container is removed; the same figures go to state.log and this crate's log.
pub async fn run(
    client: &PodmanClient,
    opts: &CreaterepoOptions,
    ctx: &TaskContext,
    inputs: RepoInputs,
    sink: &mut dyn OutputSink,
    on_usage: &mut (dyn FnMut(&Usage) -> Result<()> + Send),
    cancel: &Cancel,
) -> Result<CreaterepoOutcome> {
    // Validation reads the pkglist and checks every package dir it names (tens of thousands
    // for a large tag): on a blocking thread.
    let (ctx_owned, opts_owned) = (ctx.clone(), opts.clone());
    let mut prepared = tokio::select! {
        prepared = tokio::task::spawn_blocking(move || prepare(&ctx_owned, &opts_owned, inputs)) => {
            prepared.map_err(|e| Error::io("checking the repo", std::io::Error::other(e)))??
        }
        () = cancel.cancelled() => return Err(Error::Interrupted),
    };
    // Every byte of container output also goes to `<log_dir>/<task_id>/container.log`.
    let mut with_container_log = match ctx.container_log() {
        Some(path) => {
            let options = FileSinkOptions::container_log(prepared.log_options.cap_bytes);
            WithContainerLog {
                log: Some(FileSink::create(path, options)?),
                inner: sink,
            }
        }
        None => WithContainerLog {
            log: None,
            inner: sink,
        },
    };
    let sink: &mut dyn OutputSink = &mut with_container_log;
    // Made before any container exists; the work dir is writable by the container, so a
    // link planted at the name later is never followed (the descriptor is ours).
    let state_path = ctx.work_dir.join(STATE_LOG);
    let mut state = StateLog(FileSink::create_no_follow(
        &state_path,
        prepared.log_options,
    )?);
    let started = Instant::now();
    let image_id = tokio::select! {
        image = client.ensure_image(&opts.image, opts.pull_policy) => image?,
        () = cancel.cancelled() => return Err(Error::Interrupted),
    };
    let (steps, usage) = run_in_task_container(
        client,
        &mut prepared,
        &image_id,
        opts.timeout,
        sink,
        &mut state,
        on_usage,
        cancel,
    )
    .await;
    debug!(target: LOG_TARGET, task_id = ctx.task_id, total_ms = ms(started), "createrepo steps done");
    let finished = sink.finish().map_err(Error::Sink);
    let logs = match (steps, finished) {
        (Ok(logs), Ok(())) => logs,
        (Err(e), finished) => {
            if let Err(also) = finished {
                warn!(target: LOG_TARGET, "the sink also failed to finish: {also}");
            }
            state.note(&format!("Failed: {e}"));
            state.finish();
            return Err(e);
        }
        (Ok(_), Err(e)) => {
            state.note(&format!("Failed: {e}"));
            state.finish();
            return Err(e);
        }
    };
    let (plan, ctx, owner) = (prepared.plan.clone(), ctx.clone(), prepared.owner);
    let outcome = blocking(move || outcome(&plan, &ctx, owner, logs)).await;
    match &outcome {
        Ok(_) => state.note("Finished: createrepo succeeded"),
        Err(e) => state.note(&format!("Failed: {e}")),
    }
    state.finish();
    outcome.map(|o| CreaterepoOutcome { usage, ..o })
}

/// state.log: the adapter's notes, each line with kojid's timestamp. Writing it never fails
/// the task (a failure is a warning in this crate's log).
struct StateLog(FileSink);

impl StateLog {
    fn note(&mut self, line: &str) {
        let text = format!(
            "{} {line}\n",
            format_timestamp(std::time::SystemTime::now())
        );
        if let Err(e) = self.0.write(Stream::Stdout, text.as_bytes()) {
            warn!(target: LOG_TARGET, "cannot write state.log: {e}");
        }
    }

    fn finish(&mut self) {
        if let Err(e) = self.0.finish() {
            warn!(target: LOG_TARGET, "cannot finish state.log: {e}");
        }
    }
}

/// Creates and starts the task's container, runs the steps in it (see
/// [`run_steps_within`]), reads what it used (every path but cancellation: `on_usage`,
/// state.log, this crate's log) and removes it, whatever happened.
#[allow(clippy::too_many_arguments)]
async fn run_in_task_container(
    client: &PodmanClient,
    prepared: &mut Prepared,
    image_id: &str,
    timeout: Option<u64>,
    sink: &mut dyn OutputSink,
    state: &mut StateLog,
    on_usage: &mut (dyn FnMut(&Usage) -> Result<()> + Send),
    cancel: &Cancel,
) -> (Result<Vec<PathBuf>>, Option<Usage>) {
    let spec = &prepared.spec;
    let started = Instant::now();
    // Never ended by a signal (`create` is uncancelled): its id must be known to remove it.
    let id = match client.create(spec).await {
        Ok(id) => id,
        Err(e) => return (Err(e), None),
    };
    let task_id = spec.task_id;
    let mut task = TaskContainer {
        client,
        id,
        image_id: image_id.to_owned(),
        oom_seen: 0,
    };
    let steps = match client.start(&task.id, Box::new(NullSink)).await {
        Ok(()) => {
            debug!(target: LOG_TARGET, container_ms = ms(started), "task container running");
            run_steps_within(&mut task, prepared, timeout, sink, state, cancel).await
        }
        Err(e) => Err(e),
    };
    let mut usage = None;
    if !cancel.is_cancelled() {
        match client.usage(&task.id).await {
            Ok(Some(used)) => {
                let line = format!("Usage of the {ROLE} container: {}", used.describe());
                info!(target: LOG_TARGET, task_id, "{line}");
                state.note(&line);
                if let Err(e) = on_usage(&used) {
                    warn!(target: LOG_TARGET, "the usage callback failed: {e}");
                }
                usage = Some(used);
            }
            Ok(None) => warn!(target: LOG_TARGET, "the {ROLE} container names no cgroup: no usage"),
            Err(e) => warn!(target: LOG_TARGET, "cannot read the {ROLE} container's usage: {e}"),
        }
    }
    client.remove_logged(&task.id).await;
    (steps, usage)
}

/// The task's running container and what the runner saw of it.
struct TaskContainer<'a> {
    client: &'a PodmanClient,
    id: String,
    /// Its image's ID (mergerepo_c's version is known per image).
    image_id: String,
    /// The cgroup's OOM kill count at the last look.
    oom_seen: u64,
}

impl TaskContainer<'_> {
    /// Whether the kernel's OOM killer killed a process of the container since the last look
    /// (its cgroup's count; the pause process is never the one killed, so podman's
    /// `OOMKilled` does not say): the words for the failure. `None` when it did not, or
    /// the count cannot be read.
    async fn oom_note(&mut self, limit: Option<u64>) -> Option<String> {
        let kills = match self.client.oom_kills(&self.id).await {
            Ok(kills) => kills?,
            Err(e) => {
                warn!(target: LOG_TARGET, "cannot read the {ROLE} container's OOM kills: {e}");
                return None;
            }
        };
        oom_words(ROLE, kills, &mut self.oom_seen, limit)
    }
}

/// The caller's sink plus the task's container.log, when a log dir is configured.
struct WithContainerLog<'a> {
    log: Option<FileSink>,
    inner: &'a mut dyn OutputSink,
}

impl OutputSink for WithContainerLog<'_> {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        if let Some(log) = &mut self.log {
            log.write(stream, data)?;
        }
        self.inner.write(stream, data)
    }

    fn finish(&mut self) -> Result<(), SinkFailure> {
        let logged = self.log.as_mut().map_or(Ok(()), OutputSink::finish);
        self.inner.finish().and(logged)
    }
}

/// What the finished plan produced, read back from the work dir without following a link:
/// the files directly in the repodata dir, which must all be regular files (kojid uploads
/// them; anything else there is an error, as uploading it would fail in kojid).
fn outcome(
    plan: &CreaterepoPlan,
    ctx: &TaskContext,
    owner: (u32, u32),
    logs: Vec<PathBuf>,
) -> Result<CreaterepoOutcome> {
    let work = WorkDir::open(&ctx.work_dir, owner)?;
    let mut files = Vec::new();
    for (name, kind) in work.entries(&plan.repodata_dir)? {
        let shown = plan.repodata_dir.join(&name);
        let name = name.into_string().map_err(|name| {
            Error::Repo(format!(
                "repodata file name {name:?} in {} is not UTF-8",
                plan.repodata_dir.display()
            ))
        })?;
        if kind != rustix::fs::FileType::RegularFile {
            return Err(Error::Repo(format!(
                "repodata entry {} is not a regular file",
                shown.display()
            )));
        }
        files.push(name);
    }
    let empty = match plan.empty_repo_marker() {
        Some(marker) => work.file_type(marker)? == Some(rustix::fs::FileType::RegularFile),
        None => false,
    };
    Ok(CreaterepoOutcome {
        repodata_dir: plan.repodata_dir.clone(),
        files,
        empty,
        logs,
        upload_path: ctx.upload_path(),
        state_log: ctx.work_dir.join(STATE_LOG),
        usage: None,
    })
}

/// The plan's steps under the task's timeout, each command an attached `exec` in the task's
/// container: the task's container costs one start and the commands one exec each
/// (docs/benchmarks.md, P4, for what that costs against a container per command).
async fn run_steps_within(
    task: &mut TaskContainer<'_>,
    prepared: &mut Prepared,
    timeout: Option<u64>,
    sink: &mut dyn OutputSink,
    state: &mut StateLog,
    cancel: &Cancel,
) -> Result<Vec<PathBuf>> {
    // Cooperative, never by dropping the steps: the running exec ends with its stream, and
    // the caller removes the container (killing the command) once this returns.
    let (stop, stopped) = cancel_pair();
    // The steps' own cancel scope: a timeout ends their Podman calls too.
    let steps = stopped
        .clone()
        .scope(run_steps(task, prepared, sink, state, &stopped));
    tokio::pin!(steps);
    let deadline = async {
        match timeout {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = &mut steps => result,
        () = cancel.cancelled() => {
            stop.cancel();
            let _ = steps.await;
            Err(Error::Interrupted)
        }
        () = deadline => {
            stop.cancel();
            let _ = steps.await;
            Err(Error::Repo(format!(
                "createrepo did not finish within its timeout of {}s",
                timeout.unwrap_or_default()
            )))
        }
    }
}

async fn run_steps(
    task: &mut TaskContainer<'_>,
    prepared: &mut Prepared,
    sink: &mut dyn OutputSink,
    state: &mut StateLog,
    cancel: &Cancel,
) -> Result<Vec<PathBuf>> {
    if prepared.repo.merges() {
        // kojid asks the mergerepo_c it will run for its version: so does this, in the image.
        let version = mergerepo_version(task, prepared, cancel).await?;
        prepared.plan = createrepo::plan(&prepared.repo, version)?;
    }
    let work_dir = prepared.spec.workdir.clone().unwrap_or_default();
    let owner = prepared.owner;
    let mut logs = Vec::new();
    for step in &prepared.plan.steps {
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        match step {
            Action::Run(command) => {
                let log = run_command(task, command, prepared, &mut *sink, state, cancel).await?;
                logs.push(log);
            }
            host => {
                let (step, dir) = (host.clone(), PathBuf::from(&work_dir));
                blocking(move || host_step(&step, &WorkDir::open(&dir, owner)?)).await?;
            }
        }
    }
    if let Some(out_dir) = prepared.plan.repodata_dir.parent() {
        let (out_dir, dir, cancel) = (
            out_dir.to_path_buf(),
            PathBuf::from(&work_dir),
            cancel.clone(),
        );
        blocking(move || WorkDir::open(&dir, owner)?.make_readable(&out_dir, &cancel)).await?;
    }
    Ok(logs)
}

/// The mergerepo_c versions found per image ID in this process.
static MERGEREPO_VERSIONS: Mutex<Option<HashMap<String, Option<MergerepoVersion>>>> =
    Mutex::new(None);

/// The version of the image's mergerepo_c, as kojid's `_get_mergerepo_c_version` reads it
/// (`mergerepo_c --version`, an exec in the task's container as the commands' user, cwd
/// `/`); `None` when it exits non-zero or says no version, as kojid (which then drops
/// `--arch-expand` and refuses `simple` merges). Cached per image ID.
async fn mergerepo_version(
    task: &mut TaskContainer<'_>,
    prepared: &Prepared,
    cancel: &Cancel,
) -> Result<Option<MergerepoVersion>> {
    let image_id = task.image_id.clone();
    let known = |versions: &mut Option<HashMap<_, _>>| {
        versions
            .get_or_insert_with(HashMap::new)
            .get(&image_id)
            .copied()
    };
    if let Some(version) = known(&mut MERGEREPO_VERSIONS.lock().unwrap_or_else(|p| p.into_inner()))
    {
        return Ok(version);
    }
    let argv = vec![createrepo::MERGEREPO_C.to_owned(), "--version".to_owned()];
    let mut opts = exec_options(prepared, None);
    opts.workdir = Some("/".to_owned());
    let mut out = VersionOutput(Vec::new());
    let code = task
        .client
        .exec(&task.id, &argv, &opts, &mut out, cancel)
        .await?;
    let version = if code == 0 {
        MergerepoVersion::parse(&String::from_utf8_lossy(&out.0))
    } else {
        None
    };
    match version {
        Some(v) => debug!(target: LOG_TARGET, image_id, version = %v, "mergerepo_c version"),
        None => warn!(target: LOG_TARGET, image_id, code, "Unable to detect mergerepo_c version"),
    }
    MERGEREPO_VERSIONS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(image_id, version);
    Ok(version)
}

/// The first KiB of `mergerepo_c --version`'s stdout (stderr is dropped, as kojid drops it).
struct VersionOutput(Vec<u8>);

impl OutputSink for VersionOutput {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        if stream == Stream::Stdout {
            let room = 1024usize.saturating_sub(self.0.len());
            self.0.extend(data.iter().take(room));
        }
        Ok(())
    }
}

/// Runs file work off the runtime's threads, so signal checks and other tasks keep going.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io("host file step", std::io::Error::other(e.to_string())))?
}

/// An exec of `command` (or of another argv when `None`) as the commands' user, with the
/// container's environment plus the command's.
fn exec_options(prepared: &Prepared, command: Option<&ContainerCommand>) -> ExecOptions {
    let mut environment = prepared.spec.environment.clone();
    if let Some(command) = command {
        environment.extend(command.env.clone());
    }
    ExecOptions {
        environment,
        workdir: Some(command.map_or_else(
            || prepared.spec.workdir.clone().unwrap_or_default(),
            |c| c.cwd.clone(),
        )),
        user: Some(prepared.user.clone()),
    }
}

/// `exec`s one planned command with its log; a non-zero exit is kojid's task failure.
async fn run_command(
    task: &mut TaskContainer<'_>,
    command: &ContainerCommand,
    prepared: &Prepared,
    sink: &mut dyn OutputSink,
    state: &mut StateLog,
    cancel: &Cancel,
) -> Result<PathBuf> {
    let log_path = PathBuf::from(&command.cwd).join(&command.log_name);
    // The work dir was mounted read-write: never open a link planted at the log's name.
    let log = FileSink::create_no_follow(&log_path, prepared.log_options)?;
    let mut tee = CommandSink { log, caller: sink };
    // kojid's log_output starts each log with the command line.
    let header = format!("$ {}\n", command.argv.join(" "));
    tee.write(Stream::Stdout, header.as_bytes())
        .map_err(Error::Sink)?;
    let opts = exec_options(prepared, Some(command));
    let name = command
        .argv
        .first()
        .map_or("", |a| a.rsplit('/').next().unwrap_or(a.as_str()));
    debug!(target: LOG_TARGET, argv = ?command.argv, log = %log_path.display(), "running");
    let started = Instant::now();
    // The exec's output stream finishes the log when it ends.
    let code = task
        .client
        .exec(&task.id, &command.argv, &opts, &mut tee, cancel)
        .await?;
    let secs = started.elapsed().as_secs_f64();
    debug!(target: LOG_TARGET, log = %log_path.display(), code, ms = ms(started), "command exited");
    state.note(&format!(
        "{name} ({}) exited with status {code} after {secs:.2} s",
        command.log_name
    ));
    if code != 0 {
        let outcome = exit_outcome(code);
        let err = command.failed(outcome, log_path, code);
        let limit = prepared.spec.limits.memory_bytes;
        let oom = match outcome {
            CommandOutcome::Signaled(9) => task.oom_note(limit).await,
            _ => None,
        };
        if let Some(note) = &oom {
            state.note(note);
        }
        return Err(match (outcome, oom, limit, err) {
            // The cgroup's count says it: the kernel's OOM killer.
            (
                _,
                Some(note),
                _,
                Error::RepoCommand {
                    message,
                    log,
                    exit_code,
                },
            ) => Error::RepoCommand {
                message: format!("{message} ({note})"),
                log,
                exit_code,
            },
            // The count could not be read: say what a SIGKILL under a memory limit most
            // likely was.
            (
                CommandOutcome::Signaled(9),
                None,
                Some(limit),
                Error::RepoCommand {
                    message,
                    log,
                    exit_code,
                },
            ) => Error::RepoCommand {
                message: format!(
                    "{message} (the container has a memory limit of {limit} bytes: probably out of memory)"
                ),
                log,
                exit_code,
            },
            (_, _, _, err) => err,
        });
    }
    Ok(log_path)
}

/// podman reports a command killed by signal N as exit status 128+N; createrepo_c and
/// mergerepo_c only ever exit 0, 1 or 2 themselves, so such codes are read as signals, which
/// kojid's message names ("was killed by signal 9").
fn exit_outcome(code: i64) -> CommandOutcome {
    match code {
        129..=192 => CommandOutcome::Signaled((code - 128) as i32),
        code => CommandOutcome::Exited(code),
    }
}

/// A command's log plus the caller's sink. `finish` (called when the command's output ends)
/// finishes only the log: the caller's sink serves every command of the task.
struct CommandSink<'a> {
    log: FileSink,
    caller: &'a mut dyn OutputSink,
}

impl OutputSink for CommandSink<'_> {
    fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), SinkFailure> {
        // The log gets the bytes even when the caller's sink fails on them.
        let logged = self.log.write(stream, data);
        let passed = self.caller.write(stream, data);
        logged.and(passed)
    }

    fn finish(&mut self) -> Result<(), SinkFailure> {
        self.log.finish()
    }
}

// ------------------------------------------------------------------------------------------
// host steps

/// Does one non-`Run` step of the plan on the host, in the work dir (every step but the old
/// repodata's source is there). Everything it creates gets the work dir's owner and the
/// modes kojid's outputs have.
fn host_step(step: &Action, work: &WorkDir) -> Result<()> {
    match step {
        Action::CreateDir { path } => work.create_dir_all(path),
        Action::CopyOldRepodata { from, to, remove } => copy_old_repodata(from, to, remove, work),
        Action::Rename { from, to } => work.rename(from, to),
        Action::WriteFile { path, contents } => work.write_file(path, contents.as_bytes()),
        // Commands run in the container; the caller never hands one here.
        Action::Run(command) => Err(Error::invalid(format!(
            "{:?} is not a host step",
            command.argv
        ))),
    }
}

/// kojid's `copytree` of the old repodata, limited to its regular files (repodata is flat;
/// a symlink there would make createrepo_c read outside the mounts), minus `remove`. Each
/// copy is a new file in the work dir.
fn copy_old_repodata(from: &Path, to: &Path, remove: &[String], work: &WorkDir) -> Result<()> {
    let context = || format!("copying old repodata {}", from.display());
    work.create_dir_all(to)?;
    for entry in fs::read_dir(from).map_err(|e| Error::io(context(), e))? {
        let entry = entry.map_err(|e| Error::io(context(), e))?;
        let name = entry.file_name();
        if remove.iter().any(|r| name == r.as_str()) {
            debug!(target: LOG_TARGET, "not copying {} from the old repodata", entry.path().display());
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::io(context(), e))?;
        if !kind.is_file() {
            warn!(target: LOG_TARGET, "skipping {}: not a regular file", entry.path().display());
            continue;
        }
        let mut source = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(entry.path())
            .map_err(|e| Error::io(context(), e))?;
        let target = to.join(&name);
        let mut copy = work.create_new_file(&target)?;
        std::io::copy(&mut source, &mut copy).map_err(|e| Error::io(context(), e))?;
    }
    Ok(())
}

/// The flags of every directory opened below the work dir: never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The task's work dir, which the containers had mounted read-write. Every entry below it is
/// reached from a descriptor of the work dir one component at a time, each opened with
/// `O_NOFOLLOW` (`openat`): a symlink a container planted (as `repo`, `repodata`, a log or
/// the `EMPTY_REPO` marker, pointing at a host file or directory) fails the step instead of
/// redirecting a write, a truncation or a chmod of the host, where kojid runs as root.
pub(crate) struct WorkDir {
    path: PathBuf,
    fd: OwnedFd,
    owner: (u32, u32),
}

fn fs_error(context: String, errno: rustix::io::Errno) -> Error {
    let source = std::io::Error::from(errno);
    if errno == rustix::io::Errno::LOOP || errno == rustix::io::Errno::NOTDIR {
        return Error::Repo(format!(
            "{context}: a symlink or another file is in the way (planted by a container?): {source}"
        ));
    }
    Error::io(context, source)
}

impl WorkDir {
    /// The work dir at `path` (kojid's, never a container's), its entries to be owned by
    /// `owner`.
    pub(crate) fn open(path: &Path, owner: (u32, u32)) -> Result<Self> {
        let fd = rustix::fs::open(path, DIR_FLAGS, Mode::empty())
            .map_err(|e| fs_error(format!("opening work dir {}", path.display()), e))?;
        Ok(WorkDir {
            path: path.to_path_buf(),
            fd,
            owner,
        })
    }

    /// The components of `path` below the work dir; a path elsewhere or with `..` is an
    /// error (the plan writes inside the work dir only).
    fn components<'a>(&self, path: &'a Path) -> Result<Vec<&'a OsStr>> {
        let outside = || {
            Error::invalid(format!(
                "{} is not inside the work dir {}",
                path.display(),
                self.path.display()
            ))
        };
        path.strip_prefix(&self.path)
            .map_err(|_| outside())?
            .components()
            .map(|c| match c {
                Component::Normal(name) => Ok(name),
                _ => Err(outside()),
            })
            .collect()
    }

    /// The directory at `components` below the work dir.
    fn dir_at(&self, components: &[&OsStr], shown: &Path) -> Result<OwnedFd> {
        let mut fd = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| fs_error(format!("opening {}", self.path.display()), e))?;
        for name in components {
            fd = rustix::fs::openat(&fd, *name, DIR_FLAGS, Mode::empty())
                .map_err(|e| fs_error(format!("opening {}", shown.display()), e))?;
        }
        Ok(fd)
    }

    /// The directory holding `path`, and `path`'s name in it.
    fn parent_of<'a>(&self, path: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
        let components = self.components(path)?;
        let Some((name, parents)) = components.split_last() else {
            return Err(Error::invalid(format!(
                "{} is the work dir itself",
                path.display()
            )));
        };
        Ok((self.dir_at(parents, path)?, name))
    }

    /// Gives `fd` its mode and the owner (a no-op when both are right already).
    fn settle(&self, fd: &OwnedFd, mode: u32, shown: &Path) -> Result<()> {
        let context = || format!("setting the mode and owner of {}", shown.display());
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| fs_error(context(), e))?;
        let stat = rustix::fs::fstat(fd).map_err(|e| fs_error(context(), e))?;
        let (uid, gid) = self.owner;
        if (stat.st_uid, stat.st_gid) != (uid, gid) {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| fs_error(context(), e))?;
        }
        Ok(())
    }

    /// Creates `path` and its missing parents, each mode 0755 and the owner's; one that
    /// exists must be a directory, not a link to one.
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let components = self.components(path)?;
        let mut fd = self.dir_at(&[], path)?;
        let mut shown = self.path.clone();
        for name in components {
            shown.push(name);
            let created = match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) => true,
                Err(rustix::io::Errno::EXIST) => false,
                Err(e) => return Err(fs_error(format!("creating {}", shown.display()), e)),
            };
            fd = rustix::fs::openat(&fd, name, DIR_FLAGS, Mode::empty())
                .map_err(|e| fs_error(format!("opening {}", shown.display()), e))?;
            if created || shown == path {
                self.settle(&fd, DIR_MODE, &shown)?;
            }
        }
        Ok(())
    }

    /// Writes `contents` as the regular file `path` (created, or truncated when a regular
    /// file is there), mode 0644, the owner's.
    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<()> {
        use std::io::Write;
        let (dir, name) = self.parent_of(path)?;
        let context = || format!("writing {}", path.display());
        // O_NONBLOCK: a FIFO planted at the name fails the open instead of blocking it.
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(FILE_MODE))
            .map_err(|e| fs_error(context(), e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| fs_error(context(), e))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(Error::Repo(format!(
                "{}: not a regular file (planted by a container?)",
                path.display()
            )));
        }
        rustix::fs::ftruncate(&fd, 0).map_err(|e| fs_error(context(), e))?;
        self.settle(&fd, FILE_MODE, path)?;
        fs::File::from(fd)
            .write_all(contents)
            .map_err(|e| Error::io(context(), e))
    }

    /// A new regular file at `path` (nothing may be there), mode 0644, the owner's.
    fn create_new_file(&self, path: &Path) -> Result<fs::File> {
        let (dir, name) = self.parent_of(path)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(FILE_MODE))
            .map_err(|e| fs_error(format!("creating {}", path.display()), e))?;
        self.settle(&fd, FILE_MODE, path)?;
        Ok(fs::File::from(fd))
    }

    /// Renames `from` to `to`, both below the work dir.
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = self.parent_of(to)?;
        rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name).map_err(|e| {
            fs_error(
                format!("renaming {} to {}", from.display(), to.display()),
                e,
            )
        })
    }

    /// The type of the entry at `path`, not following a symlink; `None` when nothing is there.
    fn file_type(&self, path: &Path) -> Result<Option<rustix::fs::FileType>> {
        let (dir, name) = self.parent_of(path)?;
        match rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(rustix::fs::FileType::from_raw_mode(stat.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(fs_error(format!("inspecting {}", path.display()), e)),
        }
    }

    /// The names of the entries directly in the directory `path`, with their types (not
    /// following symlinks), sorted by name.
    fn entries(&self, path: &Path) -> Result<Vec<(OsString, rustix::fs::FileType)>> {
        let dir = self.dir_at(&self.components(path)?, path)?;
        Self::entries_of(&dir, path)
    }

    fn entries_of(dir: &OwnedFd, shown: &Path) -> Result<Vec<(OsString, rustix::fs::FileType)>> {
        use std::os::unix::ffi::OsStrExt;
        let context = || format!("listing {}", shown.display());
        let mut listed = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir).map_err(|e| fs_error(context(), e))? {
            let entry = entry.map_err(|e| fs_error(context(), e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let stat = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| fs_error(context(), e))?;
            listed.push((
                name.to_os_string(),
                rustix::fs::FileType::from_raw_mode(stat.st_mode),
            ));
        }
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listed)
    }

    /// Sets the directory `path` and every directory under it to 0755 and every regular file
    /// to 0644 (the hub, another user, reads what kojid uploads); symlinks, FIFOs and the
    /// like are left alone. Stops early once `cancel` fires.
    fn make_readable(&self, path: &Path, cancel: &Cancel) -> Result<()> {
        use rustix::fs::FileType;
        let top = self.dir_at(&self.components(path)?, path)?;
        self.settle(&top, DIR_MODE, path)?;
        let mut pending = vec![(top, path.to_path_buf())];
        while let Some((dir, shown)) = pending.pop() {
            if cancel.is_cancelled() {
                return Err(Error::Interrupted);
            }
            for (name, kind) in Self::entries_of(&dir, &shown)? {
                let entry = shown.join(&name);
                let context = || format!("opening {}", entry.display());
                match kind {
                    FileType::Directory => {
                        let sub = rustix::fs::openat(&dir, &name, DIR_FLAGS, Mode::empty())
                            .map_err(|e| fs_error(context(), e))?;
                        self.settle(&sub, DIR_MODE, &entry)?;
                        pending.push((sub, entry));
                    }
                    FileType::RegularFile => {
                        let flags = OFlags::RDONLY
                            | OFlags::NOFOLLOW
                            | OFlags::NONBLOCK
                            | OFlags::NOCTTY
                            | OFlags::CLOEXEC;
                        let file = rustix::fs::openat(&dir, &name, flags, Mode::empty())
                            .map_err(|e| fs_error(context(), e))?;
                        self.settle(&file, FILE_MODE, &entry)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Milliseconds since `since`, for the debug log's phase timings.
fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use crate::core::testutil::Scratch;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Who owns what this process creates.
    fn owner_of(path: &Path) -> (u32, u32) {
        let meta = fs::metadata(path).unwrap();
        (meta.uid(), meta.gid())
    }

    /// A minimal Koji repo (empty pkglist) and a work dir.
    fn koji(s: &Scratch) -> (TaskContext, RepoInputs) {
        let top = s.0.join("koji");
        let arch_dir = top.join("repos/f40-build/7/x86_64");
        fs::create_dir_all(&arch_dir).unwrap();
        symlink("../../../..", arch_dir.join("toplink")).unwrap();
        fs::write(arch_dir.join("pkglist"), "").unwrap();
        fs::write(arch_dir.join("blocklist"), "").unwrap();
        let work = s.0.join("work/tasks/1234/11234");
        fs::create_dir_all(&work).unwrap();
        let ctx = TaskContext {
            task_id: 11234,
            work_dir: work,
            worker_id: None,
            log_dir: None,
        };
        let inputs = RepoInputs {
            arch_dir: top.join("repos/f40-build/7/x86_64/"),
            topdir: Some(top),
            groups: None,
            pkglist: None,
            old_repodata: None,
            external_repos: Vec::new(),
        };
        (ctx, inputs)
    }

    #[test]
    fn the_container_sees_only_the_plan_as_the_work_dir_owner() {
        let s = Scratch::new("spec");
        let (ctx, inputs) = koji(&s);
        let mut opts = CreaterepoOptions::new("localhost/koji-adjutant-task:dev");
        opts.selinux_label = Some(SelinuxLabel::Private);
        opts.timeout = Some(600);
        let prepared = prepare(&ctx, &opts, inputs).unwrap();
        let spec = &prepared.spec;
        let (uid, gid) = owner_of(&ctx.work_dir);
        // catatonit pauses as nobody; the commands are execs as the work dir's owner
        assert_eq!(prepared.user, format!("{uid}:{gid}"));
        assert_eq!(spec.user.as_deref(), Some(PAUSE_USER));
        assert_eq!(spec.command, PAUSE_COMMAND);
        assert!(spec.init);
        assert_eq!(spec.labels["io.koji.adjutant.role"], ROLE);
        assert_eq!(spec.labels["io.koji.adjutant.method"], "createrepo");
        let exec = exec_options(&prepared, None);
        assert_eq!(exec.user.as_deref(), Some(prepared.user.as_str()));
        assert_eq!(exec.workdir, spec.workdir);
        assert_eq!(spec.network, NetworkMode::None);
        assert_eq!(spec.task_id, Some(11234));
        assert!(spec.cap_add.is_empty());
        assert_eq!(spec.timeout, Some(660));
        assert_eq!(spec.mounts.len(), prepared.plan.mounts.len());
        for mount in &spec.mounts {
            assert_eq!(mount.source == ctx.work_dir, !mount.read_only, "{mount:?}");
            // Shared Koji storage is never relabelled.
            let label = if mount.read_only {
                None
            } else {
                Some(SelinuxLabel::Private)
            };
            assert_eq!(mount.selinux_label, label, "{mount:?}");
        }
    }

    #[test]
    fn an_external_http_repo_gets_the_bridge() {
        let s = Scratch::new("net");
        let (ctx, mut inputs) = koji(&s);
        inputs.external_repos = vec![ExternalRepo {
            name: "ext".into(),
            url: "http://10.88.0.1:8000/$arch/".into(),
            merge_mode: createrepo::MergeMode::Bare,
            arches: None,
        }];
        let prepared = prepare(&ctx, &CreaterepoOptions::new("img"), inputs).unwrap();
        assert_eq!(prepared.spec.network, NetworkMode::Bridge);
    }

    #[test]
    fn bad_options_fail_before_anything_is_written() {
        let s = Scratch::new("opts");
        let (ctx, inputs) = koji(&s);
        let bad = [
            CreaterepoOptions {
                log_cap_bytes: Some(10),
                ..CreaterepoOptions::new("img")
            },
            CreaterepoOptions {
                timeout: Some(0),
                ..CreaterepoOptions::new("img")
            },
            CreaterepoOptions::new("--privileged"),
            CreaterepoOptions {
                limits: ResourceLimits {
                    pids: Some(0),
                    ..ResourceLimits::default()
                },
                ..CreaterepoOptions::new("img")
            },
        ];
        for opts in bad {
            let err = prepare(&ctx, &opts, inputs.clone()).unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
        }
        let repo_dir = inputs.arch_dir.parent().unwrap().to_path_buf();
        let mut missing_arch = inputs.clone();
        missing_arch.arch_dir = repo_dir.join("aarch64");
        let err = prepare(&ctx, &CreaterepoOptions::new("img"), missing_arch).unwrap_err();
        assert!(
            matches!(&err, Error::Repo(m) if m.starts_with("Repo directory missing")),
            "{err:?}"
        );
        for arch_dir in ["/", "x86_64", "/mnt/koji/repos/f40-build/7/.."] {
            let mut bad = inputs.clone();
            bad.arch_dir = arch_dir.into();
            let err = prepare(&ctx, &CreaterepoOptions::new("img"), bad).unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{arch_dir}: {err:?}");
        }
        assert_eq!(
            fs::read_dir(&ctx.work_dir).unwrap().count(),
            0,
            "nothing written"
        );
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn host_steps_give_kojids_modes_whatever_the_source() {
        let s = Scratch::new("steps");
        let owner = owner_of(&s.0);
        let old = s.0.join("old/repodata");
        fs::create_dir_all(&old).unwrap();
        for name in [
            "repomd.xml",
            "abc-primary.xml.gz",
            "EMPTY_REPO",
            "pkgorigins.gz",
        ] {
            fs::write(old.join(name), name).unwrap();
            set_mode(&old.join(name), 0o600);
        }
        symlink("/etc/passwd", old.join("sneaky")).unwrap();
        fs::create_dir(s.0.join("work")).unwrap();
        let work = WorkDir::open(&s.0.join("work"), owner).unwrap();
        let out = s.0.join("work/repo");
        host_step(&Action::CreateDir { path: out.clone() }, &work).unwrap();
        let to = out.join("repodata");
        let remove = vec!["EMPTY_REPO".to_string(), "pkgorigins.gz".to_string()];
        host_step(
            &Action::CopyOldRepodata {
                from: old.clone(),
                to: to.clone(),
                remove,
            },
            &work,
        )
        .unwrap();
        let mut copied: Vec<String> = fs::read_dir(&to)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        copied.sort();
        assert_eq!(copied, ["abc-primary.xml.gz", "repomd.xml"]);
        assert_eq!(
            fs::read_to_string(to.join("repomd.xml")).unwrap(),
            "repomd.xml"
        );
        assert_eq!(mode(&to.join("repomd.xml")), 0o644);
        assert_eq!(mode(&out), 0o755);

        let marker = to.join("EMPTY_REPO");
        host_step(
            &Action::WriteFile {
                path: marker.clone(),
                contents: "empty\n".into(),
            },
            &work,
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&marker).unwrap(), "empty\n");
        assert_eq!(mode(&marker), 0o644);

        let moved = s.0.join("work/repo_7_premerge");
        host_step(
            &Action::Rename {
                from: out.clone(),
                to: moved.clone(),
            },
            &work,
        )
        .unwrap();
        assert!(moved.join("repodata/repomd.xml").is_file() && !out.exists());
        // Nothing outside the work dir is a host step's to touch.
        let outside = Action::WriteFile {
            path: s.0.join("old/x"),
            contents: String::new(),
        };
        assert!(matches!(
            host_step(&outside, &work),
            Err(Error::InvalidSpec(_))
        ));
    }

    /// A host file and directory a container's planted links point at, and what they hold.
    fn targets(s: &Scratch) -> (PathBuf, PathBuf) {
        let victim = s.0.join("host/victim");
        fs::create_dir_all(s.0.join("host/dir")).unwrap();
        fs::write(&victim, "host data\n").unwrap();
        set_mode(&victim, 0o600);
        set_mode(&s.0.join("host/dir"), 0o700);
        (victim, s.0.join("host/dir"))
    }

    fn untouched(victim: &Path, dir: &Path) {
        assert_eq!(fs::read_to_string(victim).unwrap(), "host data\n");
        assert_eq!(mode(victim), 0o600);
        assert_eq!(mode(dir), 0o700);
        assert_eq!(fs::read_dir(dir).unwrap().count(), 0);
    }

    #[test]
    fn links_planted_in_the_work_dir_never_redirect_a_host_write() {
        let s = Scratch::new("planted");
        let (victim, dir) = targets(&s);
        let owner = owner_of(&s.0);
        let root = s.0.join("work");
        fs::create_dir_all(root.join("real/repodata")).unwrap();
        let work = WorkDir::open(&root, owner).unwrap();
        // `repo` replaced by a link to a host directory: the marker, the output dir's modes
        // and the listing fail instead of writing, chmodding or reading there.
        symlink(&dir, root.join("repo")).unwrap();
        let marker = root.join("repo/repodata/EMPTY_REPO");
        let write = Action::WriteFile {
            path: marker.clone(),
            contents: "x".into(),
        };
        let err = host_step(&write, &work).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(work
            .make_readable(&root.join("repo"), &Cancel::never())
            .is_err());
        assert!(work.entries(&root.join("repo/repodata")).is_err());
        assert!(host_step(
            &Action::CreateDir {
                path: root.join("repo")
            },
            &work
        )
        .is_err());
        // The marker itself a link to a host file, or a FIFO: refused, nothing written.
        fs::remove_file(root.join("repo")).unwrap();
        fs::rename(root.join("real"), root.join("repo")).unwrap();
        symlink(&victim, &marker).unwrap();
        assert!(host_step(&write, &work).is_err());
        fs::remove_file(&marker).unwrap();
        let fifo = std::ffi::CString::new(marker.to_str().unwrap()).unwrap();
        assert_eq!(mkfifo(&fifo), 0);
        let started = Instant::now();
        assert!(host_step(&write, &work).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a FIFO never blocks"
        );
        // A log name planted as a link: the log is never opened through it.
        symlink(&victim, root.join("mergerepos.log")).unwrap();
        assert!(FileSink::create_no_follow(
            root.join("mergerepos.log"),
            FileSinkOptions::default()
        )
        .is_err());
        // A copy of old repodata never writes through a planted name.
        let old = s.0.join("old");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("repomd.xml"), "new").unwrap();
        fs::create_dir(root.join("copy")).unwrap();
        symlink(&victim, root.join("copy/repomd.xml")).unwrap();
        let copy = Action::CopyOldRepodata {
            from: old,
            to: root.join("copy"),
            remove: Vec::new(),
        };
        assert!(host_step(&copy, &work).is_err());
        untouched(&victim, &dir);
    }

    fn mkfifo(path: &std::ffi::CStr) -> i32 {
        match rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        ) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    #[test]
    fn the_outcome_lists_the_repodata_flat_and_sorted_and_only_regular_files() {
        let s = Scratch::new("outcome");
        let (ctx, inputs) = koji(&s);
        let prepared = prepare(&ctx, &CreaterepoOptions::new("img"), inputs).unwrap();
        let dir = prepared.plan.repodata_dir.clone();
        fs::create_dir_all(&dir).unwrap();
        for f in ["repomd.xml", "EMPTY_REPO", "abc-primary.xml.gz"] {
            fs::write(dir.join(f), "x").unwrap();
        }
        let owner = owner_of(&ctx.work_dir);
        let listed = outcome(&prepared.plan, &ctx, owner, Vec::new()).unwrap();
        assert_eq!(
            listed.files,
            ["EMPTY_REPO", "abc-primary.xml.gz", "repomd.xml"]
        );
        assert!(listed.empty);
        fs::create_dir(dir.join("sub")).unwrap();
        assert!(matches!(
            outcome(&prepared.plan, &ctx, owner, Vec::new()),
            Err(Error::Repo(_))
        ));
        fs::remove_dir(dir.join("sub")).unwrap();
        symlink("/etc/passwd", dir.join("passwd")).unwrap();
        assert!(matches!(
            outcome(&prepared.plan, &ctx, owner, Vec::new()),
            Err(Error::Repo(_))
        ));
        // The output dir replaced by a link to a host directory: nothing is listed there.
        fs::rename(dir.parent().unwrap(), s.0.join("moved")).unwrap();
        symlink(s.0.join("moved"), dir.parent().unwrap()).unwrap();
        assert!(outcome(&prepared.plan, &ctx, owner, Vec::new()).is_err());
    }

    #[test]
    fn make_readable_fixes_a_private_umask_without_following_symlinks() {
        let s = Scratch::new("modes");
        let out = s.0.join("repo");
        fs::create_dir_all(out.join("repodata")).unwrap();
        fs::write(out.join("repodata/repomd.xml"), "x").unwrap();
        set_mode(&out.join("repodata/repomd.xml"), 0o600);
        set_mode(&out.join("repodata"), 0o700);
        let outside = s.0.join("outside");
        fs::write(&outside, "o").unwrap();
        set_mode(&outside, 0o600);
        symlink(&outside, out.join("repodata/link")).unwrap();
        let work = WorkDir::open(&s.0, owner_of(&s.0)).unwrap();
        work.make_readable(&out, &Cancel::never()).unwrap();
        assert_eq!(mode(&out.join("repodata")), 0o755);
        assert_eq!(mode(&out.join("repodata/repomd.xml")), 0o644);
        assert_eq!(mode(&outside), 0o600, "a symlink's target is left alone");
        let (handle, cancelled) = cancel_pair();
        handle.cancel();
        assert!(matches!(
            work.make_readable(&out, &cancelled),
            Err(Error::Interrupted)
        ));
    }

    #[test]
    fn signal_deaths_read_as_kojids_wording() {
        assert_eq!(exit_outcome(2), CommandOutcome::Exited(2));
        assert_eq!(exit_outcome(137), CommandOutcome::Signaled(9));
        assert_eq!(exit_outcome(255), CommandOutcome::Exited(255));
    }

    #[test]
    fn a_command_log_keeps_what_the_callers_sink_refused() {
        struct Failing;
        impl OutputSink for Failing {
            fn write(&mut self, _: Stream, _: &[u8]) -> Result<(), SinkFailure> {
                Err("caller sink failed".into())
            }
            fn finish(&mut self) -> Result<(), SinkFailure> {
                Err("must not be finished per command".into())
            }
        }
        let s = Scratch::new("tee");
        let path = s.0.join("createrepo.log");
        let mut caller = Failing;
        let mut tee = CommandSink {
            log: FileSink::create(&path, FileSinkOptions::default()).unwrap(),
            caller: &mut caller,
        };
        let err = tee.write(Stream::Stderr, b"line\n").unwrap_err();
        assert_eq!(err.to_string(), "caller sink failed");
        tee.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"line\n");
    }
}
