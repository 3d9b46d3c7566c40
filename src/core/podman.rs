//! The container lifecycle over Podman's REST API.
//!
//! podman-api does most calls; where it is wrong for podman 4.3 (see PODMAN-NOTES: lost exit
//! codes, ignored `no_new_privileges`, stop timeouts, a panicking stream decoder) the same
//! connection type (`containers_api::conn::RequestClient`) is used directly. Output is read by
//! attaching BEFORE start, the only lossless way with podman 4.3.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use containers_api::conn::hyper::{self, Body, Response, StatusCode};
use containers_api::conn::{Headers, Payload, RequestClient, Transport};
use podman_api::opts::{ContainerCreateOpts, ContainerListFilter, ContainerListOpts, PullOpts};
use podman_api::{models, Podman};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::core::accounting;
use crate::core::archive::{self, Extraction};
use crate::core::cancel::Cancel;
use crate::core::error::{Error, Result};
use crate::core::frames;
use crate::core::sink::OutputSink;
use crate::core::spec::{ContainerSpec, HostRlimits};

/// Python logger `koji_adjutant.container` (pyo3-log maps `::` to `.`).
const LOG_TARGET: &str = "koji_adjutant::container";

/// Where to find the podman service when the caller names none.
pub const SOCKET_ENV: &str = "KOJI_ADJUTANT_PODMAN_SOCKET";
pub const DEFAULT_SOCKET: &str = "/run/podman/podman.sock";

/// How long `remove` lets a container stop before killing it.
const REMOVE_GRACE: u64 = 0;
/// How often a removal that failed with "device or resource busy" is tried again.
const REMOVE_RETRIES: u64 = 5;
/// How long after a container exited its output stream may take to drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// How long one Podman call may take, and how long the service may leave a ping unanswered
/// while a long operation is pending, unless the caller sets another (`with_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most time between two pings of the service while a long operation is pending.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How long any call may take right after the service left a call unanswered.
const WEDGED_CALL_LIMIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "always" => Ok(PullPolicy::Always),
            "if-not-present" => Ok(PullPolicy::IfNotPresent),
            "never" => Ok(PullPolicy::Never),
            other => Err(Error::invalid(format!(
                "pull_policy must be \"always\", \"if-not-present\" or \"never\", not {other:?}"
            ))),
        }
    }
}

/// What `run` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub exit_code: i64,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
    pub container_id: String,
}

/// A container as `list_containers` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSummary {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
}

/// The empty image fresh buildroots start from.
pub const EMPTY_IMAGE: &str = "localhost/koji-adjutant-empty:1";

/// What `image_info` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    /// The manifest digest podman records (`sha256:...`), also for a local image.
    pub digest: String,
    /// OCI architecture name (`amd64`, `arm64`, ...).
    pub architecture: String,
}

/// A local image as `images_with_label` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSummary {
    pub id: String,
    pub size: u64,
    pub created: i64,
    pub labels: BTreeMap<String, String>,
}

/// What a query value keeps as it is: RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Options of one `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub environment: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

/// A connection that is read and written: an attach with stdin.
trait Duplex: futures_util::io::AsyncRead + futures_util::io::AsyncWrite + Send {}
impl<T: futures_util::io::AsyncRead + futures_util::io::AsyncWrite + Send> Duplex for T {}
type DuplexStream = Pin<Box<dyn Duplex>>;

/// A container started by [`PodmanClient::start_held`]: its output stream, and its main
/// process's stdin.
pub struct Held {
    reader: Option<futures_util::io::ReadHalf<DuplexStream>>,
    writer: futures_util::io::WriteHalf<DuplexStream>,
}

impl Held {
    /// The container's multiplexed output (see [`frames`]); `None` once taken.
    pub fn output(&mut self) -> Option<impl futures_util::io::AsyncRead + Unpin + Send + 'static> {
        self.reader.take()
    }

    /// Sends one line to the main process's stdin.
    pub async fn release(&mut self) -> Result<()> {
        use futures_util::io::AsyncWriteExt;
        self.writer
            .write_all(b"\n")
            .await
            .map_err(|e| Error::container("attach", e))?;
        self.writer
            .flush()
            .await
            .map_err(|e| Error::container("attach", e))
    }
}

/// Accepts a socket path or a `unix://` URL.
pub fn socket_path(socket: &str) -> Result<String> {
    let path = socket.strip_prefix("unix://").unwrap_or(socket);
    if path.is_empty()
        || path.contains('\0')
        || socket.contains("://") && !socket.starts_with("unix://")
    {
        return Err(Error::invalid(format!(
            "podman socket must be a path or a unix:// URL, not {socket:?}"
        )));
    }
    if path.starts_with('/') {
        return Ok(path.to_string());
    }
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("resolving the podman socket path", e))?;
    Ok(cwd.join(path).to_string_lossy().into_owned())
}

type RawClient = RequestClient<podman_api::Error>;

/// How a Podman call is bounded in time and by the cancel scope ([`Cancel::current`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// A call that answers at once: the client's timeout; a signal ends the wait.
    Quick,
    /// A call whose effect must be known (creating a container) or that cleans up (removing
    /// one): the timeout only, never ended by a signal.
    Uncancelled,
    /// A call that may legitimately take long (an output stream, a wait, a pull, a commit, an
    /// import): no overall limit, but the service must answer a ping within the timeout
    /// while it is pending; a signal ends the wait.
    Long,
}

/// A connection to one podman service, with the labels this worker puts on its containers.
pub struct PodmanClient {
    podman: Podman,
    raw: RawClient,
    socket: String,
    worker_id: String,
    rlimits: HostRlimits,
    /// See [`DEFAULT_TIMEOUT`].
    timeout: Duration,
    /// When a call last went unanswered (see [`PodmanClient::call_limit`]).
    unanswered_at: Mutex<Option<Instant>>,
    /// Output pumps started by `start`, collected by `wait`.
    pumps: Mutex<HashMap<String, JoinHandle<Result<u64>>>>,
}

impl std::fmt::Debug for PodmanClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodmanClient")
            .field("socket", &self.socket)
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

fn validate_response(
    response: Response<Body>,
) -> Pin<
    Box<dyn Future<Output = std::result::Result<Response<Body>, podman_api::Error>> + Send + Sync>,
> {
    Box::pin(async move {
        let status = response.status();
        if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let bytes = hyper::body::to_bytes(response.into_body())
            .await
            .map_err(containers_api::conn::Error::from)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(text);
        Err(podman_api::Error::Fault {
            code: status,
            message,
        })
    })
}

/// An image call that failed: the image and podman's message.
fn image_error(image: &str, err: &podman_api::Error) -> Error {
    Error::Image {
        image: image.to_string(),
        message: podman_message(err),
    }
}

/// A removal that fails for a moment and succeeds when tried again:
/// * in a user namespace, unmounting the container's /dev/shm right after its processes died
///   sometimes fails with EBUSY (measured: 6 of 56 removals);
/// * a forced removal of a container whose process is just exiting: podman 4.3 finds it
///   running, then cannot kill it ("could not be stopped ... container state improper:
///   stopped"; seen once in the 500-task soak, the container left behind);
/// * on a loaded host, or for a container whose service was restarted under it (the fault
///   tests), its processes may take longer to die than podman waits ("given PIDs did not
///   die within timeout").
fn removal_retryable(message: &str) -> bool {
    message.contains("resource busy")
        || message.contains("container state improper")
        || message.contains("did not die within timeout")
}

/// Podman's own message for an error, without the crate's "error 500 -" decoration.
fn podman_message(err: &podman_api::Error) -> String {
    match err {
        podman_api::Error::Fault { message, .. } => message.trim().to_string(),
        other => other.to_string(),
    }
}

fn fault_code(err: &podman_api::Error) -> Option<StatusCode> {
    match err {
        podman_api::Error::Fault { code, .. } => Some(*code),
        _ => None,
    }
}

/// Whether a call's error says the service was not there (hyper's wording for a failed
/// connect, or a connection closed under the request).
fn service_unreachable(message: &str) -> bool {
    message.contains("error trying to connect")
        || message.contains("connection closed before message completed")
}

fn cerr(op: &str, err: podman_api::Error) -> Error {
    Error::container(op, podman_message(&err))
}

