//! [`TestCluster`]: three `nats-server` nodes of the test's own, routed into one cluster on
//! loopback, each with JetStream in a store of its own, so streams can keep three replicas.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

/// How long a fresh cluster may take to route and elect a JetStream meta leader (~0.4 s
/// usually), and a restarted node to catch up.
const FORM_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERMed node may take to shut down before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often start-up, restart and stop poll.
const POLL: Duration = Duration::from_millis(25);
/// Tells the clusters of one test process apart (folders, server and cluster names).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Three routed `nats-server` nodes with JetStream, owned by the test: every node killed and
/// reaped on drop, the folder with their configurations, stores and logs removed.
///
/// Each node listens for clients, routes and monitoring (`/healthz`, `/connz`, `/jsz`) on free
/// loopback ports, and names itself `<cluster>-n<index>`: the name a stream's
/// `cluster.leader` shows. A client given one node's URL learns the others from its INFO
/// (the cluster is formed before [`TestCluster::start`] returns), so it reconnects to a
/// survivor when its node goes.
pub struct TestCluster {
    name: String,
    dir: PathBuf,
    nodes: Vec<Node>,
}

struct Node {
    name: String,
    client: u16,
    route: u16,
    monitor: u16,
    child: Option<Child>,
}

impl TestCluster {
    /// How many nodes a cluster has.
    pub const SIZE: usize = 3;

    /// Starts three nodes and waits until every one routes to the other two and JetStream has
    /// a meta leader. Retries on other ports if one was taken meanwhile.
    pub fn start() -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut cluster = Self::on_free_ports();
            match cluster.launch_all() {
                Ok(()) => return cluster,
                // Most likely a port taken meanwhile: drop (kill, clean) and take new ones.
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a nats-server cluster: {last_error}");
    }

    fn on_free_ports() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("courier-test-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir); // left over from a crashed run with the same pid
        let mut ports = distinct_free_ports(3 * Self::SIZE).into_iter();
        let mut port = || ports.next().expect("three ports per node");
        let nodes = (0..Self::SIZE)
            .map(|i| Node {
                name: format!("{name}-n{i}"),
                client: port(),
                route: port(),
                monitor: port(),
                child: None,
            })
            .collect();
        Self { name, dir, nodes }
    }

