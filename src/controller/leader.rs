//! Leader election on a `coordination.k8s.io/v1` Lease, with fencing.
//!
//! kube-lease-manager acquires and renews the Lease. On top of it this module fences the
//! leader: it watches the Lease and considers this replica the leader only while the Lease
//! names it as holder **and** its last renewal plus the lease duration, minus a safety
//! margin, lies in the future. A leader that cannot renew (API server unreachable, process
//! stalled) therefore stops acting by itself before any other replica may take the Lease
//! over — whatever the library's own view of the lock.

use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Where and how to elect a leader.
#[derive(Debug, Clone)]
pub struct Election {
    /// Namespace of the Lease (the operator's own namespace).
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease (`holderIdentity`); unique per process.
    pub identity: String,
    /// How long a lease is valid after its last renewal, in whole seconds (at least 3).
    pub duration_secs: u64,
}

impl Election {
    /// Seconds before expiry at which the holder renews: a third of the duration.
    fn grace_secs(&self) -> u64 {
        (self.duration_secs / 3).max(1)
    }

    /// How long before the lease's expiry this replica stops acting: half the grace, so a
    /// clock skew of up to that much between replicas never lets two act at once.
    fn margin(&self) -> SignedDuration {
        SignedDuration::from_millis(i64::try_from(self.grace_secs() * 500).unwrap_or(i64::MAX))
    }
}

/// Errors while setting up leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or created (missing RBAC on leases, or the namespace
    /// does not exist).
    #[error("cannot set up the leader-election lease: {0}")]
    Setup(#[from] LeaseManagerError),
}

/// A running election: `leader` is true while this replica holds a valid lease.
pub struct Leadership {
    /// True while this replica is the fenced leader.
    pub leader: watch::Receiver<bool>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Gives up leadership: stops acting, releases the Lease so that a standby takes over
    /// at once, and waits up to three seconds for the release.
    pub async fn release(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(3), self.task).await.is_err() {
            warn!("lease not released within 3 s; another replica takes over when it expires");
        }
    }
}

/// Starts leader election and returns at once; leadership is reported on
/// [`Leadership::leader`] (initially false).
///
/// Returns [`LeaderError::Setup`] if the Lease cannot be set up.
pub async fn elect(client: Client, election: Election) -> Result<Leadership, LeaderError> {
    let first = manager(&client, &election).await?;
    let (tx, leader) = watch::channel(false);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(campaign(client, election, first, tx, stopped));
    Ok(Leadership { leader, stop, task })
}

async fn manager(client: &Client, election: &Election) -> Result<LeaseManager, LeaseManagerError> {
    LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration_secs)
        .with_grace(election.grace_secs())
        .with_field_manager("jitrbac.io/leader-election")
        .build()
        .await
}

/// How a round of the campaign ended.
enum Round {
    /// Shutting down.
    Stop,
    /// Start a new lease manager (the old one's channel closed, or the Lease was released
    /// while this replica stood by: the library would sleep until the old expiry).
    Again,
}

/// Runs lease managers one after another and publishes "leader" = the library says so AND
/// our own last renewal is recent enough.
async fn campaign(
    client: Client,
    election: Election,
    first: LeaseManager,
    tx: watch::Sender<bool>,
    mut stopped: oneshot::Receiver<()>,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &election.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", election.lease_name));
    let mut lease_events = watcher(leases, config).default_backoff().boxed();
    // Whether the current (re-)list has shown the Lease: a Lease missing from a complete
    // list was deleted while the watch was down.
    let mut listed = false;
    let mut valid_until: Option<Timestamp> = None;
    let mut next = Some(first);
    loop {
        let manager = match next.take() {
            Some(m) => m,
            None => match manager(&client, &election).await {
                Ok(m) => m,
                Err(err) => {
                    warn!(error = %err, "cannot set up the lease manager; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let (mut lib, handle) = manager.watch().await;
        let round = loop {
            let now = Timestamp::now();
            let leader = *lib.borrow() && valid_until.is_some_and(|until| now < until);
            publish(&tx, leader, &election.identity);
            let expiry = async {
                match valid_until.filter(|_| leader) {
                    Some(until) => {
                        tokio::time::sleep(Duration::try_from(until.duration_since(now)).unwrap_or_default()).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stopped => break Round::Stop,
                changed = lib.changed() => if changed.is_err() {
                    break Round::Again;
                },
                event = lease_events.next() => match event {
                    Some(Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease))) => {
                        listed = true;
                        valid_until = held_until(&lease, &election);
                        let free = lease.spec.as_ref().is_none_or(|s| s.holder_identity.is_none());
                        if free && !*lib.borrow() {
                            break Round::Again;
                        }
                    }
                    Some(Ok(watcher::Event::Init)) => listed = false,
                    Some(Ok(watcher::Event::InitDone)) if listed => {}
                    // Deleted (e.g. by hand): the lease manager would never recreate it and
                    // no replica would lead again. A new one creates it and campaigns.
                    Some(Ok(watcher::Event::Delete(_) | watcher::Event::InitDone)) => {
                        warn!(lease = %election.lease_name, "the leader lease was deleted; recreating it");
                        valid_until = None;
                        break Round::Again;
                    }
                    Some(Err(err)) => warn!(error = %err, "watching the leader lease failed; retrying"),
                    None => break Round::Stop,
                },
                () = expiry => warn!(identity = %election.identity, "lease not renewed in time; stepping down"),
            }
        };
        publish(&tx, false, &election.identity);
        // With its channel closed, the lease manager releases the Lease if it holds it.
        drop(lib);
        let _ = tokio::time::timeout(Duration::from_secs(2), handle).await;
        if matches!(round, Round::Stop) {
            return;
        }
    }
}

fn publish(tx: &watch::Sender<bool>, leader: bool, identity: &str) {
    tx.send_if_modified(|current| {
        if *current != leader {
            info!(identity, leader, "leadership changed");
            *current = leader;
            true
        } else {
            false
        }
    });
}

/// Until when `lease` lets this replica act: its last renewal plus the lease duration,
/// minus the safety margin — or `None` if it names another holder or no renewal.
fn held_until(lease: &Lease, election: &Election) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(election.identity.as_str()) {
        return None;
    }
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds?));
    Some(renewed + duration - election.margin())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;

    fn election() -> Election {
        Election {
            namespace: "ns".into(),
            lease_name: "jitrbac".into(),
            identity: "me".into(),
            duration_secs: 15,
        }
    }

    fn lease(holder: &str, renewed: &str) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed.parse().expect("valid"))),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_held_lease_is_valid_until_renewal_plus_duration_minus_the_margin() {
        let until = held_until(&lease("me", "2026-11-29T12:00:00Z"), &election());
        // grace = 15/3 = 5 s; margin = 2.5 s.
        assert_eq!(until, Some("2026-11-29T12:00:12.5Z".parse().expect("valid")));
    }

    #[test]
    fn a_lease_held_by_another_replica_gives_no_validity() {
        assert_eq!(held_until(&lease("other", "2026-11-29T12:00:00Z"), &election()), None);
        assert_eq!(held_until(&Lease::default(), &election()), None);
    }
}