impl PodmanClient {
    pub fn new(socket: &str, worker_id: &str) -> Result<Self> {
        let path = socket_path(socket)?;
        if worker_id.is_empty() || worker_id.contains(['=', '\n', '\0']) {
            return Err(Error::invalid(format!("invalid worker_id {worker_id:?}")));
        }
        let transport = Transport::Unix {
            client: hyper::Client::builder()
                .pool_max_idle_per_host(0)
                .build(containers_api::conn::get_unix_connector()),
            path: path.clone().into(),
        };
        Ok(PodmanClient {
            podman: Podman::unix(&path),
            raw: RequestClient::new(transport, Box::new(validate_response)),
            socket: path,
            worker_id: worker_id.to_string(),
            rlimits: HostRlimits::read(),
            timeout: DEFAULT_TIMEOUT,
            unanswered_at: Mutex::new(None),
            pumps: Mutex::new(HashMap::new()),
        })
    }

    /// The same client with another bound on each call (at least one second): a Podman
    /// service that takes longer to answer a call, or to answer its ping while a long
    /// operation is pending, fails the operation instead of hanging the caller.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self> {
        if timeout < Duration::from_secs(1) {
            return Err(Error::invalid(format!(
                "the podman timeout must be at least 1 second, not {:.3} s",
                timeout.as_secs_f64()
            )));
        }
        self.timeout = timeout;
        Ok(self)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Remembers that the service just left a call unanswered.
    fn note_unanswered(&self) {
        *self.unanswered_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// How long a call may take: the timeout, but only [`WEDGED_CALL_LIMIT`] within a timeout
    /// of a call the service left unanswered, so that a task on a wedged service fails in
    /// about one timeout, not one per call it still makes (taking its logs out, reading its
    /// usage, removing its containers).
    fn call_limit(&self) -> Duration {
        if self.wedged() {
            WEDGED_CALL_LIMIT.min(self.timeout)
        } else {
            self.timeout
        }
    }

    /// Whether the service left a call unanswered within the last timeout.
    fn wedged(&self) -> bool {
        self.unanswered_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < self.timeout)
    }

    /// The error of a call the service did not answer in time.
    fn unanswered(&self, op: &str, limit: Duration) -> Error {
        Error::container(
            op,
            format!(
                "the podman service at {} did not answer within {} s",
                self.socket,
                limit.as_secs()
            ),
        )
    }

    /// Runs one Podman call under `bound` (see [`Bound`]).
    async fn bounded<T>(
        &self,
        op: &str,
        bound: Bound,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let cancel = match bound {
            Bound::Uncancelled => Cancel::never(),
            Bound::Quick | Bound::Long => Cancel::current(),
        };
        tokio::pin!(call);
        let limited = async {
            match bound {
                Bound::Long => {
                    tokio::select! {
                        result = &mut call => result,
                        failed = self.watch(op) => Err(failed),
                    }
                }
                Bound::Quick | Bound::Uncancelled => {
                    let limit = self.call_limit();
                    match tokio::time::timeout(limit, &mut call).await {
                        Ok(result) => result,
                        Err(_) => {
                            self.note_unanswered();
                            Err(self.unanswered(op, limit))
                        }
                    }
                }
            }
        };
        let result = tokio::select! {
            result = limited => result,
            () = cancel.cancelled() => Err(Error::Interrupted),
        };
        result.map_err(|e| self.name_the_service(e))
    }

    /// A call that could not reach the service (its socket gone while it restarts or is
    /// stopped, the connection dropped under a call) says so, naming the socket: hyper's
    /// "error trying to connect" alone does not say it was Podman.
    fn name_the_service(&self, err: Error) -> Error {
        match err {
            Error::Container { op, message }
                if service_unreachable(&message) && !op.contains(&self.socket) =>
            {
                Error::container(
                op,
                format!(
                    "the podman service at {} cannot be reached (stopped or restarting?): {message}",
                    self.socket
                ),
                )
            }
            other => other,
        }
    }

