//! The buildArch runner: executes a [`BuildrootPlan`] in one Podman container per task (the
//! exec pattern) and collects what kojid would upload.
//!
//! Order of work (see the plan's docs for what each step is): validate every input and make
//! the task's logs; create the container (network off unless the repo is a URL; only the
//! repo's own directories and the SRPM mounted, read-only; the result dir mounted read-write
//! where only root steps write); copy the config files in; run the init steps as root
//! (root.log) unless a cached buildroot image already holds them; record the package list and
//! hand it to the caller (kojid's `setBuildRootList` then `BUILDING`); install BuildRequires;
//! build as the unprivileged user with no network (build.log); list the packages again; copy
//! the results out; remove the container on every path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::core::buildroot::{
    self, BuildConfig, BuildrootInputs, BuildrootOptions, BuildrootPlan, BuildrootRpm, LogTarget,
    RepoLocation, Step, MAX_BUILDREQUIRES_LOOPS,
};
use crate::core::cancel::Cancel;
use crate::core::error::{Error, Result, SinkFailure};
use crate::core::logsink::{format_timestamp, FileSink, FileSinkOptions};
use crate::core::podman::{ExecOptions, PodmanClient, PullPolicy};
use crate::core::sink::{CaptureSink, NullSink, OutputSink, Stream};
use crate::core::spec::{ContainerSpec, NetworkMode, ResourceLimits, SelinuxLabel, VolumeMount};
use crate::core::task::TaskContext;

const LOG_TARGET: &str = "koji_adjutant::buildarch";

/// Where the task's result dir is mounted; only root steps (the final copy) write there.
const RESULT_MOUNT: &str = "/koji-adjutant/result";
/// Label marking buildroot cache images, and the labels they carry.
pub const CACHE_LABEL: &str = "io.koji.adjutant.buildroot";
const CACHE_KEY_LABEL: &str = "io.koji.adjutant.buildroot.key";
const CACHE_BASELINE_LABEL: &str = "io.koji.adjutant.buildroot.image-rpms";
const CACHE_REPO: &str = "localhost/koji-adjutant-buildroot";
/// Capabilities root needs inside the buildroot to install RPMs (file owners, modes, file
/// capabilities, scriptlets switching users). The unprivileged build user gets none of them:
/// with no-new-privileges and a non-zero uid its effective set stays empty.
const INSTALL_CAPS: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETFCAP",
    "SETGID",
    "SETUID",
];

/// The buildroot cache (goal P3): initialised buildroots kept as local images.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub max_images: usize,
    pub max_bytes: u64,
    /// Where last-use times are kept (one file per key); `None` evicts oldest-created first.
    pub dir: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_images: 8,
            max_bytes: 20 * 1024 * 1024 * 1024,
            dir: None,
        }
    }
}

/// How an adapter builds (from kojid's options and the adapter's config).
#[derive(Debug, Clone)]
pub struct BuildArchConfig {
    pub image: String,
    pub pull_policy: PullPolicy,
    pub options: BuildrootOptions,
    pub limits: ResourceLimits,
    pub selinux_label: Option<SelinuxLabel>,
    /// Name of the Koji external repo the image's own RPMs come from, if any.
    pub image_external_repo: Option<String>,
    pub cache: CacheConfig,
    pub log_cap_bytes: Option<u64>,
    /// Arches the image builds; `None` derives them from the image's architecture.
    pub image_arches: Option<Vec<String>>,
}

/// One buildArch task's inputs, as kojid knows them after talking to the hub.
#[derive(Debug, Clone)]
pub struct BuildArchRequest {
    pub srpm: PathBuf,
    pub arch: String,
    pub repo: RepoLocation,
    pub repo_id: i64,
    pub tag_name: String,
    pub build_config: BuildConfig,
    pub keep_srpm: bool,
    /// For noarch tasks: the buildroot arch kojid chose (`find_arch`).
    pub buildroot_arch: Option<String>,
}

