//! Learning routes live: which services exist (Consul's catalog, tag `courier`), which of their
//! instances are healthy (a [`Resolver`] each), and which routes each version declares (its
//! `$SRV.INFO`, asked of one instance of that version over NATS).
//!
//! Everything a request needs is in one immutable [`Snapshot`], replaced whole on every change,
//! so the request path takes one read lock and clones one `Arc`. A service whose instances all
//! left keeps its routes: a call then gets 503, not 404.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use courier_actors::micro::{InfoResponse, Verb};
use courier_actors::{Client, Meta, Route};
use courier_discovery::{Consul, Discovery, Instance, Resolver};
use tokio::sync::{broadcast, watch};

use crate::routes::{RouteEntry, Table};

/// Tag of the services the gateway routes to.
pub const SERVICE_TAG: &str = "courier";
/// Tag of gateways, which are not routed to.
pub const GATEWAY_TAG: &str = "gateway";
/// How long a blocking query of the catalog waits for a change.
const CATALOG_WAIT: Duration = Duration::from_secs(30);
/// Pause after a failed catalog query, or between retries of a failed `$SRV.INFO`.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How long one `$SRV.INFO` may take.
const INFO_TIMEOUT: Duration = Duration::from_secs(2);

/// What a request needs: the route table and each service's instances.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every route.
    pub table: Table,
    /// Each known service's instances, by name.
    pub services: HashMap<String, Discovery>,
    /// The version whose routes are served, by service.
    pub versions: BTreeMap<String, String>,
}

/// The gateway's live knowledge of services. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

struct Inner {
    /// Routes from the gateway's settings: they come first, so they win a conflict.
    statics: Vec<RouteEntry>,
    snapshot: RwLock<Arc<Snapshot>>,
    known: Mutex<BTreeMap<String, Known>>,
    catalog_answered: AtomicBool,
    stop: watch::Sender<bool>,
}

/// One service: its instances, and the routes of each version seen.
struct Known {
    discovery: Discovery,
    routes: BTreeMap<VersionKey, Vec<RouteEntry>>,
}

impl Directory {
    /// Starts watching Consul for services, learning their routes over `nats` (a JSON client).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn watch(consul: Consul, nats: Client, statics: Vec<RouteEntry>) -> Self {
        let directory = Self::with_statics(statics);
        tokio::spawn(watch_catalog(directory.clone(), consul, nats));
        directory
    }

    fn with_statics(statics: Vec<RouteEntry>) -> Self {
        let directory = Self {
            inner: Arc::new(Inner {
                statics,
                snapshot: RwLock::default(),
                known: Mutex::default(),
                catalog_answered: AtomicBool::new(false),
                stop: watch::Sender::new(false),
            }),
        };
        directory.rebuild();
        directory
    }

    /// What requests are served from now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .inner
                .snapshot
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Whether Consul's catalog has answered at least once.
    pub fn catalog_answered(&self) -> bool {
        self.inner.catalog_answered.load(Ordering::Acquire)
    }

    /// Ends the watch tasks.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Known>> {
        self.inner
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Rebuilds the snapshot: per service, the routes of the highest version that has healthy
    /// instances, or of the highest version seen when none has.
    fn rebuild(&self) {
        let known = self.known();
        let mut routes = BTreeMap::new();
        let mut versions = BTreeMap::new();
        for (name, service) in known.iter() {
            let live: HashSet<VersionKey> = service
                .discovery
                .instances()
                .iter()
                .map(|i| VersionKey::parse(i.meta.get("version").map_or("", String::as_str)))
                .collect();
            let served = service.routes.iter().rev();
            let chosen = served
                .clone()
                .find(|(v, _)| live.contains(v))
                .or(served.clone().next());
            if let Some((version, entries)) = chosen {
                versions.insert(name.clone(), version.text.clone());
                routes.insert(name.clone(), entries.clone());
            }
        }
        let table = Table::build_from(self.inner.statics.iter().chain(routes.values().flatten()));
        for conflict in table.conflicts() {
            tracing::warn!(route = %conflict.route, kept = %conflict.kept, ignored = %conflict.ignored,
                "Two services declare the same route; the first keeps it.");
        }
        let services = known.iter().map(|(n, k)| (n.clone(), k.discovery.clone()));
        let snapshot = Snapshot {
            table,
            services: services.collect(),
            versions,
        };
        drop(known);
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }

    /// Starts following `name` if it is new.
    fn follow(&self, consul: &Consul, nats: &Client, name: &str) {
        let mut known = self.known();
        if known.contains_key(name) {
            return;
        }
        let resolver = Resolver::watch(consul.clone(), name);
        known.insert(
            name.to_owned(),
            Known {
                discovery: Discovery::Consul(resolver.clone()),
                routes: BTreeMap::new(),
            },
        );
        drop(known);
        tracing::info!(service = name, "Following a new service.");
        tokio::spawn(follow_service(self.clone(), resolver, nats.clone()));
    }

    /// Asks one instance of each version not yet known for its routes; `false` if one failed.
    async fn learn_versions(&self, resolver: &Resolver, nats: &Client) -> bool {
        let mut all_learned = true;
        let mut asked = HashSet::new();
        for instance in resolver.instances() {
            let version =
                VersionKey::parse(instance.meta.get("version").map_or("", String::as_str));
            let learned = self
                .known()
                .get(resolver.service())
                .is_some_and(|k| k.routes.contains_key(&version));
            if learned || !asked.insert(version.clone()) {
                continue;
            }
            match routes_of(&instance, nats).await {
                Ok(routes) => {
                    tracing::info!(service = %instance.name, version = %version.text,
                        routes = routes.len(), "Learned the routes of a service version.");
                    if let Some(known) = self.known().get_mut(resolver.service()) {
                        known.routes.insert(version, routes);
                    }
                }
                Err(error) => {
                    tracing::warn!(service = %instance.name, instance = %instance.id, %error,
                        "Could not learn routes; will ask again.");
                    all_learned = false;
                }
            }
        }
        all_learned
    }
}

