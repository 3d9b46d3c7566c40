//! The pyo3-free core of koji-adjutant: container lifecycle over Podman's REST API, output
//! sinks, buildroot and createrepo plans and the adapters' logic. Nothing here uses pyo3, so
//! `cargo test` covers it without Python; `crate::bindings` wraps it for Python.

pub mod error;
pub mod sink;

pub use error::{Error, Result};
pub mod accounting;
pub mod archive;
pub mod buildarch;
pub mod buildroot;
pub mod cancel;
pub mod createrepo;
pub mod createrepo_run;
pub mod frames;
pub mod logsink;
pub mod podman;
pub mod runtime;
pub mod shell;
pub mod spec;
pub mod task;
#[cfg(test)]
pub mod testutil;
