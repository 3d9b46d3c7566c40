//! The runner half of the createrepo adapter: carries out a [`CreaterepoPlan`] for one Koji
//! `createrepo` task in a Podman container.
//!
//! Order, and why:
//!
//! 1. Everything that can be checked is checked first ([`prepare`]): the task context, the
//!    repo on disk ([`createrepo::validate`]), the container spec and the log options. A bad
//!    request fails with a typed error before anything is pulled, created or written.
//! 2. One container per planned command (`createrepo_c`, then `mergerepo_c` when external
//!    repos are merged), each made from the same template ([`container_spec`]) with the
//!    command's own argv, cwd, environment and log, and run to completion. The host steps
//!    between the commands (copying the old repodata, the premerge rename, the `EMPTY_REPO`
//!    marker) are plain file operations done here, on the host: the work dir is mounted at its
//!    host path, so the next container sees their result.
//! 3. The container is removed on every path: success, a failed command, a failing sink,
//!    cancellation (kojid's signal handlers) and timeout. Cleanup never masks the error.
//!
//! Who the container runs as: the owner (uid:gid) of the task's work dir, with every
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
//! sink, if any, gets the same bytes.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::core::cancel::{cancel_pair, Cancel};
use crate::core::createrepo::{
    self, Action, CommandOutcome, ContainerCommand, CreaterepoPlan, CreaterepoRequest, ExternalRepo,
};
use crate::core::error::{Error, Result, SinkFailure};
use crate::core::logsink::{FileSink, FileSinkOptions};
use crate::core::podman::{PodmanClient, PullPolicy};
use crate::core::sink::{OutputSink, Stream};
use crate::core::spec::{ContainerSpec, NetworkMode, ResourceLimits, SelinuxLabel, VolumeMount};
use crate::core::task::TaskContext;

/// Python logger `koji_adjutant.createrepo`.
const LOG_TARGET: &str = "koji_adjutant::createrepo";

/// The template's command until a planned command replaces it (so the template validates).
const PLACEHOLDER_COMMAND: [&str; 1] = ["true"];

/// Podman's own timeout for the container is the task's plus this margin: a backstop should
/// this process die, never the primary limit (which ends the run with a clear error).
const PODMAN_TIMEOUT_MARGIN: u64 = 60;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreaterepoOutcome {
    /// `<work_dir>/repo/repodata`, whose files kojid uploads.
    pub repodata_dir: PathBuf,
    /// The names of those files, sorted ([`createrepo::list_repodata_files`]).
    pub files: Vec<String>,
    /// The `EMPTY_REPO` marker was written.
    pub empty: bool,
    /// The logs of the commands that ran, in order.
    pub logs: Vec<PathBuf>,
    /// kojid's upload dir for the task (`tasks/<id % 10000>/<id>`).
    pub upload_path: String,
}