/// Follows the catalog until stopped: every service tagged `courier` (and not `gateway`).
async fn watch_catalog(directory: Directory, consul: Consul, nats: Client) {
    let mut stop = directory.inner.stop.subscribe();
    let mut index = None;
    let mut failing = false;
    loop {
        let answer = tokio::select! {
            answer = consul.services(index, CATALOG_WAIT) => answer,
            _ = stop.wait_for(|s| *s) => return,
        };
        let pause = match answer {
            Ok((new_index, services)) => {
                if failing {
                    tracing::info!("Consul's catalog answers again.");
                }
                failing = false;
                directory
                    .inner
                    .catalog_answered
                    .store(true, Ordering::Release);
                // An index that went backwards (a restarted agent) starts over.
                index = Some(new_index.max(1)).filter(|i| index.is_none_or(|old| *i >= old));
                for (name, tags) in services {
                    let tagged = |t: &str| tags.iter().any(|tag| tag == t);
                    if tagged(SERVICE_TAG) && !tagged(GATEWAY_TAG) {
                        directory.follow(&consul, &nats, &name);
                    }
                }
                Duration::from_millis(100)
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "Consul's catalog does not answer; routing from what is known.");
                }
                failing = true;
                index = None;
                RETRY_PAUSE
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Follows one service's instances: learns each new version's routes, rebuilds on changes.
async fn follow_service(directory: Directory, resolver: Resolver, nats: Client) {
    let mut updates = resolver.updates();
    let mut stop = directory.inner.stop.subscribe();
    loop {
        let complete = directory.learn_versions(&resolver, &nats).await;
        directory.rebuild();
        let retry = async {
            if complete {
                futures::future::pending::<()>().await;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        };
        tokio::select! {
            update = updates.recv() => {
                if matches!(update, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
            () = retry => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The routes an instance's `$SRV.INFO` declares. A route that does not parse is logged and
/// left out; the rest are served.
async fn routes_of(instance: &Instance, nats: &Client) -> Result<Vec<RouteEntry>, String> {
    let [_, _, subject] = Verb::Info.subjects(&instance.name, &instance.id);
    let meta = Meta::root().with_timeout(INFO_TIMEOUT);
    let info: InfoResponse = nats
        .call(&subject, &(), &meta)
        .await
        .map_err(|e| e.to_string())?;
    let mut routes = Vec::new();
    for endpoint in info.endpoints {
        match Route::from_metadata(&endpoint.metadata) {
            None => {}
            Some(Ok(route)) => routes.push(RouteEntry {
                route,
                service: info.identity.name.clone(),
                endpoint: endpoint.name,
                subject: endpoint.subject,
                direct: false,
            }),
            Some(Err(error)) => {
                tracing::warn!(service = %info.identity.name, endpoint = %endpoint.name, %error,
                    "An endpoint declares a route the gateway cannot serve; left out.");
            }
        }
    }
    Ok(routes)
}

/// A version that sorts as semver does for `major.minor.patch` (a pre-release before its
/// release); anything else sorts by its text, below every semver.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct VersionKey {
    numbers: Option<(u64, u64, u64)>,
    release: bool,
    text: String,
}

impl VersionKey {
    fn parse(text: &str) -> Self {
        let core = text.split('+').next().unwrap_or_default();
        let (core, pre) = match core.split_once('-') {
            Some((core, _)) => (core, true),
            None => (core, false),
        };
        let mut parts = core.split('.').map(str::parse::<u64>);
        let numbers = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Some((a, b, c)),
            _ => None,
        };
        Self {
            numbers,
            release: !pre,
            text: text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::VersionKey;

    #[test]
    fn versions_sort_as_semver() {
        let mut versions: Vec<VersionKey> = ["0.10.0", "0.9.1", "1.0.0-rc.1", "1.0.0", "junk"]
            .into_iter()
            .map(VersionKey::parse)
            .collect();
        versions.sort();
        let texts: Vec<&str> = versions.iter().map(|v| v.text.as_str()).collect();
        assert_eq!(texts, ["junk", "0.9.1", "0.10.0", "1.0.0-rc.1", "1.0.0"]);
    }
}
