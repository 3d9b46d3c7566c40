//! `block_on`: the one way the bindings wait for the core.
//!
//! It releases the GIL, drives the future on the core's runtime, and every ~200 ms re-takes
//! the GIL to run Python's signal handlers (kojid's SIGINT/SIGTERM handlers raise). When one
//! raises, the core is told to cancel (the token passed to `make`, which is also the cancel
//! scope of every Podman call inside); it cleans up (removes its container) and the handler's
//! exception is what the caller gets.

use std::future::Future;
use std::time::Duration;

use pyo3::prelude::*;

use crate::core::cancel::{cancel_pair, Cancel};
use crate::core::runtime::runtime;
use crate::core::{Error, Result};

const SIGNAL_TICK: Duration = Duration::from_millis(200);

pub fn block_on<T, F, Fut>(py: Python<'_>, make: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(Cancel) -> Fut + Send,
    Fut: Future<Output = Result<T>> + Send,
{
    let rt = runtime()?;
    let (handle, cancel) = cancel_pair();
    let mut raised: Option<PyErr> = None;
    let drive = || {
        rt.block_on(async {
            // The token is also the call's cancel scope: every Podman call inside ends once
            // it fires (crate::core::cancel).
            let fut = cancel.clone().scope(make(cancel));
            tokio::pin!(fut);
            let mut tick = tokio::time::interval(SIGNAL_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    result = &mut fut => break result,
                    _ = tick.tick(), if raised.is_none() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            raised = Some(e);
                            handle.cancel();
                        }
                    }
                }
            }
        })
    };
    let outcome = py.detach(|| {
        if tokio::runtime::Handle::try_current().is_err() {
            return drive();
        }
        // Re-entered from Python code the core is calling (a sink or a hook calling back into
        // the manager): this thread already drives the runtime, so a scoped thread waits.
        std::thread::scope(|scope| match scope.spawn(drive).join() {
            Ok(result) => result,
            Err(_) => Err(Error::container("nested call", "the helper thread failed")),
        })
    });
    match (raised, outcome) {
        // The signal handler's exception wins: the work stopped because of it.
        (Some(signal), _) => Err(signal),
        (None, Ok(value)) => Ok(value),
        (None, Err(Error::Interrupted)) => Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(
            "interrupted",
        )),
        (None, Err(e)) => Err(e.into()),
    }
}