/// Called between init and build, where kojid reports the buildroot to the hub.
pub trait BuildHooks: Send {
    fn buildroot_ready(&mut self, buildroot_arch: &str, packages: &[BuildrootRpm]) -> Result<()>;
}

/// No hooks.
pub struct NoHooks;

impl BuildHooks for NoHooks {
    fn buildroot_ready(&mut self, _arch: &str, _packages: &[BuildrootRpm]) -> Result<()> {
        Ok(())
    }
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
    /// Image RPMs Koji cannot know (no `image_external_repo` configured).
    pub unknown_rpms: Vec<BuildrootRpm>,
    pub buildroot_arch: String,
    pub cache_hit: bool,
    pub image_id: String,
}

/// The task's log files: root.log and build.log as mock writes them, state.log for the
/// adapter's own steps, and container.log with every byte of container output.
struct TaskLogs {
    root: FileSink,
    build: FileSink,
    state: FileSink,
    container: FileSink,
    paths: Vec<PathBuf>,
}

impl TaskLogs {
    fn open(result_dir: &Path, container_log: PathBuf, cap: Option<u64>) -> Result<Self> {
        let plain = FileSinkOptions {
            cap_bytes: cap,
            ..Default::default()
        };
        let root = FileSink::create(result_dir.join("root.log"), plain)?;
        let build = FileSink::create(result_dir.join("build.log"), plain)?;
        let state = FileSink::create(result_dir.join("state.log"), plain)?;
        let container = FileSink::create(container_log, FileSinkOptions::container_log(cap))?;
        let paths = [&root, &build, &state]
            .iter()
            .map(|s| s.path().to_path_buf())
            .collect();
        Ok(TaskLogs {
            root,
            build,
            state,
            container,
            paths,
        })
    }

    fn note(&mut self, target: Option<LogTarget>, line: &str) -> Result<()> {
        let text = format!("{} {line}\n", format_timestamp(SystemTime::now()));
        let sink = match target {
            None => &mut self.state,
            Some(LogTarget::RootLog) => &mut self.root,
            Some(LogTarget::BuildLog) => &mut self.build,
        };
        sink.write(Stream::Stdout, text.as_bytes())
            .map_err(Error::Sink)
    }

    fn finish(mut self) {
        for sink in [
            &mut self.root,
            &mut self.build,
            &mut self.state,
            &mut self.container,
        ] {
            if let Err(e) = sink.finish() {
                warn!(target: LOG_TARGET, "finishing {}: {e}", sink.path().display());
            }
        }
    }
}

/// The sink of one step: its log, container.log and the caller's sink; stdout optionally
/// captured for parsing instead.
struct StepSink<'a> {
    log: &'a mut FileSink,
    container: &'a mut FileSink,
    extra: &'a mut dyn OutputSink,
    capture: Option<&'a mut CaptureSink>,
}

impl OutputSink for StepSink<'_> {
    fn write(&mut self, stream: Stream, data: &[u8]) -> std::result::Result<(), SinkFailure> {
        self.container.write(stream, data)?;
        if stream == Stream::Stdout {
            if let Some(capture) = self.capture.as_deref_mut() {
                return capture.write(stream, data);
            }
        }
        self.log.write(stream, data)?;
        self.extra.write(stream, data)
    }
}

