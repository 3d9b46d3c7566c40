//! Failed buildroots kept for inspection, as kojid keeps failed mock roots for a while.
//!
//! When a build fails, the runner saves the build container's root (with the build's work in
//! `/builddir`) as the local image `localhost/koji-adjutant-kept:<task id>`, labelled with the
//! task, the worker and the time it may be removed. `koji-adjutant shell TASK_ID` starts a
//! container from it (network off, no capabilities, the build user); expired ones are removed
//! at the start of every buildArch task of the worker and by `koji-adjutant reap`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::core::error::Result;
use crate::core::podman::{ImageSummary, PodmanClient};

use super::cache::{save_root, Source};

const LOG_TARGET: &str = "koji_adjutant::buildarch";

/// The repository of kept roots; the tag is the task id.
pub const REPO: &str = "localhost/koji-adjutant-kept";
/// Label: the task whose failed root this is.
pub const TASK_LABEL: &str = "io.koji.adjutant.kept.task_id";
/// Label: the worker that kept it.
pub const WORKER_LABEL: &str = "io.koji.adjutant.kept.worker_id";
/// Label: when it may be removed (seconds since the epoch).
pub const UNTIL_LABEL: &str = "io.koji.adjutant.kept.until";
/// Label: the host uid/gid its ids are mapped to (its user namespace), if any.
pub const USERNS_LABEL: &str = "io.koji.adjutant.kept.userns_base";

/// Saves a failed root of `task_id` until `keep` from now; returns the image reference.
pub async fn keep(
    client: &PodmanClient,
    source: Source<'_>,
    task_id: i64,
    keep: Duration,
    userns_base: Option<u32>,
) -> Result<String> {
    let until = SystemTime::now()
        .checked_add(keep)
        .unwrap_or(SystemTime::now())
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut labels = BTreeMap::new();
    labels.insert(TASK_LABEL.to_owned(), task_id.to_string());
    labels.insert(WORKER_LABEL.to_owned(), client.worker_id().to_owned());
    labels.insert(UNTIL_LABEL.to_owned(), until.to_string());
    if let Some(base) = userns_base {
        labels.insert(USERNS_LABEL.to_owned(), base.to_string());
    }
    let tag = task_id.to_string();
    // One kept root per task: an older one of the same task id (a task run again) would stay
    // labelled as the task's, untagged, and could be the one `saveFailedTree` finds.
    for older in client
        .images_with_label(WORKER_LABEL, client.worker_id())
        .await?
        .into_iter()
        .filter(|image| image.labels.get(TASK_LABEL) == Some(&tag))
    {
        if let Err(e) = client.remove_image(&older.id).await {
            warn!(target: LOG_TARGET, task = task_id, "cannot remove an older kept root: {e}");
        }
    }
    save_root(client, source, REPO, &tag, labels).await?;
    Ok(format!("{REPO}:{tag}"))
}

/// Whether a kept root's time is up at `now` (seconds since the epoch). A root whose label
/// cannot be read is expired: nothing keeps it.
pub fn expired(image: &ImageSummary, now: u64) -> bool {
    image
        .labels
        .get(UNTIL_LABEL)
        .and_then(|u| u.parse::<u64>().ok())
        .is_none_or(|until| until <= now)
}

/// Removes this worker's kept roots whose time is up; returns how many were removed.
pub async fn remove_expired(client: &PodmanClient) -> Result<usize> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut removed = 0;
    for image in client
        .images_with_label(WORKER_LABEL, client.worker_id())
        .await?
    {
        if !expired(&image, now) {
            continue;
        }
        let task = image.labels.get(TASK_LABEL).cloned().unwrap_or_default();
        match client.remove_image(&image.id).await {
            Ok(true) => {
                info!(target: LOG_TARGET, task, "removed an expired kept buildroot");
                removed += 1;
            }
            Ok(false) => warn!(target: LOG_TARGET, task, "an expired kept buildroot is in use"),
            Err(e) => {
                warn!(target: LOG_TARGET, task, "cannot remove an expired kept buildroot: {e}")
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(until: Option<&str>) -> ImageSummary {
        let mut labels = BTreeMap::new();
        if let Some(until) = until {
            labels.insert(UNTIL_LABEL.to_owned(), until.to_owned());
        }
        ImageSummary {
            id: "abc".into(),
            size: 1,
            created: 0,
            labels,
        }
    }

    #[test]
    fn a_kept_root_expires_at_its_time_or_when_its_time_is_unreadable() {
        assert!(!expired(&image(Some("1000")), 999));
        assert!(expired(&image(Some("1000")), 1000));
        assert!(expired(&image(Some("soon")), 0));
        assert!(expired(&image(None), 0));
    }
}