    fn launch_all(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("create the cluster's dir: {e}"))?;
        for node in 0..Self::SIZE {
            self.write_config(node)?;
            self.launch(node)?;
        }
        self.wait_formed()
    }

    /// `n<i>.conf`: the node's ports, its JetStream store, and routes to the other nodes.
    fn write_config(&self, node: usize) -> Result<(), String> {
        let me = &self.nodes[node];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .filter(|other| other.name != me.name)
            .map(|other| format!("\"nats-route://127.0.0.1:{}\"", other.route))
            .collect();
        let store = self.dir.join(format!("n{node}-js"));
        let config = format!(
            r#"server_name: "{name}"
listen: "127.0.0.1:{client}"
http: "127.0.0.1:{monitor}"
jetstream {{
  store_dir: "{store}"
  max_memory_store: 256MB
  max_file_store: 1GB
}}
cluster {{
  name: "{cluster}"
  listen: "127.0.0.1:{route}"
  routes: [{routes}]
}}
"#,
            name = me.name,
            client = me.client,
            monitor = me.monitor,
            store = store.display(),
            cluster = self.name,
            route = me.route,
            routes = routes.join(", "),
        );
        std::fs::write(self.config_path(node), config)
            .map_err(|e| format!("write n{node}.conf: {e}"))
    }

    fn config_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("n{node}.conf"))
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("n{node}.log"))
    }

    fn launch(&mut self, node: usize) -> Result<(), String> {
        let binary = crate::tool("nats-server");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(self.config_path(node))
            .arg("-l")
            .arg(self.log_path(node))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        self.nodes[node].child = Some(child);
        Ok(())
    }

    /// Waits until every running node is up (ours, not another test's on the port), routes to
    /// every other running node, and answers `/healthz` ok: JetStream has a meta leader and
    /// the node's streams and consumers are current.
    fn wait_formed(&mut self) -> Result<(), String> {
        let formed = crate::poll_blocking(FORM_TIMEOUT, POLL, || {
            for node in 0..Self::SIZE {
                if let Err(e) = self.exited(node) {
                    return Some(Err(e));
                }
            }
            self.formed().then_some(Ok(()))
        });
        formed.unwrap_or_else(|| {
            Err(format!(
                "not formed within {FORM_TIMEOUT:?}:\n{}",
                self.logs_tail()
            ))
        })
    }

    /// An error when a node that should run has exited.
    fn exited(&mut self, node: usize) -> Result<(), String> {
        let Some(child) = self.nodes[node].child.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "node {node} exited with {status}: {}",
                tail(&self.log(node))
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn formed(&self) -> bool {
        let running: Vec<usize> = (0..Self::SIZE).filter(|&n| self.is_running(n)).collect();
        running.iter().all(|&node| {
            let ours = self
                .monitor(node, "/varz")
                .is_ok_and(|varz| varz["server_name"] == self.nodes[node].name.as_str());
            let routes = self
                .monitor(node, "/routez")
                .is_ok_and(|routez| routez["num_routes"] == running.len() - 1);
            let healthy = self
                .monitor(node, "/healthz")
                .is_ok_and(|health| health["status"] == "ok");
            ours && routes && healthy
        })
    }

    /// `nats://127.0.0.1:<client port>` of `node` (0, 1 or 2).
    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].client)
    }

    /// Every node's URL, comma separated (what `NATS_URL` takes). Clients shuffle such a list
    /// before connecting: give one node's [`TestCluster::url`] to pin where a client starts.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = (0..Self::SIZE).map(|n| self.url(n)).collect();
        urls.join(",")
    }

    /// The server name of `node`: what `/connz`, `/jsz` and a stream's `cluster.leader` show.
    pub fn node_name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// Whether `node` runs: not stopped or killed through the guard since it last started.
    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    /// A monitoring endpoint of `node` (`/healthz`, `/connz`, `/jsz`, `/routez`, `/varz`) as
    /// JSON, or why not.
    pub fn monitor(&self, node: usize, path: &str) -> Result<Value, String> {
        let port = self.nodes[node].monitor;
        let (_, body) = crate::http_get(("127.0.0.1", port), path, &[], Duration::from_secs(2))
            .map_err(|e| format!("GET {path} from node {node}: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("GET {path} from node {node}: {e}"))
    }

    /// The names of the clients connected to `node` now (`/connz`), sorted; unnamed ones as
    /// `""`.
    pub fn client_names(&self, node: usize) -> Result<Vec<String>, String> {
        let connz = self.monitor(node, "/connz?limit=10000")?;
        let mut names: Vec<String> = connz["connections"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// SIGTERM to `node`, as an orchestrator stops a server: it shuts down in order (its
    /// JetStream leaders hand over, routes and clients are closed). Returns once the process
    /// has exited (killed after [`STOP_TIMEOUT`]).
    pub fn stop(&mut self, node: usize) {
        let Some(mut child) = self.nodes[node].child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = sent.is_ok_and(|s| s.success())
            && crate::poll_blocking(STOP_TIMEOUT, POLL, || child.try_wait().ok().flatten())
                .is_some();
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// SIGKILL to `node`: it ends where it stands, as in a crash or a lost machine. Returns
    /// once the process is reaped.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped or killed `node` again on its ports and store, and waits until the
    /// cluster is whole again and the node has caught up (`/healthz` ok on every node).
    pub fn restart(&mut self, node: usize) {
        self.kill(node);
        let mut last_error = String::new();
        // The old route and client sockets may take a moment to free up.
        let restarted = crate::poll_blocking(FORM_TIMEOUT, Duration::from_millis(200), || {
            let launched = self.launch(node).and_then(|()| self.wait_formed());
            match launched {
                Ok(()) => Some(()),
                Err(e) => {
                    last_error = e;
                    self.kill(node);
                    None
                }
            }
        });
        if restarted.is_none() {
            panic!("could not restart node {node}: {last_error}");
        }
    }

    /// The log of `node` so far, for a failing test's message.
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    fn logs_tail(&self) -> String {
        (0..Self::SIZE)
            .map(|n| format!("--- node {n} ---\n{}", tail(&self.log(n))))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in 0..Self::SIZE {
            self.kill(node);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last 2000 bytes of `log` (at a character boundary).
fn tail(log: &str) -> &str {
    let mut start = log.len().saturating_sub(2000);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

/// `n` ports that were free a moment ago, all different.
fn distinct_free_ports(n: usize) -> Vec<u16> {
    let mut ports = BTreeSet::new();
    while ports.len() < n {
        ports.insert(crate::free_port());
    }
    ports.into_iter().collect()
}