/// The arches an image of architecture `arch` (Go/OCI names or `uname -m`) builds.
fn image_arches_from(arch: &str) -> Vec<String> {
    let machine = match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i686",
        "arm" => "armv7hl",
        other => other,
    };
    buildroot::image_buildable_arches(machine)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs one buildArch task. Every path removes the container; logs are kept.
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
    let srpm = ctx.ensure_inside(&request.srpm)?;
    let srpm_info = buildroot::read_srpm(&srpm)?;
    if let Some(dir) = &config.cache.dir {
        if !dir.is_absolute() {
            return Err(Error::invalid(format!(
                "cache dir must be absolute: {}",
                dir.display()
            )));
        }
    }
    let image_id = client
        .ensure_image(&config.image, config.pull_policy)
        .await?;
    let image_arches = match &config.image_arches {
        Some(arches) => arches.clone(),
        None => image_arches_from(&client.image_arch(&config.image).await?),
    };
    let mut options = config.options.clone();
    options.keep_srpm = request.keep_srpm;
    let inputs = BuildrootInputs {
        task_id: ctx.task_id,
        arch: request.arch.clone(),
        buildroot_arch: request.buildroot_arch.clone(),
        srpm: srpm.clone(),
        repo: request.repo.clone(),
        repo_id: request.repo_id,
        tag_name: request.tag_name.clone(),
        build_config: request.build_config.clone(),
        options,
        image_arches,
    };
    let plan = buildroot::plan_with_srpm(&inputs, &srpm_info)?;
    let mut mounts = plan.mounts.clone();
    mounts.extend(buildroot::repo_package_mounts(&request.repo)?);

    let result_dir = ctx.work_path("result")?;
    if result_dir.exists() {
        return Err(Error::invalid(format!(
            "result dir {} already exists: a task's work dir must be fresh",
            result_dir.display()
        )));
    }
    create_dir(&result_dir)?;
    let container_log = ctx
        .container_log()
        .unwrap_or_else(|| result_dir.join("container.log"));
    let mut logs = TaskLogs::open(&result_dir, container_log, config.log_cap_bytes)?;
    for ignored in &plan.ignored_extra {
        logs.note(
            None,
            &format!("Ignoring tag setting {ignored}: it does not apply to container buildroots"),
        )?;
    }

    let cache_key = sha256_hex(&buildroot::cache_key_material(
        &image_id,
        &plan,
        std::slice::from_ref(&inputs.options.install_group),
    ));
    let cached = if config.cache.enabled {
        cached_image(client, &cache_key).await?
    } else {
        None
    };

    let mut spec = ContainerSpec::new(
        cached
            .as_ref()
            .map_or(config.image.as_str(), |c| c.id.as_str()),
        vec!["sleep".into(), "infinity".into()],
    );
    spec.task_id = Some(ctx.task_id);
    spec.network = if plan.repo_baseurl.starts_with("file:") {
        NetworkMode::None
    } else {
        NetworkMode::Bridge
    };
    spec.limits = config.limits.clone();
    spec.cap_add = INSTALL_CAPS.iter().map(|c| (*c).to_owned()).collect();
    spec.mounts = mounts
        .iter()
        .map(|m| VolumeMount {
            source: m.host.clone(),
            target: m.container.clone().into(),
            read_only: m.read_only,
            selinux_label: config.selinux_label,
        })
        .collect();
    spec.mounts.push(VolumeMount {
        source: result_dir.clone(),
        target: RESULT_MOUNT.into(),
        read_only: false,
        selinux_label: config.selinux_label,
    });

    logs.note(
        None,
        &format!(
            "Creating container from {} ({})",
            config.image,
            if cached.is_some() {
                "cached buildroot"
            } else {
                "fresh buildroot"
            }
        ),
    )?;
    let id = client.create(&spec).await?;
    let mut runner = Runner {
        client,
        id: &id,
        plan: &plan,
        logs,
        sink,
        cancel,
        network: spec.network == NetworkMode::Bridge,
        task_id: ctx.task_id,
        arch: request.arch.clone(),
    };
    let outcome = runner
        .work(config, &cache_key, cached.as_ref(), hooks, &result_dir)
        .await;
    client.remove_logged(&id).await;
    let Runner { mut logs, .. } = runner;
    let outcome = match outcome {
        Ok(mut outcome) => {
            outcome.image_id = image_id;
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
        o.logs.splice(0..0, log_paths);
        o
    })
}