    /// Pings the service while a long operation is pending; resolves (with the error to
    /// report) only when a ping fails or is not answered within the timeout. Right after
    /// the service left a call unanswered, the first ping goes at once, with the short limit.
    async fn watch(&self, op: &str) -> Error {
        let interval = (self.timeout / 2).min(PROBE_INTERVAL);
        let mut first = true;
        loop {
            if !(first && self.wedged()) {
                tokio::time::sleep(interval).await;
            }
            first = false;
            let limit = self.call_limit();
            let ping = self.raw.get_string(Self::ep("/_ping".into()));
            match tokio::time::timeout(limit, ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Error::container(
                        op,
                        format!(
                            "the podman service at {} stopped answering: {}",
                            self.socket,
                            podman_message(&e)
                        ),
                    )
                }
                Err(_) => {
                    self.note_unanswered();
                    return Error::container(
                        op,
                        format!(
                            "the podman service at {} did not answer its ping within {} s",
                            self.socket,
                            limit.as_secs()
                        ),
                    );
                }
            }
        }
    }

    pub fn socket(&self) -> &str {
        &self.socket
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn ep(path: String) -> String {
        format!("/v{}/libpod{path}", podman_api::LATEST_API_VERSION)
    }

    /// Checks the service answers (a clear error when the socket is wrong or podman is down).
    pub async fn ping(&self) -> Result<String> {
        let op = format!("podman service at {}", self.socket);
        self.bounded(&op, Bound::Quick, async {
            self.raw
                .get_string(Self::ep("/_ping".into()))
                .await
                .map_err(|e| Error::container(op.as_str(), podman_message(&e)))
        })
        .await
    }

    /// Makes `image` available according to `policy`; returns the image's ID.
    pub async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<String> {
        let present = self.image_id(image).await?;
        match (policy, present) {
            (PullPolicy::IfNotPresent, Some(id)) => return Ok(id),
            (PullPolicy::Never, Some(id)) => return Ok(id),
            (PullPolicy::Never, None) => {
                return Err(Error::Image {
                    image: image.to_string(),
                    message: "not present locally and pull_policy is \"never\"".into(),
                })
            }
            _ => {}
        }
        self.pull(image).await?;
        self.image_id(image).await?.ok_or_else(|| Error::Image {
            image: image.to_string(),
            message: "pulled, but podman does not list it".into(),
        })
    }

    /// The ID of a local image, `None` when it is not present.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        self.bounded("inspect image", Bound::Quick, async {
            match self.podman.images().get(image).inspect().await {
                Ok(info) => Ok(info.id),
                Err(e) if fault_code(&e) == Some(StatusCode::NOT_FOUND) => Ok(None),
                Err(e) => Err(image_error(image, &e)),
            }
        })
        .await
    }

    async fn pull(&self, image: &str) -> Result<()> {
        use futures_util::StreamExt;
        info!(target: LOG_TARGET, image, "pulling image");
        let images = self.podman.images();
        let opts = PullOpts::builder().reference(image).build();
        self.bounded("pull", Bound::Long, async {
            let mut reports = images.pull(&opts);
            let mut pulled = false;
            while let Some(report) = reports.next().await {
                // Pull errors arrive in-band with HTTP 200: check every report.
                let report = report.map_err(|e| image_error(image, &e))?;
                if let Some(message) = report.error {
                    return Err(Error::Image {
                        image: image.to_string(),
                        message,
                    });
                }
                pulled |= report.id.is_some() || report.images.is_some();
            }
            if !pulled {
                return Err(Error::Image {
                    image: image.to_string(),
                    message: "the pull reported no image".into(),
                });
            }
            Ok(())
        })
        .await
    }

    /// The create request for `spec`: podman-api's builder for what it gets right, then the
    /// fields it drops or lacks set on the typed `SpecGenerator`.
    fn create_body(&self, spec: &ContainerSpec) -> Result<Vec<u8>> {
        let mut builder = ContainerCreateOpts::builder()
            .image(&spec.image)
            .command(spec.command.iter())
            .env(spec.environment.iter())
            .labels(spec.effective_labels(&self.worker_id).iter())
            .stop_timeout(10)
            .r_limits([
                models::PosixRlimit {
                    type_: Some("nofile".into()),
                    soft: Some(self.rlimits.nofile),
                    hard: Some(self.rlimits.nofile),
                },
                models::PosixRlimit {
                    type_: Some("nproc".into()),
                    soft: Some(self.rlimits.nproc),
                    hard: Some(self.rlimits.nproc),
                },
            ])
            .mounts(spec.mounts.iter().map(|m| {
                let mut options = vec![
                    "rbind".to_string(),
                    if m.read_only { "ro" } else { "rw" }.to_string(),
                ];
                if let Some(label) = m.selinux_label {
                    options.push(label.as_str().to_string());
                }
                models::ContainerMount {
                    destination: Some(m.target.to_string_lossy().into_owned()),
                    source: Some(m.source.to_string_lossy().into_owned()),
                    _type: Some("bind".into()),
                    options: Some(options),
                    uid_mappings: None,
                    gid_mappings: None,
                }
            }));
        if let Some(workdir) = &spec.workdir {
            builder = builder.work_dir(workdir);
        }
        if let Some(user) = &spec.user {
            builder = builder.user(user);
        }
        if let Some(timeout) = spec.timeout {
            builder = builder.timeout(timeout);
        }
        let json = builder
            .build()
            .serialize()
            .map_err(|e| Error::container("create", e))?;
        // Patched as JSON, not through `models::SpecGenerator`: that model types `mounts` as
        // docker's Mount and would drop every bind mount (podman issue 13717).
        // An object, or an error: nothing below can index into something else and panic.
        let mut gen: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&json).map_err(|e| Error::container("create", e))?;
        let typed =
            |v: serde_json::Result<serde_json::Value>| v.map_err(|e| Error::container("create", e));
        if let Some(root) = &spec.rootfs {
            // `image` only names where the root came from (labels, logs): podman takes
            // either an image or a rootfs.
            gen.remove("image");
            gen.insert("rootfs".into(), root.to_string_lossy().into_owned().into());
        }
        gen.insert("no_new_privileges".into(), true.into());
        gen.insert("cap_drop".into(), serde_json::json!(["ALL"]));
        if spec.init {
            gen.insert("init".into(), true.into());
        }
        if spec.open_stdin {
            gen.insert("stdin".into(), true.into());
        }
        if let Some(map) = spec.userns {
            // An explicit mapping: `userns: auto` alone silently gives none over the REST API
            // of podman 4.3, and `container:<id>` starts the other container itself.
            let ids = serde_json::json!([{
                "container_id": 0, "host_id": map.host_base, "size": map.size
            }]);
            gen.insert("userns".into(), serde_json::json!({"nsmode": "private"}));
            gen.insert(
                "idmappings".into(),
                serde_json::json!({"UIDMap": ids, "GIDMap": ids}),
            );
        }
        if !spec.scratch_volumes.is_empty() {
            gen.insert(
                "volumes".into(),
                spec.scratch_volumes
                    .iter()
                    .map(|dest| serde_json::json!({"Name": "", "Dest": dest, "Options": []}))
                    .collect(),
            );
        }
        if !spec.cap_add.is_empty() {
            gen.insert("cap_add".into(), serde_json::json!(spec.cap_add));
        }
        gen.insert(
            "netns".into(),
            typed(serde_json::to_value(models::Namespace {
                nsmode: Some(spec.network.as_str().into()),
                value: None,
            }))?,
        );
        let limits = &spec.limits;
        if limits.memory_bytes.is_some() || limits.cpus.is_some() || limits.pids.is_some() {
            let period: u64 = 100_000;
            gen.insert(
                "resource_limits".into(),
                typed(serde_json::to_value(models::LinuxResources {
                    memory: limits.memory_bytes.map(|bytes| models::LinuxMemory {
                        limit: Some(bytes as i64),
                        swap: Some(bytes as i64),
                        ..empty_memory()
                    }),
                    cpu: limits.cpus.map(|cpus| models::LinuxCpu {
                        period: Some(period),
                        quota: Some((cpus * period as f64).round() as i64),
                        ..empty_cpu()
                    }),
                    pids: limits
                        .pids
                        .map(|max| models::LinuxPids { limit: Some(max) }),
                    ..empty_resources()
                }))?,
            );
        }
        serde_json::to_vec(&gen).map_err(|e| Error::container("create", e))
    }

    /// Creates (does not start) a container. The spec is validated first.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        spec.validate()?;
        let body = self.create_body(spec)?;
        // Never ended by a signal: a container podman made must have an id we know.
        let created: models::ContainerCreateCreatedBody = self
            .bounded("create", Bound::Uncancelled, async {
                self.raw
                    .post_json(
                        Self::ep("/containers/create".into()),
                        Payload::Json(body),
                        Headers::none(),
                    )
                    .await
                    .map_err(|e| cerr("create", e))
            })
            .await?;
        let id = created.id;
        if id.is_empty() {
            return Err(Error::container(
                "create",
                "podman returned no container id",
            ));
        }
        for warning in created.warnings {
            warn!(target: LOG_TARGET, container = %short(&id), "podman: {warning}");
        }
        debug!(target: LOG_TARGET, container = %short(&id), image = %spec.image, "created");
        Ok(id)
    }

    /// Attaches to stdout/stderr of a created container. Must come before `start`.
    async fn attach(&self, id: &str) -> Result<impl futures_util::io::AsyncRead + Unpin> {
        self.attach_with(id, "stdout=true&stderr=true&logs=true")
            .await
    }

    /// podman's attach endpoint of a container with the streams `query` names, upgraded to
    /// a connection read (and, with stdin, written).
    async fn attach_with(&self, id: &str, query: &str) -> Result<DuplexStream> {
        let ep = Self::ep(format!("/containers/{id}/attach?stream=true&{query}"));
        let stream = self
            .bounded("attach", Bound::Quick, async {
                self.raw
                    .clone()
                    .post_upgrade_stream(ep, Payload::empty())
                    .await
                    .map_err(|e| cerr("attach", e))
            })
            .await?;
        Ok(Box::pin(stream))
    }

    /// `POST /containers/{id}/<action>` (start, init), bounded as a quick call; podman's
    /// "already done" (304) is no error.
    async fn container_action(&self, id: &str, action: &str) -> Result<()> {
        self.bounded(action, Bound::Quick, async {
            match self
                .raw
                .post(
                    Self::ep(format!("/containers/{id}/{action}")),
                    Payload::empty(),
                    Headers::none(),
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if fault_code(&e) == Some(StatusCode::NOT_MODIFIED) => Ok(()),
                Err(e) => Err(cerr(action, e)),
            }
        })
        .await
    }

    async fn start_raw(&self, id: &str) -> Result<()> {
        self.container_action(id, "start").await
    }

    /// Initialises a created container without starting it (its root filesystem is then
    /// owned by the container's root, which a user namespace needs before another container
    /// writes into it). An initialised or running container is not an error.
    pub async fn init(&self, id: &str) -> Result<()> {
        self.container_action(id, "init").await
    }

    /// Starts a created container; its output is pumped to `sink` in the background until
    /// it exits. `wait` returns the exit code and any sink error.
    pub async fn start(&self, id: &str, sink: Box<dyn OutputSink>) -> Result<()> {
        let stream = self.attach(id).await?;
        self.start_raw(id).await?;
        let mut sink = sink;
        let pump = tokio::spawn(async move { frames::pump_to_end(stream, sink.as_mut()).await });
        self.pumps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), pump);
        Ok(())
    }

    /// Attaches to stdin, stdout and stderr of a created container made with
    /// `open_stdin`, then starts it: its output is [`Held::output`], and its main process
    /// gets what [`Held::release`] sends.
    pub async fn start_held(&self, id: &str) -> Result<Held> {
        let duplex = self
            .attach_with(id, "stdin=true&stdout=true&stderr=true")
            .await?;
        let (reader, writer) = futures_util::io::AsyncReadExt::split(duplex);
        self.start_raw(id).await?;
        Ok(Held {
            reader: Some(reader),
            writer,
        })
    }

    /// Blocks until the container exits; returns its exit code.
    pub async fn wait(&self, id: &str, cancel: &Cancel) -> Result<i64> {
        let pump = self
            .pumps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let code = match pump {
            None => self.wait_exit(id, cancel).await?,
            Some(mut pump) => {
                // A failing sink must stop the wait: race the pump against the exit.
                let exit = self.wait_exit(id, cancel);
                tokio::pin!(exit);
                tokio::select! {
                    code = &mut exit => {
                        let code = code?;
                        drain(&mut pump).await?;
                        code
                    }
                    pumped = &mut pump => {
                        join_pump(pumped)?;
                        exit.await?
                    }
                }
            }
        };
        Ok(code)
    }

    /// Blocks until the container has exited (podman polled every 10 ms); its exit code.
    /// Unlike [`PodmanClient::wait`], no output pump of `start` is drained.
    pub async fn wait_exit(&self, id: &str, cancel: &Cancel) -> Result<i64> {
        // podman polls the container state every 250 ms by default, which is most of the
        // cost of a short container (docs/benchmarks.md, P1): ask for 10 ms.
        let ep = Self::ep(format!(
            "/containers/{id}/wait?condition=exited&condition=stopped&interval=10ms"
        ));
        let wait = self.bounded("wait", Bound::Long, async {
            self.raw
                .post_string(ep, Payload::empty(), Headers::none())
                .await
                .map_err(|e| cerr("wait", e))
        });
        let body = tokio::select! {
            body = wait => body?,
            () = cancel.cancelled() => return Err(Error::Interrupted),
        };
        body.trim()
            .parse::<i64>()
            .map_err(|_| Error::container("wait", format!("unexpected exit code {body:?}")))
    }

    /// create, attach, start, stream, wait and (if the spec says so) remove, on every path.
    pub async fn run(
        &self,
        spec: &ContainerSpec,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<RunResult> {
        let id = self.create(spec).await?;
        let outcome = self.run_created(&id, spec, sink, cancel).await;
        if spec.remove_after_exit || outcome.is_err() {
            self.remove_logged(&id).await;
        }
        outcome
    }

    async fn run_created(
        &self,
        id: &str,
        spec: &ContainerSpec,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<RunResult> {
        let stream = self.attach(id).await?;
        let started_at = SystemTime::now();
        self.start_raw(id).await?;
        let limit = spec.timeout.map(|t| Duration::from_secs(t + 30));
        let pumped = self.bounded(
            "output stream",
            Bound::Long,
            with_limit(limit, frames::pump_to_end(stream, sink)),
        );
        tokio::select! {
            result = pumped => { result?; }
            () = cancel.cancelled() => return Err(Error::Interrupted),
        }
        let exit_code = self.wait_exit(id, cancel).await?;
        Ok(RunResult {
            exit_code,
            started_at,
            finished_at: SystemTime::now(),
            container_id: id.to_string(),
        })
    }

    /// Runs `argv` once in a running container (attached, so the real exit code is known).
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        opts: &ExecOptions,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<i64> {
        self.exec_notifying(id, argv, opts, sink, cancel, None)
            .await
    }

    /// [`PodmanClient::exec`], notifying `started` once podman has started the command (its
    /// output stream is attached): another exec of the same container requested after that
    /// does not wait for this one's start.
    pub async fn exec_notifying(
        &self,
        id: &str,
        argv: &[String],
        opts: &ExecOptions,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
        started: Option<&tokio::sync::watch::Sender<bool>>,
    ) -> Result<i64> {
        if argv.is_empty() {
            return Err(Error::invalid("exec needs a command"));
        }
        let mut create = serde_json::Map::new();
        create.insert("Cmd".into(), serde_json::json!(argv));
        create.insert("AttachStdout".into(), true.into());
        create.insert("AttachStderr".into(), true.into());
        create.insert(
            "Env".into(),
            serde_json::json!(opts
                .environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()),
        );
        if let Some(workdir) = &opts.workdir {
            create.insert("WorkingDir".into(), workdir.as_str().into());
        }
        if let Some(user) = &opts.user {
            create.insert("User".into(), user.as_str().into());
        }
        let body = serde_json::to_vec(&create).map_err(|e| Error::container("exec", e))?;
        let created: serde_json::Value = self
            .bounded("exec", Bound::Quick, async {
                self.raw
                    .post_json(
                        Self::ep(format!("/containers/{id}/exec")),
                        Payload::Json(body),
                        Headers::none(),
                    )
                    .await
                    .map_err(|e| cerr("exec", e))
            })
            .await?;
        let exec_id = created
            .get("Id")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::container("exec", "podman returned no exec id"))?
            .to_string();
        let start = serde_json::to_vec(&serde_json::json!({"Detach": false, "Tty": false}))
            .map_err(|e| Error::container("exec", e))?;
        let stream = self
            .bounded("exec start", Bound::Quick, async {
                self.raw
                    .clone()
                    .post_upgrade_stream(
                        Self::ep(format!("/exec/{exec_id}/start")),
                        Payload::Json(start),
                    )
                    .await
                    .map_err(|e| cerr("exec start", e))
            })
            .await?;
        if let Some(started) = started {
            started.send_replace(true);
        }
        let pumped = self.bounded(
            "exec output stream",
            Bound::Long,
            frames::pump_to_end(Box::pin(stream), sink),
        );
        tokio::select! {
            result = pumped => { result?; }
            () = cancel.cancelled() => return Err(Error::Interrupted),
        }
        let info: serde_json::Value = self
            .bounded("exec inspect", Bound::Quick, async {
                self.raw
                    .get_json(Self::ep(format!("/exec/{exec_id}/json")))
                    .await
                    .map_err(|e| cerr("exec inspect", e))
            })
            .await?;
        if info.get("Running").and_then(|v| v.as_bool()) == Some(true) {
            return Err(Error::container(
                "exec",
                "the output ended while the command still ran",
            ));
        }
        info.get("ExitCode")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| Error::container("exec inspect", "no exit code reported"))
    }

    /// Copies one host file into the container at `dest` (an absolute path; mode 0644, root).
    pub async fn copy_to(&self, id: &str, source: &Path, dest: &str) -> Result<()> {
        if !dest.starts_with('/') || dest.ends_with('/') || dest.split('/').any(|p| p == "..") {
            return Err(Error::invalid(format!(
                "copy destination must be an absolute file path without '..', not {dest:?}"
            )));
        }
        let meta = std::fs::metadata(source)
            .map_err(|e| Error::io(format!("copy source {}", source.display()), e))?;
        if !meta.is_file() {
            return Err(Error::invalid(format!(
                "copy source {} is not a regular file",
                source.display()
            )));
        }
        let bytes = tokio::fs::read(source)
            .await
            .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
        self.copy_bytes(id, &bytes, dest).await
    }

    /// Writes `bytes` as the file `dest` in the container.
    pub async fn copy_bytes(&self, id: &str, bytes: &[u8], dest: &str) -> Result<()> {
        self.bounded("copy", Bound::Quick, async {
            self.podman
                .containers()
                .get(id)
                .copy_file_into(dest, bytes)
                .await
                .map_err(|e| cerr("copy", e))
        })
        .await
    }

    /// Asks the container to stop; kills it after `grace` seconds.
    pub async fn stop(&self, id: &str, grace: u64) -> Result<()> {
        // The grace period is podman's to wait: it adds to the bound of the call.
        let call = async {
            match self
                .raw
                .post(
                    Self::ep(format!("/containers/{id}/stop?timeout={grace}")),
                    Payload::empty(),
                    Headers::none(),
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if fault_code(&e) == Some(StatusCode::NOT_MODIFIED) => Ok(()),
                Err(e) => Err(self.name_the_service(cerr("stop", e))),
            }
        };
        let limit = self.timeout + Duration::from_secs(grace);
        let cancel = Cancel::current();
        tokio::select! {
            result = tokio::time::timeout(limit, call) => {
                result.unwrap_or_else(|_| Err(self.unanswered("stop", limit)))
            }
            () = cancel.cancelled() => Err(Error::Interrupted),
        }
    }

    /// Removes a container; with `force` a running one is killed first. A container that is
    /// already gone is not an error.
    pub async fn remove(&self, id: &str, force: bool) -> Result<()> {
        if let Some(pump) = self
            .pumps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            pump.abort();
        }
        let ep = Self::ep(format!(
            "/containers/{id}?force={force}&timeout={REMOVE_GRACE}&volumes=true"
        ));
        let mut attempt = 0;
        loop {
            // Cleanup: never ended by a signal, and short when the service was just found
            // unresponsive (the reaper removes what is left once it answers again).
            let limit = self.call_limit();
            let call = tokio::time::timeout(limit, self.raw.delete(ep.clone()));
            let Ok(removed) = call.await else {
                self.note_unanswered();
                return Err(self.unanswered("remove", limit));
            };
            match removed {
                Ok(_) => {
                    debug!(target: LOG_TARGET, container = %short(id), "removed");
                    return Ok(());
                }
                Err(e) if fault_code(&e) == Some(StatusCode::NOT_FOUND) => return Ok(()),
                Err(e) if attempt < REMOVE_RETRIES && removal_retryable(&podman_message(&e)) => {
                    attempt += 1;
                    debug!(target: LOG_TARGET, container = %short(id), "remove: busy, retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(self.name_the_service(cerr("remove", e))),
            }
        }
    }

    /// Removes a container, logging (never raising) a failure: for cleanup paths, where the
    /// original error must reach the caller.
    pub async fn remove_logged(&self, id: &str) {
        if let Err(e) = self.remove(id, true).await {
            warn!(target: LOG_TARGET, container = %short(id), "cleanup failed, container may be left behind: {e}");
        }
    }

    /// Disconnects a container from a network (the build step runs without one).
    pub async fn disconnect(&self, id: &str, network: &str) -> Result<()> {
        let body = serde_json::to_vec(&serde_json::json!({"Container": id, "Force": true}))
            .map_err(|e| Error::container("disconnect", e))?;
        self.bounded("network disconnect", Bound::Quick, async {
            self.raw
                .post(
                    Self::ep(format!("/networks/{network}/disconnect")),
                    Payload::Json(body),
                    Headers::none(),
                )
                .await
                .map(|_| ())
                .map_err(|e| cerr("network disconnect", e))
        })
        .await
    }

    /// Connects a container to a network (a URL repo's install steps need it back).
    pub async fn connect(&self, id: &str, network: &str) -> Result<()> {
        let body = serde_json::to_vec(&serde_json::json!({"container": id}))
            .map_err(|e| Error::container("connect", e))?;
        self.bounded("network connect", Bound::Quick, async {
            self.raw
                .post(
                    Self::ep(format!("/networks/{network}/connect")),
                    Payload::Json(body),
                    Headers::none(),
                )
                .await
                .map(|_| ())
                .map_err(|e| cerr("network connect", e))
        })
        .await
    }

    /// Saves a container's filesystem as the image `repo:tag` with `labels`; returns its ID.
    /// A running container is paused while it is copied; a created one needs no pause.
    pub async fn commit(
        &self,
        id: &str,
        repo: &str,
        tag: &str,
        labels: &BTreeMap<String, String>,
        pause: bool,
    ) -> Result<String> {
        let query = format!(
            "container={}&repo={}&tag={}&pause={pause}{}",
            encode(id),
            encode(repo),
            encode(tag),
            label_changes(labels)
        );
        self.post_for_image_id("commit", format!("/commit?{query}"), Payload::empty())
            .await
    }

    /// POSTs to an endpoint that makes an image (commit, import) and returns the `Id` of the
    /// image podman reports.
    async fn post_for_image_id(
        &self,
        op: &str,
        path: String,
        body: Payload<Body>,
    ) -> Result<String> {
        let reply: serde_json::Value = self
            .bounded(op, Bound::Long, async {
                self.raw
                    .post_json(Self::ep(path), body, Headers::none())
                    .await
                    .map_err(|e| cerr(op, e))
            })
            .await?;
        reply
            .get("Id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::container(op, format!("unexpected reply {reply}")))
    }

    /// Mounts a container's root filesystem on the host and returns where (podman keeps the
    /// mount until the container is removed). Another container may bind-mount that path.
    pub async fn mount(&self, id: &str) -> Result<PathBuf> {
        let path = self
            .bounded("mount", Bound::Quick, async {
                self.raw
                    .post_string(
                        Self::ep(format!("/containers/{id}/mount")),
                        Payload::empty(),
                        Headers::none(),
                    )
                    .await
                    .map_err(|e| cerr("mount", e))
            })
            .await?;
        // The body is a JSON string.
        let path: String = serde_json::from_str(path.trim())
            .unwrap_or_else(|_| path.trim().trim_matches('"').to_owned());
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(Error::container(
                "mount",
                format!("podman returned {} as the mount point", path.display()),
            ));
        }
        Ok(path)
    }

    /// Writes `files` (absolute container path, content, mode) into a created or running
    /// container in one archive; podman extracts it inside the container's root and makes the
    /// files the container user's.
    pub async fn put_files(&self, id: &str, files: &[(&str, &[u8], u32)]) -> Result<()> {
        let mtime = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut tar = tar::Builder::new(Vec::new());
        for (dest, content, mode) in files {
            let rel = dest.strip_prefix('/').unwrap_or(dest);
            if !dest.starts_with('/')
                || rel.is_empty()
                || rel.split('/').any(|p| p == ".." || p.is_empty())
            {
                return Err(Error::invalid(format!(
                    "file destination must be an absolute path without '..', not {dest:?}"
                )));
            }
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(mtime);
            tar.append_data(&mut header, rel, *content)
                .map_err(|e| Error::io(format!("packing {dest}"), e))?;
        }
        let body = tar
            .into_inner()
            .map_err(|e| Error::io("packing files for a container", e))?;
        self.bounded("copy into container", Bound::Quick, async {
            self.raw
                .put(
                    Self::ep(format!("/containers/{id}/archive?path=%2F")),
                    Payload::XTar(body),
                )
                .await
                .map(|_| ())
                .map_err(|e| cerr("copy into container", e))
        })
        .await
    }

    /// Takes files out of a container through podman's archive endpoint: the regular files
    /// directly inside `dir` whose names pass `wanted`, into the host directory `dest` (see
    /// [`crate::core::archive`]). A missing `dir` gives nothing. The tar is read and written
    /// on a blocking thread.
    pub async fn extract_files(
        &self,
        id: &str,
        dir: &str,
        wanted: fn(&str) -> bool,
        dest: &Path,
        max_bytes: Option<u64>,
        cancel: &Cancel,
    ) -> Result<Extraction> {
        use futures_util::StreamExt;
        let ep = Self::ep(format!("/containers/{id}/archive?path={}", encode(dir)));
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let dest = dest.to_path_buf();
        let worker = tokio::task::spawn_blocking(move || {
            archive::extract_files(archive::ChunkReader::new(rx), &wanted, &dest, max_bytes)
        });
        let pump = async {
            let mut stream = Box::pin(self.raw.get_stream(ep));
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(bytes) => Ok(bytes.to_vec()),
                    Err(e) if fault_code(&e) == Some(StatusCode::NOT_FOUND) => return Ok(false),
                    Err(e) => return Err(cerr("copy from container", e)),
                };
                if tx.send(chunk).await.is_err() {
                    break; // the reader stopped on an error of its own
                }
            }
            Ok(true)
        };
        let found = tokio::select! {
            found = self.bounded("copy from container", Bound::Long, pump) => found,
            () = cancel.cancelled() => Err(Error::Interrupted),
        };
        drop(tx);
        let extracted = worker
            .await
            .map_err(|e| Error::container("copy from container", e))?;
        match found {
            Ok(true) => extracted,
            Ok(false) => Ok(Extraction::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes podman's tar of `path` in container `id` (created or running) to `dest`, a new
    /// file (`O_EXCL|O_NOFOLLOW`); its content is the container's, never extracted here.
    /// Returns the bytes written; a missing path is `Error::Container`.
    pub async fn archive_to_file(
        &self,
        id: &str,
        path: &str,
        dest: &Path,
        cancel: &Cancel,
    ) -> Result<u64> {
        use futures_util::StreamExt;
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)
            .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        let ep = Self::ep(format!("/containers/{id}/archive?path={}", encode(path)));
        let copy = async {
            let mut written = 0u64;
            let mut stream = Box::pin(self.raw.get_stream(ep));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| cerr("copy from container", e))?;
                file.write_all(&chunk)
                    .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
                written += chunk.len() as u64;
            }
            Ok(written)
        };
        let result = tokio::select! {
            written = self.bounded("copy from container", Bound::Long, copy) => written,
            () = cancel.cancelled() => Err(Error::Interrupted),
        };
        if result.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        result
    }

    /// Imports the tar at `tar` (a file the host wrote) as the image `reference` with
    /// `labels`; returns its ID. The file is streamed, never read into memory.
    pub async fn import_tar(
        &self,
        tar: &Path,
        reference: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<String> {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| Error::io(format!("opening {}", tar.display()), e))?;
        let chunks = futures_util::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let query = format!("reference={}{}", encode(reference), label_changes(labels));
        self.post_for_image_id(
            "import",
            format!("/images/import?{query}"),
            Payload::XTar(Body::wrap_stream(chunks)),
        )
        .await
    }

    /// The cgroup of a running container, as podman names it (`State.CgroupPath`); `None`
    /// when podman names none (it has stopped). Read it with [`accounting::read_usage`] and
    /// [`accounting::read_oom_kills`] while the container runs.
    pub async fn cgroup_path(&self, id: &str) -> Result<Option<String>> {
        let info = self.inspect_container(id).await?;
        Ok(info
            .pointer("/State/CgroupPath")
            .and_then(serde_json::Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_owned))
    }

    /// What a running container has used so far, from its cgroup (see [`accounting`]);
    /// `None` when podman does not name its cgroup (it has stopped).
    ///
    /// [`accounting`]: crate::core::accounting
    pub async fn usage(&self, id: &str) -> Result<Option<accounting::Usage>> {
        Ok(self
            .cgroup_path(id)
            .await?
            .map(|p| accounting::read_usage(Path::new(accounting::CGROUP_ROOT), &p)))
    }

    /// How many processes of the container the kernel's OOM killer killed (its cgroup's
    /// `oom_kill` count); `None` when podman names no cgroup (it has stopped) or the kernel
    /// does not say.
    pub async fn oom_kills(&self, id: &str) -> Result<Option<u64>> {
        Ok(self
            .cgroup_path(id)
            .await?
            .and_then(|p| accounting::read_oom_kills(Path::new(accounting::CGROUP_ROOT), &p)))
    }

    /// podman's inspect of a container, as podman returns it (`podman inspect`).
    pub async fn inspect_container(&self, id: &str) -> Result<serde_json::Value> {
        self.bounded("inspect", Bound::Quick, async {
            self.raw
                .get_json(Self::ep(format!("/containers/{}/json", encode(id))))
                .await
                .map_err(|e| Error::container("inspect", podman_message(&e)))
        })
        .await
    }

    /// podman's inspect of a local image, as podman returns it (`podman image inspect`).
    pub async fn inspect_image(&self, image: &str) -> Result<serde_json::Value> {
        self.bounded("inspect image", Bound::Quick, async {
            self.raw
                .get_json(Self::ep(format!("/images/{}/json", encode(image))))
                .await
                .map_err(|e| image_error(image, &e))
        })
        .await
    }

    /// An image's ID, digest and architecture (what a task's log records of its image).
    pub async fn image_info(&self, image: &str) -> Result<ImageInfo> {
        let info = self
            .bounded("inspect image", Bound::Quick, async {
                self.podman
                    .images()
                    .get(image)
                    .inspect()
                    .await
                    .map_err(|e| image_error(image, &e))
            })
            .await?;
        Ok(ImageInfo {
            id: info.id.unwrap_or_default(),
            digest: info.digest.unwrap_or_default(),
            architecture: info.architecture.unwrap_or_default(),
        })
    }

    /// The empty image a fresh buildroot starts from (`podman import` of an empty tar), made
    /// the first time it is needed. Returns its ID.
    pub async fn ensure_empty_image(&self) -> Result<String> {
        if let Some(id) = self.image_id(EMPTY_IMAGE).await? {
            return Ok(id);
        }
        let empty = tar::Builder::new(Vec::new())
            .into_inner()
            .map_err(|e| Error::io("making an empty archive", e))?;
        let query = format!(
            "reference={}&changes={}&message={}",
            encode(EMPTY_IMAGE),
            encode("LABEL io.koji.adjutant.empty=1"),
            encode("koji-adjutant: the empty root a fresh buildroot starts from")
        );
        self.bounded("import the empty image", Bound::Quick, async {
            self.raw
                .post_string(
                    Self::ep(format!("/images/import?{query}")),
                    Payload::XTar(empty),
                    Headers::none(),
                )
                .await
                .map_err(|e| cerr("import the empty image", e))
        })
        .await?;
        self.image_id(EMPTY_IMAGE)
            .await?
            .ok_or_else(|| Error::Image {
                image: EMPTY_IMAGE.to_owned(),
                message: "imported, but podman does not list it".into(),
            })
    }

    /// Local images carrying the label `key=value`.
    pub async fn images_with_label(&self, key: &str, value: &str) -> Result<Vec<ImageSummary>> {
        let mut labels = BTreeMap::new();
        labels.insert(key.to_owned(), value.to_owned());
        self.images_with_labels(&labels).await
    }

    /// Local images carrying all of `labels` (at least one: never every image).
    pub async fn images_with_labels(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<ImageSummary>> {
        // podman 4.3 lists no image at all for two label filters: filter by one, check the
        // others here.
        let Some((key, value)) = labels.iter().next() else {
            return Err(Error::invalid("listing images needs at least one label"));
        };
        let filters = serde_json::json!({ "label": [format!("{key}={value}")] }).to_string();
        let listed: Vec<serde_json::Value> = self
            .bounded("list images", Bound::Quick, async {
                self.raw
                    .get_json(Self::ep(format!(
                        "/images/json?filters={}",
                        encode(&filters)
                    )))
                    .await
                    .map_err(|e| cerr("list images", e))
            })
            .await?;
        Ok(listed
            .into_iter()
            .map(|img| ImageSummary {
                id: img
                    .get("Id")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                size: img.get("Size").and_then(|v| v.as_u64()).unwrap_or(0),
                created: img.get("Created").and_then(|v| v.as_i64()).unwrap_or(0),
                labels: img
                    .get("Labels")
                    .and_then(|v| v.as_object())
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .filter(|img: &ImageSummary| {
                labels
                    .iter()
                    .all(|(k, v)| img.labels.get(k).is_some_and(|have| have == v))
            })
            .collect())
    }

    /// Removes a local image; one still used by a container is left (`Ok(false)`).
    pub async fn remove_image(&self, id: &str) -> Result<bool> {
        // Cancellable: an image removal podman finishes after a signal leaves nothing wrong.
        self.bounded("remove image", Bound::Quick, async {
            match self
                .raw
                .delete(Self::ep(format!("/images/{}", encode(id))))
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if fault_code(&e) == Some(StatusCode::NOT_FOUND) => Ok(true),
                Err(e) if fault_code(&e) == Some(StatusCode::CONFLICT) => Ok(false),
                Err(e) => Err(cerr("remove image", e)),
            }
        })
        .await
    }

    /// Containers (any state) carrying all of `labels`.
    pub async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerSummary>> {
        let opts = ContainerListOpts::builder()
            .all(true)
            .filter(
                labels
                    .iter()
                    .map(|(k, v)| ContainerListFilter::LabelKeyVal(k.clone(), v.clone())),
            )
            .build();
        let listed = self
            .bounded("list", Bound::Quick, async {
                self.podman
                    .containers()
                    .list(&opts)
                    .await
                    .map_err(|e| cerr("list", e))
            })
            .await?;
        Ok(listed
            .into_iter()
            .map(|c| ContainerSummary {
                id: c.id.unwrap_or_default(),
                names: c.names.unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                state: c.state.unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
            })
            .collect())
    }

    /// Removes every container carrying all of `labels`; returns how many were removed.
    /// Refuses an empty label set (that would be every container on the host).
    pub async fn reap(&self, labels: &BTreeMap<String, String>) -> Result<usize> {
        if labels.is_empty() {
            return Err(Error::invalid("reap needs at least one label"));
        }
        let mut removed = 0;
        for container in self.list(labels).await? {
            self.remove(&container.id, true).await?;
            info!(target: LOG_TARGET, container = %short(&container.id), "reaped container");
            removed += 1;
        }
        Ok(removed)
    }
}

/// `&changes=LABEL k=v` for each label, for the endpoints that make an image.
fn label_changes(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("&changes={}", encode(&format!("LABEL {k}={v}"))))
        .collect()
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

async fn with_limit<F: Future<Output = Result<u64>>>(
    limit: Option<Duration>,
    fut: F,
) -> Result<u64> {
    match limit {
        None => fut.await,
        Some(limit) => tokio::time::timeout(limit, fut).await.map_err(|_| {
            Error::container(
                "run",
                format!(
                    "container exceeded its timeout of {}s",
                    limit.as_secs().saturating_sub(30)
                ),
            )
        })?,
    }
}

fn join_pump(joined: std::result::Result<Result<u64>, tokio::task::JoinError>) -> Result<u64> {
    joined.map_err(|e| Error::container("output stream", e))?
}

async fn drain(pump: &mut JoinHandle<Result<u64>>) -> Result<u64> {
    match tokio::time::timeout(DRAIN_LIMIT, &mut *pump).await {
        Ok(joined) => join_pump(joined),
        Err(_) => {
            pump.abort();
            Err(Error::container(
                "output stream",
                "did not end after the container exited",
            ))
        }
    }
}

fn empty_memory() -> models::LinuxMemory {
    models::LinuxMemory {
        disable_oom_killer: None,
        kernel: None,
        kernel_tcp: None,
        limit: None,
        reservation: None,
        swap: None,
        swappiness: None,
        use_hierarchy: None,
    }
}

fn empty_cpu() -> models::LinuxCpu {
    models::LinuxCpu {
        cpus: None,
        mems: None,
        period: None,
        quota: None,
        realtime_period: None,
        realtime_runtime: None,
        shares: None,
    }
}

fn empty_resources() -> models::LinuxResources {
    models::LinuxResources {
        block_io: None,
        cpu: None,
        devices: None,
        hugepage_limits: None,
        memory: None,
        network: None,
        pids: None,
        rdma: None,
        unified: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_failing_for_a_moment_are_tried_again_and_others_not() {
        let stopped = "cannot remove container 2a6e as it could not be stopped: sending SIGKILL \
                       to container 2a6e: container state improper: stopped";
        assert!(removal_retryable(stopped));
        assert!(removal_retryable(
            "unmounting /var/lib/containers/storage/overlay-containers/x/userdata/shm: device or resource busy"
        ));
        assert!(!removal_retryable("no such container"));
        assert!(!removal_retryable("permission denied"));
    }
    use crate::core::spec::{NetworkMode, ResourceLimits, VolumeMount};

    #[test]
    fn the_create_request_carries_every_restriction() {
        let client = PodmanClient::new("/run/none.sock", "w1").unwrap();
        let mut spec = ContainerSpec::new("img:1", vec!["true".into()]);
        spec.mounts.push(VolumeMount {
            source: "/tmp".into(),
            target: "/in".into(),
            read_only: true,
            selinux_label: Some(crate::core::spec::SelinuxLabel::Private),
        });
        spec.limits = ResourceLimits {
            memory_bytes: Some(1 << 30),
            cpus: Some(0.5),
            pids: Some(64),
        };
        spec.network = NetworkMode::None;
        spec.cap_add = vec!["CHOWN".into()];
        spec.task_id = Some(9);
        let body: serde_json::Value =
            serde_json::from_slice(&client.create_body(&spec).unwrap()).unwrap();
        assert_eq!(body["no_new_privileges"], true);
        assert_eq!(body["cap_drop"], serde_json::json!(["ALL"]));
        assert_eq!(body["cap_add"], serde_json::json!(["CHOWN"]));
        assert_eq!(body["netns"]["nsmode"], "none");
        assert_eq!(body["mounts"][0]["destination"], "/in");
        assert_eq!(body["mounts"][0]["source"], "/tmp");
        assert_eq!(
            body["mounts"][0]["options"],
            serde_json::json!(["rbind", "ro", "Z"])
        );
        assert_eq!(body["resource_limits"]["memory"]["limit"], 1 << 30);
        assert_eq!(body["resource_limits"]["cpu"]["quota"], 50_000);
        assert_eq!(body["resource_limits"]["pids"]["limit"], 64);
        assert_eq!(body["labels"][crate::core::spec::LABEL_TASK_ID], "9");
        assert_eq!(body["labels"][crate::core::spec::LABEL_WORKER_ID], "w1");
        let rlimits: Vec<&str> = body["r_limits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(rlimits, ["nofile", "nproc"]);
    }

    #[test]
    fn init_scratch_volumes_and_a_user_namespace_reach_the_create_request() {
        let client = PodmanClient::new("/run/none.sock", "w1").unwrap();
        let plain = ContainerSpec::new("img:1", vec!["true".into()]);
        let body: serde_json::Value =
            serde_json::from_slice(&client.create_body(&plain).unwrap()).unwrap();
        for absent in ["init", "volumes", "userns", "idmappings"] {
            assert!(body.get(absent).is_none(), "{absent} in a plain spec");
        }
        let mut spec = plain.clone();
        spec.init = true;
        spec.scratch_volumes = vec!["/br/var/cache/dnf".into()];
        spec.userns = Some(crate::core::spec::IdMap::new(1_000_000_000).unwrap());
        let body: serde_json::Value =
            serde_json::from_slice(&client.create_body(&spec).unwrap()).unwrap();
        assert_eq!(body["init"], true);
        assert_eq!(
            body["volumes"],
            serde_json::json!([{"Name": "", "Dest": "/br/var/cache/dnf", "Options": []}])
        );
        assert_eq!(body["userns"]["nsmode"], "private");
        let ids =
            serde_json::json!([{"container_id": 0, "host_id": 1_000_000_000u32, "size": 65536}]);
        assert_eq!(body["idmappings"]["UIDMap"], ids);
        assert_eq!(body["idmappings"]["GIDMap"], ids);
        assert!(crate::core::spec::IdMap::new(0).is_err());
        assert!(crate::core::spec::IdMap::new(u32::MAX - 10).is_err());
    }

    fn body_of(client: &PodmanClient, spec: &ContainerSpec) -> serde_json::Value {
        serde_json::from_slice(&client.create_body(spec).unwrap()).unwrap()
    }

    #[test]
    fn a_rootfs_spec_names_the_directory_and_no_image() {
        let client = PodmanClient::new("/run/none.sock", "w1").unwrap();
        let mut spec = ContainerSpec::new("origin", vec!["true".into()]);
        spec.rootfs = Some("/var/lib/containers/storage/overlay/x/merged".into());
        let body = body_of(&client, &spec);
        assert!(body.get("image").is_none());
        assert_eq!(
            body["rootfs"],
            "/var/lib/containers/storage/overlay/x/merged"
        );
        assert!(body.get("rootfs_overlay").is_none());
        spec.rootfs = Some("relative/root".into());
        assert!(spec.validate().is_err());
    }

    #[test]
    fn a_plain_spec_is_already_locked_down() {
        let client = PodmanClient::new("/run/none.sock", "w1").unwrap();
        let body = body_of(&client, &ContainerSpec::new("img:1", vec!["true".into()]));
        assert_eq!(body["image"], "img:1");
        assert_eq!(body["command"], serde_json::json!(["true"]));
        assert_eq!(body["no_new_privileges"], true);
        assert_eq!(body["cap_drop"], serde_json::json!(["ALL"]));
        assert!(body.get("cap_add").is_none());
        assert_eq!(body["netns"]["nsmode"], "none");
        // Only the pids limit is on by default (a fork bomb must not take the builder down).
        assert_eq!(
            body["resource_limits"]["pids"]["limit"],
            crate::core::spec::DEFAULT_PIDS_LIMIT
        );
        assert!(body["resource_limits"]["memory"].is_null());
        assert!(body["resource_limits"]["cpu"].is_null());
        assert_eq!(body["labels"][crate::core::spec::LABEL_TASK_ID], "none");
        assert_eq!(body["stop_timeout"], 10);
        for absent in ["work_dir", "user", "timeout", "env", "mounts"] {
            let empty = body.get(absent).is_none_or(|v| {
                v.as_object().is_some_and(|o| o.is_empty())
                    || v.as_array().is_some_and(|a| a.is_empty())
            });
            assert!(empty, "{absent} in a plain spec: {body}");
        }
        // rlimits are the service's hard limits (podman refuses more), soft = hard.
        for (i, (kind, value)) in [
            ("nofile", client.rlimits.nofile),
            ("nproc", client.rlimits.nproc),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(body["r_limits"][i]["type"], kind);
            assert_eq!(body["r_limits"][i]["soft"], value);
            assert_eq!(body["r_limits"][i]["hard"], value);
        }
    }

    #[test]
    fn each_option_of_a_spec_reaches_the_create_request() {
        let client = PodmanClient::new("/run/none.sock", "w1").unwrap();
        let mut spec = ContainerSpec::new("img:1", vec!["rpmbuild".into(), "-bb".into()]);
        spec.network = NetworkMode::Bridge;
        spec.user = Some("1000:135".into());
        spec.workdir = Some("/builddir".into());
        spec.environment.insert("HOME".into(), "/builddir".into());
        spec.labels
            .insert("io.koji.adjutant.role".into(), "build".into());
        // A label cannot claim another task or worker: the spec's own values win.
        spec.labels
            .insert(crate::core::spec::LABEL_WORKER_ID.into(), "other".into());
        spec.task_id = Some(42);
        spec.timeout = Some(3600);
        spec.mounts.push(VolumeMount {
            source: "/work/42".into(),
            target: "/out".into(),
            read_only: false,
            selinux_label: None,
        });
        spec.limits = ResourceLimits {
            memory_bytes: Some(2 << 30),
            cpus: Some(1.25),
            pids: None,
        };
        let body = body_of(&client, &spec);
        assert_eq!(body["netns"]["nsmode"], "bridge");
        assert_eq!(body["user"], "1000:135");
        assert_eq!(body["work_dir"], "/builddir");
        assert_eq!(body["env"]["HOME"], "/builddir");
        assert_eq!(body["labels"]["io.koji.adjutant.role"], "build");
        assert_eq!(body["labels"][crate::core::spec::LABEL_TASK_ID], "42");
        assert_eq!(body["labels"][crate::core::spec::LABEL_WORKER_ID], "w1");
        assert_eq!(body["timeout"], 3600);
        assert_eq!(
            body["mounts"][0]["options"],
            serde_json::json!(["rbind", "rw"])
        );
        assert_eq!(body["mounts"][0]["type"], "bind");
        // Memory and swap are the same number: no swap beyond the limit.
        assert_eq!(body["resource_limits"]["memory"]["limit"], 2i64 << 30);
        assert_eq!(body["resource_limits"]["memory"]["swap"], 2i64 << 30);
        assert_eq!(body["resource_limits"]["cpu"]["period"], 100_000);
        assert_eq!(body["resource_limits"]["cpu"]["quota"], 125_000);
        assert!(body["resource_limits"]["pids"].is_null());
        // No limit at all: no resource_limits object.
        spec.limits = ResourceLimits {
            memory_bytes: None,
            cpus: None,
            pids: None,
        };
        assert!(body_of(&client, &spec).get("resource_limits").is_none());
    }

    /// A podman service stand-in on a unix socket: it answers `GET .../_ping` with `OK`
    /// while `answering` is set and never answers anything else.
    struct WedgedService {
        dir: crate::core::testutil::Scratch,
        answering: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl WedgedService {
        fn start() -> WedgedService {
            use std::io::{BufRead, Write};
            use std::sync::atomic::Ordering;
            let dir = crate::core::testutil::Scratch::new("wedged");
            let listener = std::os::unix::net::UnixListener::bind(dir.join("podman.sock")).unwrap();
            let answering = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let flag = answering.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { return };
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let mut line = String::new();
                        let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                        if reader.read_line(&mut line).is_err() {
                            return;
                        }
                        if line.contains("/_ping") && flag.load(Ordering::SeqCst) {
                            let _ = conn.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                            );
                            return;
                        }
                        // Hold the connection, as a stopped service does.
                        std::thread::sleep(Duration::from_secs(30));
                    });
                }
            });
            WedgedService { dir, answering }
        }

        fn client(&self, timeout: u64) -> PodmanClient {
            PodmanClient::new(self.dir.join("podman.sock").to_str().unwrap(), "w1")
                .unwrap()
                .with_timeout(Duration::from_secs(timeout))
                .unwrap()
        }
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn an_unanswered_call_fails_after_the_timeout() {
        let service = WedgedService::start();
        let client = service.client(1);
        let started = Instant::now();
        let err = current_thread()
            .block_on(client.list(&BTreeMap::from([("a".into(), "b".into())])))
            .unwrap_err();
        assert!(
            err.to_string().contains("did not answer within 1 s"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        // Every call right after is short, whatever the timeout.
        assert_eq!(client.call_limit(), WEDGED_CALL_LIMIT.min(client.timeout()));
        assert!(PodmanClient::new("/x.sock", "w1")
            .unwrap()
            .with_timeout(Duration::from_millis(10))
            .is_err());
    }

    #[test]
    fn after_one_unanswered_call_every_call_gets_the_short_limit() {
        let service = WedgedService::start();
        service
            .answering
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let client = service.client(4);
        let rt = current_thread();
        let first = rt
            .block_on(client.inspect_container("0123456789ab"))
            .unwrap_err();
        assert!(
            first.to_string().contains("did not answer within 4 s"),
            "{first}"
        );
        // the next quick call, and the first ping of a long one, wait 3 s, not 4 s
        let quick = rt
            .block_on(client.inspect_container("0123456789ab"))
            .unwrap_err();
        assert!(
            quick.to_string().contains("did not answer within 3 s"),
            "{quick}"
        );
        let long = rt
            .block_on(client.wait("0123456789ab", &Cancel::never()))
            .unwrap_err();
        assert!(
            long.to_string()
                .contains("did not answer its ping within 3 s"),
            "{long}"
        );
    }

    #[test]
    fn a_long_call_lasts_while_pings_answer_and_fails_when_they_stop() {
        let service = WedgedService::start();
        let client = service.client(1);
        let flag = service.answering.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2500));
            flag.store(false, std::sync::atomic::Ordering::SeqCst);
        });
        let started = Instant::now();
        let err = current_thread()
            .block_on(client.wait("0123456789ab", &Cancel::never()))
            .unwrap_err();
        let waited = started.elapsed();
        assert!(err.to_string().contains("did not answer its ping"), "{err}");
        // Alive for 2.5 s (longer than the timeout), then found within a probe plus a timeout.
        assert!(waited > Duration::from_millis(2500), "{waited:?}");
        assert!(waited < Duration::from_millis(5000), "{waited:?}");
    }

    #[test]
    fn the_cancel_scope_ends_calls_but_never_a_create() {
        let service = WedgedService::start();
        let client = service.client(2);
        let (handle, cancel) = crate::core::cancel::cancel_pair();
        handle.cancel();
        let rt = current_thread();
        let started = Instant::now();
        let listed = rt.block_on(cancel.clone().scope(client.ping()));
        assert!(matches!(listed, Err(Error::Interrupted)), "{listed:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
        // A create runs to its answer (here: the timeout), so its container id is known.
        let spec = ContainerSpec::new("img:1", vec!["true".into()]);
        let created = rt.block_on(cancel.scope(client.create(&spec)));
        assert!(
            matches!(&created, Err(Error::Container { message, .. }) if message.contains("did not answer")),
            "{created:?}"
        );
    }

    #[test]
    fn removals_retry_only_what_passes() {
        assert!(removal_retryable("unmounting: device or resource busy"));
        assert!(removal_retryable(
            "cannot remove container 3d74 as it could not be stopped: given PIDs did not die within timeout"
        ));
        assert!(!removal_retryable("no such container"));
    }

    #[test]
    fn a_call_to_a_missing_socket_names_the_podman_service() {
        let socket = std::env::temp_dir().join(format!("adj-{}-gone.sock", std::process::id()));
        let client = PodmanClient::new(socket.to_str().unwrap(), "w1").unwrap();
        let err = current_thread()
            .block_on(client.inspect_container("0123456789ab"))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("inspect: the podman service at "),
            "{text}"
        );
        assert!(text.contains("gone.sock cannot be reached"), "{text}");
        assert!(text.contains("error trying to connect"), "{text}");
    }

    #[test]
    fn sockets_are_paths_or_unix_urls() {
        assert_eq!(socket_path("unix:///run/p.sock").unwrap(), "/run/p.sock");
        assert_eq!(socket_path("/run/p.sock").unwrap(), "/run/p.sock");
        assert!(socket_path("tcp://h:1").is_err());
        assert!(socket_path("").is_err());
        assert!(PullPolicy::parse("sometimes").is_err());
    }
}
