//! The one error type of the core. Every variant maps to exactly one Python exception class
//! (see `crate::bindings::errors`).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error raised by a sink (a Python callback, a full disk). Boxed so that the bindings can
/// carry a Python exception through the core and hand it back to the caller unchanged.
pub type SinkFailure = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec, option or input that is invalid; raised before anything is created.
    #[error("{0}")]
    InvalidSpec(String),

    /// Podman refused or failed an operation; `message` is podman's own.
    #[error("{op}: {message}")]
    Container { op: String, message: String },

    /// An image that is missing (pull policy "never") or cannot be pulled.
    #[error("image {image}: {message}")]
    Image { image: String, message: String },

    /// A sink failed while output was streamed; the run was aborted.
    #[error("log sink failed: {0}")]
    Sink(SinkFailure),

    /// A buildArch step failed; `log` names the log to read, as kojid's `_mockResult` does.
    #[error("{message}")]
    Build {
        message: String,
        log: Option<PathBuf>,
        exit_code: Option<i64>,
    },

    /// A createrepo step or the repo's on-disk state is wrong.
    #[error("{0}")]
    Repo(String),

    /// createrepo_c or mergerepo_c failed; `message` is kojid's task failure, word for word,
    /// and `log` the log it wrote (createrepo.log / mergerepos.log), which kojid uploads.
    #[error("{message}")]
    RepoCommand {
        message: String,
        log: Option<PathBuf>,
        exit_code: Option<i64>,
    },

    /// This builder cannot run the task as asked (its image cannot build the arch, the tag
    /// asks for what is not done here, the repos dir is not mounted): kojid refuses the task
    /// (`RefuseTask`), so the hub offers it to another builder, instead of failing it.
    #[error("{0}")]
    Refused(String),

    /// The caller asked to stop (a signal arrived while Rust waited). The bindings replace
    /// this with the Python exception the signal handler raised.
    #[error("interrupted")]
    Interrupted,

    /// Local I/O on the builder (work dir, log files), with the path involved.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn container(op: impl Into<String>, message: impl ToString) -> Self {
        Error::Container {
            op: op.into(),
            message: message.to_string(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidSpec(message.into())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
