//! Cooperative cancellation: the bindings fire it when a Python signal handler raised while
//! Rust was waiting; long waits in the core select on it and then clean up before returning
//! `Error::Interrupted`. (A dropped future could not remove its container.)
//!
//! Besides the tokens passed to the waits that must clean up, every call runs in a *cancel
//! scope* ([`Cancel::scope`], set by the bindings' `block_on` around the whole call): each
//! Podman call the core makes inside it ([`Cancel::current`]) ends with
//! `Error::Interrupted` once the scope's token fires, so a signal reaches every await (an
//! image pull, a cache commit, an eviction) without a token threaded through every function.
//! Calls whose effect must be known (creating a container) and cleanup (removing one) are
//! never ended by it.

use std::future::Future;

use tokio::sync::watch;

tokio::task_local! {
    static SCOPE: Cancel;
}

/// The side that fires.
#[derive(Debug)]
pub struct CancelHandle(watch::Sender<bool>);

/// The side that waits; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cancel(Option<watch::Receiver<bool>>);

pub fn cancel_pair() -> (CancelHandle, Cancel) {
    let (tx, rx) = watch::channel(false);
    (CancelHandle(tx), Cancel(Some(rx)))
}

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl Cancel {
    /// A token that never fires (for callers that cannot be interrupted).
    pub fn never() -> Self {
        Cancel(None)
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// The token of the cancel scope this code runs in; one that never fires outside any.
    pub fn current() -> Cancel {
        SCOPE
            .try_with(Cancel::clone)
            .unwrap_or_else(|_| Cancel::never())
    }

    /// Runs `fut` with this token as its cancel scope (see the module docs).
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        SCOPE.scope(self, fut).await
    }

    /// Resolves once cancellation was requested; never, if it cannot be.
    pub async fn cancelled(&self) {
        if let Some(rx) = &self.0 {
            let mut rx = rx.clone();
            if rx.wait_for(|fired| *fired).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_token_is_seen_inside_the_scope_only() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (handle, cancel) = cancel_pair();
        handle.cancel();
        rt.block_on(async {
            assert!(!Cancel::current().is_cancelled());
            let inside = cancel
                .scope(async { Cancel::current().is_cancelled() })
                .await;
            assert!(inside);
            assert!(!Cancel::current().is_cancelled());
        });
    }
}