struct Runner<'a> {
    client: &'a PodmanClient,
    id: &'a str,
    plan: &'a BuildrootPlan,
    logs: TaskLogs,
    sink: &'a mut dyn OutputSink,
    cancel: &'a Cancel,
    network: bool,
    task_id: i64,
    arch: String,
}

struct Cached {
    id: String,
    baseline: Vec<String>,
}

impl Runner<'_> {
    async fn work(
        &mut self,
        config: &BuildArchConfig,
        cache_key: &str,
        cached: Option<&Cached>,
        hooks: &mut dyn BuildHooks,
        result_dir: &Path,
    ) -> Result<BuildArchOutcome> {
        self.client.start(self.id, Box::new(NullSink)).await?;
        let baseline = match cached {
            Some(c) => {
                self.logs
                    .note(None, &format!("Using cached buildroot {cache_key}"))?;
                touch_cache(config, cache_key);
                c.baseline.clone()
            }
            None => {
                let image_rpms = self.packages().await?;
                for file in self.plan.files() {
                    self.client
                        .copy_bytes(self.id, file.content.as_bytes(), &file.dest)
                        .await?;
                }
                for step in &self.plan.init_steps {
                    self.step(step).await?;
                }
                let baseline: Vec<String> = image_rpms.iter().map(nevra_key).collect();
                if config.cache.enabled {
                    self.save_cache(config, cache_key, &baseline).await;
                }
                baseline
            }
        };

        let listed = self.packages().await?;
        let (initial, unknown) = classify(listed, &baseline, config);
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.iter().map(nevra_key).collect();
            self.logs.note(
                None,
                &format!(
                    "The image's own RPMs are unknown to Koji (set image_external_repo): {}",
                    names.join(", ")
                ),
            )?;
        }
        hooks.buildroot_ready(&self.plan.buildroot_arch, &initial)?;

        self.step(&self.plan.unpack_step).await?;
        let mut previous = initial.clone();
        let mut dynamic = false;
        for _ in 0..MAX_BUILDREQUIRES_LOOPS {
            self.step(&self.plan.rebuild_srpm_step).await?;
            let query =
                buildroot::parse_requires_query(&self.query(&self.plan.srpm_requires_query).await?);
            dynamic = query.dynamic;
            if !self.install_changed(&query.requires, &mut previous).await? {
                break;
            }
        }
        if dynamic {
            for round in 0..MAX_BUILDREQUIRES_LOOPS {
                self.step(&self.plan.dynamic_buildrequires_step(round == 0))
                    .await?;
                let query =
                    buildroot::parse_requires_query(&self.query(&self.plan.buildreqs_query).await?);
                self.step(&self.plan.remove_buildreqs_step).await?;
                if !self.install_changed(&query.requires, &mut previous).await? {
                    break;
                }
            }
        }

        let build = self.plan.build_step(dynamic);
        self.checked(&build, true).await?;
        let listed = self.packages().await?;
        let (final_list, unknown) = classify(listed, &baseline, config);
        let (rpms, srpms, extra_logs) = self.collect(result_dir).await?;
        Ok(BuildArchOutcome {
            result_dir: result_dir.to_path_buf(),
            rpms,
            srpms,
            logs: extra_logs,
            buildroot: final_list,
            unknown_rpms: unknown,
            buildroot_arch: self.plan.buildroot_arch.clone(),
            cache_hit: cached.is_some(),
            image_id: String::new(),
        })
    }

    /// Runs one buildroot step; a failure is a BuildError naming the log to read.
    async fn step(&mut self, step: &Step) -> Result<()> {
        self.checked(step, false).await
    }

    /// Runs a step; a failure is a BuildError naming the log to read, as kojid's
    /// `_mockResult` does (init and dependency steps: root.log; the build: build.log).
    async fn checked(&mut self, step: &Step, is_build: bool) -> Result<()> {
        let code = self.exec(step, None).await?;
        if step.ok_exit_codes.contains(&code) {
            return Ok(());
        }
        let log = step.log.file_name();
        let message = if is_build {
            format!(
                "error building package (arch {}), rpmbuild exited with status {code}; see {log} for more information",
                self.arch
            )
        } else if step.log == LogTarget::RootLog {
            format!(
                "could not init buildroot for task {} (arch {}): step \"{}\" exited with status {code}; see root.log for more information",
                self.task_id, self.arch, step.name
            )
        } else {
            format!(
                "buildroot step \"{}\" failed for task {} (arch {}) with status {code}; see {log} for more information",
                step.name, self.task_id, self.arch
            )
        };
        Err(Error::Build {
            message,
            log: Some(self.logs_path(step.log)),
            exit_code: Some(code),
        })
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
        self.step(&install).await?;
        let now = self.packages().await?;
        if now == *previous {
            return Ok(false);
        }
        *previous = now;
        Ok(true)
    }

    /// Runs a query step and returns its stdout (stderr goes to its log).
    async fn query(&mut self, step: &Step) -> Result<String> {
        let mut capture = CaptureSink::default();
        let code = self.exec(step, Some(&mut capture)).await?;
        if !step.ok_exit_codes.contains(&code) {
            return Err(Error::Build {
                message: format!(
                    "buildroot query \"{}\" failed for task {} with status {code}; see {}",
                    step.name,
                    self.task_id,
                    step.log.file_name()
                ),
                log: Some(self.logs_path(step.log)),
                exit_code: Some(code),
            });
        }
        Ok(String::from_utf8_lossy(&capture.stdout).into_owned())
    }

    async fn packages(&mut self) -> Result<Vec<BuildrootRpm>> {
        let listed = self.query(&self.plan.package_list.clone()).await?;
        buildroot::parse_package_list(&listed)
    }

    async fn exec(&mut self, step: &Step, capture: Option<&mut CaptureSink>) -> Result<i64> {
        if step.network != self.network {
            if step.network {
                self.client.connect(self.id, "podman").await?;
            } else {
                self.client.disconnect(self.id, "podman").await?;
            }
            self.network = step.network;
        }
        let started = Instant::now();
        self.logs.note(None, &format!("Start: {}", step.name))?;
        self.logs.note(
            Some(step.log),
            &format!(
                "Executing command: {} (user {}, network {})",
                crate::core::createrepo::format_shell_cmd(&step.argv),
                step.user.podman_user(),
                if step.network { "on" } else { "off" }
            ),
        )?;
        let opts = ExecOptions {
            environment: step.env.iter().cloned().collect::<BTreeMap<_, _>>(),
            workdir: Some(step.workdir.clone()),
            user: Some(step.user.podman_user()),
        };
        let log = match step.log {
            LogTarget::RootLog => &mut self.logs.root,
            LogTarget::BuildLog => &mut self.logs.build,
        };
        let mut sink = StepSink {
            log,
            container: &mut self.logs.container,
            extra: &mut *self.sink,
            capture,
        };
        let run = self
            .client
            .exec(self.id, &step.argv, &opts, &mut sink, self.cancel);
        let code = match step.timeout_secs {
            Some(limit) => {
                match tokio::time::timeout(std::time::Duration::from_secs(limit), run).await {
                    Ok(code) => code?,
                    Err(_) => {
                        self.logs
                            .note(Some(step.log), &format!("Timed out after {limit} s"))?;
                        return Err(Error::Build {
                        message: format!(
                            "step \"{}\" of task {} (arch {}) exceeded its timeout of {limit} s; see {}",
                            step.name,
                            self.task_id,
                            self.arch,
                            step.log.file_name()
                        ),
                        log: Some(self.logs_path(step.log)),
                        exit_code: None,
                    });
                    }
                }
            }
            None => run.await?,
        };
        self.logs.note(
            None,
            &format!(
                "Finish: {} (exit status {code}, {:.2} s)",
                step.name,
                started.elapsed().as_secs_f64()
            ),
        )?;
        Ok(code)
    }

    fn logs_path(&self, target: LogTarget) -> PathBuf {
        match target {
            LogTarget::RootLog => self.logs.root.path().to_path_buf(),
            LogTarget::BuildLog => self.logs.build.path().to_path_buf(),
        }
    }

    /// Copies the results out as root (the build user cannot write the result dir).
    async fn collect(
        &mut self,
        result_dir: &Path,
    ) -> Result<(Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>)> {
        let mut dirs = vec![self.plan.result_dirs.rpms.clone()];
        if self.plan.keep_srpm {
            dirs.push(self.plan.result_dirs.srpms.clone());
        }
        let argv = copy_out_argv(&dirs, "*.rpm");
        let copy = Step {
            name: "collect results".into(),
            argv,
            user: buildroot::RunAs::Root,
            workdir: "/".into(),
            env: self.plan.root_environment.clone(),
            log: LogTarget::RootLog,
            capture_stdout: false,
            network: false,
            timeout_secs: None,
            ok_exit_codes: vec![0],
        };
        self.step(&copy).await?;
        let logs_copy = Step {
            name: "collect package manager logs".into(),
            argv: copy_out_argv(&["/var/log".to_owned()], "dnf*.log"),
            ..copy
        };
        self.step(&logs_copy).await?;
        let mut rpms = Vec::new();
        let mut srpms = Vec::new();
        let mut extra_logs = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(result_dir)
            .map_err(|e| Error::io(format!("listing {}", result_dir.display()), e))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        for name in names {
            let path = result_dir.join(&name);
            if name.ends_with(".src.rpm") {
                srpms.push(path);
            } else if name.ends_with(".rpm") {
                rpms.push(path);
            } else if name.starts_with("dnf") && name.ends_with(".log") {
                extra_logs.push(path);
            }
        }
        if rpms.is_empty() {
            return Err(Error::Build {
                message: format!(
                    "the build of task {} (arch {}) produced no RPMs; see build.log",
                    self.task_id, self.arch
                ),
                log: Some(self.logs_path(LogTarget::BuildLog)),
                exit_code: None,
            });
        }
        Ok((rpms, srpms, extra_logs))
    }

    /// Commits the initialised buildroot as a cache image and trims the cache. A failure only
    /// costs the cache, never the build.
    async fn save_cache(&mut self, config: &BuildArchConfig, key: &str, baseline: &[String]) {
        let mut labels = BTreeMap::new();
        labels.insert(CACHE_LABEL.to_owned(), "1".to_owned());
        labels.insert(CACHE_KEY_LABEL.to_owned(), key.to_owned());
        labels.insert(CACHE_BASELINE_LABEL.to_owned(), baseline.join(" "));
        let tag = key.get(..32).unwrap_or(key);
        match self.client.commit(self.id, CACHE_REPO, tag, &labels).await {
            Ok(image) => {
                let _ = self.logs.note(
                    None,
                    &format!("Saved buildroot cache image {image} (key {key})"),
                );
                touch_cache(config, key);
                if let Err(e) = evict(self.client, &config.cache).await {
                    warn!(target: LOG_TARGET, "buildroot cache eviction failed: {e}");
                }
            }
            Err(e) => {
                warn!(target: LOG_TARGET, "could not save the buildroot cache: {e}");
                let _ = self
                    .logs
                    .note(None, &format!("Could not save the buildroot cache: {e}"));
            }
        }
    }
}

