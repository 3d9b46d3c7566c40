//! Cooperative cancellation: the bindings fire it when a Python signal handler raised while
//! Rust was waiting; long waits in the core select on it and then clean up before returning
//! `Error::Interrupted`. (A dropped future could not remove its container.)

use tokio::sync::watch;

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
