//! The tokio runtime the core runs on: built lazily on first use, never at import time, and
//! rebuilt in a forked child (kojid forks one child per task; a runtime's worker threads do
//! not survive fork, so the parent's runtime is abandoned there, never used or dropped).

use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;

use crate::core::error::{Error, Result};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The runtime of this process, built on first use.
pub fn runtime() -> Result<Arc<Runtime>> {
    let pid = std::process::id();
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
    }
    if let Some((_, inherited)) = slot.take() {
        // Inherited across fork: its threads are gone and dropping it could block forever.
        std::mem::forget(inherited);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("koji-adjutant-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the I/O runtime", e))?;
    let rt = Arc::new(rt);
    *slot = Some((pid, rt.clone()));
    Ok(rt)
}