/// A checked request: the plan and the container that will carry it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
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
    let plan = createrepo::plan(&createrepo::validate(&request)?);
    let meta = fs::metadata(&ctx.work_dir)
        .map_err(|e| Error::io(format!("inspecting work dir {}", ctx.work_dir.display()), e))?;
    let owner = (meta.uid(), meta.gid());
    let user = format!("{}:{}", owner.0, owner.1);
    let spec = container_spec(&plan, ctx, opts, &user);
    spec.validate()?;
    Ok(Prepared {
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

/// The template of the task's containers (each planned command sets its own argv, cwd and
/// environment): the plan's mounts at their host paths, no network unless an external repo
/// needs it, no capabilities, labelled with the task.
pub fn container_spec(
    plan: &CreaterepoPlan,
    ctx: &TaskContext,
    opts: &CreaterepoOptions,
    user: &str,
) -> ContainerSpec {
    let mut spec = ContainerSpec::new(
        opts.image.clone(),
        PLACEHOLDER_COMMAND.iter().map(|s| s.to_string()).collect(),
    );
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
    spec.user = Some(user.to_string());
    spec.workdir = Some(ctx.work_dir.to_string_lossy().into_owned());
    spec.network = if plan.network_needed {
        NetworkMode::Bridge
    } else {
        NetworkMode::None
    };
    spec.limits = opts.limits.clone();
    spec.timeout = opts
        .timeout
        .map(|t| t.saturating_add(PODMAN_TIMEOUT_MARGIN));
    spec.task_id = Some(ctx.task_id);
    spec
}

/// Runs one createrepo task: prepare, make the image available, then the plan's steps, each
/// command in its own container, which is removed on every path. `sink` gets every command's output (besides the
/// logs); it is finished once, at the end.
pub async fn run(
    client: &PodmanClient,
    opts: &CreaterepoOptions,
    ctx: &TaskContext,
    inputs: RepoInputs,
    sink: &mut dyn OutputSink,
    cancel: &Cancel,
) -> Result<CreaterepoOutcome> {
    let prepared = prepare(ctx, opts, inputs)?;
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
    let started = Instant::now();
    tokio::select! {
        image = client.ensure_image(&opts.image, opts.pull_policy) => { image?; }
        () = cancel.cancelled() => return Err(Error::Interrupted),
    }
    let steps = run_steps_within(client, &prepared, opts.timeout, sink, cancel).await;
    debug!(target: LOG_TARGET, task_id = ctx.task_id, total_ms = ms(started), "createrepo steps done");
    let finished = sink.finish().map_err(Error::Sink);
    let logs = match (steps, finished) {
        (Ok(logs), Ok(())) => logs,
        (Err(e), finished) => {
            if let Err(also) = finished {
                warn!(target: LOG_TARGET, "the sink also failed to finish: {also}");
            }
            return Err(e);
        }
        (Ok(_), Err(e)) => return Err(e),
    };
    outcome(&prepared.plan, ctx, logs)
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

/// What the finished plan produced, read back from the work dir.
fn outcome(
    plan: &CreaterepoPlan,
    ctx: &TaskContext,
    logs: Vec<PathBuf>,
) -> Result<CreaterepoOutcome> {
    let files = createrepo::list_repodata_files(&plan.repodata_dir)?;
    let empty = plan.empty_repo_marker().is_some_and(Path::is_file);
    Ok(CreaterepoOutcome {
        repodata_dir: plan.repodata_dir.clone(),
        files,
        empty,
        logs,
        upload_path: ctx.upload_path(),
    })
}

/// Starts the created container and runs the steps in it, within the task's timeout.
/// The plan's steps under the task's timeout. Each command runs in a container of its own
/// (created, attached, started, waited for and removed by `PodmanClient::run` on every path):
/// a single createrepo_c command then costs one short-lived container and no exec, about half
/// the fixed cost of an idle container plus an exec (docs/benchmarks.md, P4).
async fn run_steps_within(
    client: &PodmanClient,
    prepared: &Prepared,
    timeout: Option<u64>,
    sink: &mut dyn OutputSink,
    cancel: &Cancel,
) -> Result<Vec<PathBuf>> {
    // Cooperative, never by dropping the steps: a dropped `PodmanClient::run` could not
    // remove its container. On a timeout or a signal the running command's container is
    // removed by `run` itself before this returns.
    let (stop, stopped) = cancel_pair();
    let steps = run_steps(client, prepared, sink, &stopped);
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
    client: &PodmanClient,
    prepared: &Prepared,
    sink: &mut dyn OutputSink,
    cancel: &Cancel,
) -> Result<Vec<PathBuf>> {
    let mut logs = Vec::new();
    for step in &prepared.plan.steps {
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        match step {
            Action::Run(command) => {
                let log = run_command(client, command, prepared, &mut *sink, cancel).await?;
                logs.push(log);
            }
            host => {
                let (step, owner) = (host.clone(), prepared.owner);
                blocking(move || host_step(&step, owner)).await?;
            }
        }
    }
    if let Some(out_dir) = prepared.plan.repodata_dir.parent() {
        let out_dir = out_dir.to_path_buf();
        blocking(move || make_readable(&out_dir)).await?;
    }
    Ok(logs)
}

/// Runs file work off the runtime's threads, so signal checks and other tasks keep going.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io("host file step", std::io::Error::other(e.to_string())))?
}

/// `exec`s one planned command with its log; a non-zero exit is kojid's task failure.
async fn run_command(
    client: &PodmanClient,
    command: &ContainerCommand,
    prepared: &Prepared,
    sink: &mut dyn OutputSink,
    cancel: &Cancel,
) -> Result<PathBuf> {
    let log_path = PathBuf::from(&command.cwd).join(&command.log_name);
    let log = FileSink::create(&log_path, prepared.log_options)?;
    let mut tee = CommandSink { log, caller: sink };
    // kojid's log_output starts each log with the command line.
    let header = format!("$ {}\n", command.argv.join(" "));
    tee.write(Stream::Stdout, header.as_bytes())
        .map_err(Error::Sink)?;
    let mut spec = prepared.spec.clone();
    spec.command = command.argv.clone();
    spec.workdir = Some(command.cwd.clone());
    spec.environment.extend(command.env.clone());
    debug!(target: LOG_TARGET, argv = ?command.argv, log = %log_path.display(), "running");
    let started = Instant::now();
    let code = client.run(&spec, &mut tee, cancel).await?.exit_code;
    debug!(target: LOG_TARGET, log = %log_path.display(), code, ms = ms(started), "command exited");
    if code != 0 {
        return Err(command.failed(exit_outcome(code), log_path, code));
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

/// Does one non-`Run` step of the plan on the host. Everything it creates gets `owner` and
/// the modes kojid's outputs have.
fn host_step(step: &Action, owner: (u32, u32)) -> Result<()> {
    match step {
        Action::CreateDir { path } => create_dir(path, owner),
        Action::CopyOldRepodata { from, to, remove } => copy_old_repodata(from, to, remove, owner),
        Action::Rename { from, to } => fs::rename(from, to).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", from.display(), to.display()),
                e,
            )
        }),
        Action::WriteFile { path, contents } => write_file(path, contents.as_bytes(), owner),
        // Commands run in the container; the caller never hands one here.
        Action::Run(command) => Err(Error::invalid(format!(
            "{:?} is not a host step",
            command.argv
        ))),
    }
}

fn create_dir(path: &Path, owner: (u32, u32)) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    set_mode(path, DIR_MODE)?;
    give(path, owner)
}