/// Splits a package list into what Koji can know (the tag repo's RPMs, and the image's own
/// when an external repo is named for them: marked with `external_repo_name`, which the kojid
/// glue completes from `getExternalRepoList`) and the image RPMs it cannot.
fn classify(
    packages: Vec<BuildrootRpm>,
    baseline: &[String],
    config: &BuildArchConfig,
) -> (Vec<BuildrootRpm>, Vec<BuildrootRpm>) {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for mut rpm in packages {
        if baseline.contains(&nevra_key(&rpm)) {
            match &config.image_external_repo {
                Some(repo) => {
                    let mut info = BTreeMap::new();
                    info.insert(
                        "external_repo_name".to_owned(),
                        buildroot::ExtraValue::Str(repo.clone()),
                    );
                    rpm.external_repo = Some(info);
                    known.push(rpm);
                }
                None => unknown.push(rpm),
            }
        } else {
            known.push(rpm);
        }
    }
    (known, unknown)
}

/// `find DIRS -maxdepth 1 -type f -name PATTERN -exec install -m 0644 -t RESULT {} +`: copies
/// matching files into the result mount, readable by the hub's user, without a shell.
fn copy_out_argv(dirs: &[String], pattern: &str) -> Vec<String> {
    let mut argv = vec!["find".to_owned()];
    argv.extend(dirs.iter().cloned());
    argv.extend(
        [
            "-maxdepth",
            "1",
            "-type",
            "f",
            "-name",
            pattern,
            "-exec",
            "install",
            "-m",
            "0644",
            "-t",
            RESULT_MOUNT,
            "{}",
            "+",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    argv
}

fn nevra_key(rpm: &BuildrootRpm) -> String {
    format!(
        "{}-{}:{}-{}.{}@{}",
        rpm.name,
        rpm.epoch.unwrap_or(0),
        rpm.version,
        rpm.release,
        rpm.arch,
        rpm.payloadhash
    )
}

async fn cached_image(client: &PodmanClient, key: &str) -> Result<Option<Cached>> {
    let images = client.images_with_label(CACHE_KEY_LABEL, key).await?;
    Ok(images.into_iter().next().map(|img| Cached {
        baseline: img
            .labels
            .get(CACHE_BASELINE_LABEL)
            .map(|b| b.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        id: img.id,
    }))
}

fn touch_cache(config: &BuildArchConfig, key: &str) {
    if let Some(dir) = &config.cache.dir {
        let result = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(dir.join(key), b""));
        if let Err(e) = result {
            warn!(target: LOG_TARGET, "cannot record cache use in {}: {e}", dir.display());
        }
    }
}

/// Removes least recently used cache images until both bounds hold.
pub async fn evict(client: &PodmanClient, cache: &CacheConfig) -> Result<usize> {
    let mut images = client.images_with_label(CACHE_LABEL, "1").await?;
    let last_used = |img: &crate::core::podman::ImageSummary| -> i64 {
        let key = img.labels.get(CACHE_KEY_LABEL).cloned().unwrap_or_default();
        cache
            .dir
            .as_ref()
            .and_then(|d| std::fs::metadata(d.join(&key)).ok())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(img.created)
    };
    images.sort_by_key(|img| std::cmp::Reverse(last_used(img)));
    let mut removed = 0;
    let mut total: u64 = 0;
    for (index, img) in images.iter().enumerate() {
        total += img.size;
        if (index >= cache.max_images || total > cache.max_bytes)
            && client.remove_image(&img.id).await?
        {
            info!(target: LOG_TARGET, image = %img.id, "evicted buildroot cache image");
            if let (Some(dir), Some(key)) = (&cache.dir, img.labels.get(CACHE_KEY_LABEL)) {
                let _ = std::fs::remove_file(dir.join(key));
            }
            removed += 1;
        }
    }
    Ok(removed)
}

fn create_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_arches_follow_the_image_architecture() {
        assert!(image_arches_from("amd64").contains(&"x86_64".to_owned()));
        assert!(image_arches_from("arm64").contains(&"aarch64".to_owned()));
        assert!(!image_arches_from("amd64").contains(&"aarch64".to_owned()));
    }

    #[test]
    fn cache_keys_are_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