/// kojid's `copytree` of the old repodata, limited to its regular files (repodata is flat;
/// a symlink there would make createrepo_c read outside the mounts), minus `remove`.
fn copy_old_repodata(from: &Path, to: &Path, remove: &[String], owner: (u32, u32)) -> Result<()> {
    let context = || format!("copying old repodata {}", from.display());
    create_dir(to, owner)?;
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
        let target = to.join(&name);
        fs::copy(entry.path(), &target).map_err(|e| Error::io(context(), e))?;
        set_mode(&target, FILE_MODE)?;
        give(&target, owner)?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], owner: (u32, u32)) -> Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    file.write_all(contents)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    set_mode(path, FILE_MODE)?;
    give(path, owner)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))
}

/// Hands a host-created entry to the container's user (a no-op in the usual case, where
/// both are root).
fn give(path: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    let meta = fs::symlink_metadata(path)
        .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
    if (meta.uid(), meta.gid()) == (uid, gid) {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io(format!("giving {} to {uid}:{gid}", path.display()), e))
}

/// Sets every directory under `root` (itself included) to 0755 and every regular file to
/// 0644, without following symlinks: the hub, another user, reads what kojid uploads.
fn make_readable(root: &Path) -> Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        set_mode(&dir, DIR_MODE)?;
        let context = || format!("listing {}", dir.display());
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(context(), e))? {
            let entry = entry.map_err(|e| Error::io(context(), e))?;
            let kind = entry.file_type().map_err(|e| Error::io(context(), e))?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                set_mode(&entry.path(), FILE_MODE)?;
            }
        }
    }
    Ok(())
}

/// Milliseconds since `since`, for the debug log's phase timings.
fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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
        assert_eq!(spec.user.as_deref(), Some(format!("{uid}:{gid}").as_str()));
        assert_eq!(spec.command, PLACEHOLDER_COMMAND);
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
            set_mode(&old.join(name), 0o600).unwrap();
        }
        symlink("/etc/passwd", old.join("sneaky")).unwrap();
        let out = s.0.join("work/repo");
        host_step(&Action::CreateDir { path: out.clone() }, owner).unwrap();
        let to = out.join("repodata");
        let remove = vec!["EMPTY_REPO".to_string(), "pkgorigins.gz".to_string()];
        host_step(
            &Action::CopyOldRepodata {
                from: old.clone(),
                to: to.clone(),
                remove,
            },
            owner,
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
            owner,
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
            owner,
        )
        .unwrap();
        assert!(moved.join("repodata/repomd.xml").is_file() && !out.exists());
    }

    #[test]
    fn make_readable_fixes_a_private_umask_without_following_symlinks() {
        let s = Scratch::new("modes");
        let out = s.0.join("repo");
        fs::create_dir_all(out.join("repodata")).unwrap();
        fs::write(out.join("repodata/repomd.xml"), "x").unwrap();
        set_mode(&out.join("repodata/repomd.xml"), 0o600).unwrap();
        set_mode(&out.join("repodata"), 0o700).unwrap();
        let outside = s.0.join("outside");
        fs::write(&outside, "o").unwrap();
        set_mode(&outside, 0o600).unwrap();
        symlink(&outside, out.join("repodata/link")).unwrap();
        make_readable(&out).unwrap();
        assert_eq!(mode(&out.join("repodata")), 0o755);
        assert_eq!(mode(&out.join("repodata/repomd.xml")), 0o644);
        assert_eq!(mode(&outside), 0o600, "a symlink's target is left alone");
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
