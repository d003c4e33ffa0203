//! [`TestConsul`]: a real `consul agent -dev` of the test's own, on free loopback ports.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a fresh dev agent may take to elect itself (and bootstrap ACLs): ~0.2 s usually.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often start-up polls the agent.
const POLL: Duration = Duration::from_millis(25);
/// How long a restart waits before trying again, while the old sockets free up.
const RESTART_PAUSE: Duration = Duration::from_millis(200);
/// Tells the temp dirs of the guards of one test process apart.
static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A real `consul agent -dev` owned by the test: killed, reaped and its temp dir removed on drop.
///
/// Its HTTP API, Serf LAN and server RPC listen on free loopback ports; DNS, gRPC and Serf WAN
/// are switched off (`-1`), so parallel tests never fight over a fixed port. The data dir lives
/// in a temp dir, so [`TestConsul::restart`] brings back the services registered through the
/// agent API (the dev agent's Raft store is in memory: catalog indexes start again from 1).
pub struct TestConsul {
    child: Option<Child>,
    http_port: u16,
    dir: PathBuf,
    acl_token: Option<String>,
}

impl TestConsul {
    /// Starts a dev agent without ACLs and waits until it has elected itself leader.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a dev agent with ACLs on, `default_policy = "deny"`, and `master_token` as the
    /// management token (Consul 1.8 spells it `tokens { master = .. }`; 1.11+ renamed it
    /// `initial_management`). Use a UUID: 1.8.7 warns that other master tokens are deprecated.
    pub fn start_with_acl(master_token: &str) -> Self {
        Self::start_inner(Some(master_token.to_owned()))
    }

    fn start_inner(acl_token: Option<String>) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = temp_dir();
            let mut consul = Self {
                child: None,
                http_port: 0,
                dir,
                acl_token: acl_token.clone(),
            };
            let [http, serf_lan, server] = distinct_free_ports();
            consul.http_port = http;
            consul.write_config(http, serf_lan, server);
            match consul.launch() {
                Ok(()) => return consul,
                Err(e) => last_error = e, // most likely a port taken meanwhile: new ports
            }
        }
        panic!("could not start consul: {last_error}");
    }

    /// Writes `config.hcl`: every port on loopback or off (`-1`), and ACLs when asked for.
    fn write_config(&self, http: u16, serf_lan: u16, server: u16) {
        let node = self.node_name();
        let mut hcl = format!(
            r#"node_name = "{node}"
disable_update_check = true
ports {{
  http = {http}
  serf_lan = {serf_lan}
  server = {server}
  dns = -1
  grpc = -1
  serf_wan = -1
}}
"#
        );
        if let Some(token) = &self.acl_token {
            // The agent token lets the agent sync its node and services under `deny`.
            hcl.push_str(&format!(
                r#"acl {{
  enabled = true
  default_policy = "deny"
  tokens {{
    master = "{token}"
    agent = "{token}"
  }}
}}
"#
            ));
        }
        std::fs::create_dir_all(self.dir.join("data")).expect("create the temp dir of consul");
        std::fs::write(self.dir.join("config.hcl"), hcl).expect("write consul's config");
    }

    /// Spawns the agent with the config in the temp dir and waits until it is ready.
    fn launch(&mut self) -> Result<(), String> {
        let binary = crate::tool("consul");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("consul.log"))
            .map_err(|e| format!("open consul.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&binary)
            .args([
                "agent",
                "-dev",
                "-bind",
                "127.0.0.1",
                "-client",
                "127.0.0.1",
            ])
            .arg("-data-dir")
            .arg(self.dir.join("data"))
            .arg("-config-file")
            .arg(self.dir.join("config.hcl"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        self.child = Some(child);
        let ready = self.wait_ready();
        if ready.is_err() {
            self.stop();
        }
        ready
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let ready = crate::poll_blocking(START_TIMEOUT, POLL, || {
            let child = self.child.as_mut().expect("launch spawned the agent");
            match child.try_wait() {
                Err(e) => Some(Err(e.to_string())),
                Ok(Some(status)) => Some(Err(format!(
                    "consul exited with {status}: {}",
                    self.log_tail()
                ))),
                Ok(None) => self.ready().then_some(Ok(())),
            }
        });
        ready.unwrap_or_else(|| {
            Err(format!(
                "not ready within {START_TIMEOUT:?}: {}",
                self.log_tail()
            ))
        })
    }

    /// A leader is elected and has put this node, with a passing `serfHealth` check, in the
    /// catalog: from then on the agent syncs registrations at once, and the start-up churn of
    /// catalog indexes is over. With ACLs, the read also proves the master token works.
    fn ready(&self) -> bool {
        let leader = get(self.http_port, "/v1/status/leader", None);
        if !matches!(leader, Some((200, body)) if body.trim().len() > 2) {
            return false;
        }
        let path = format!("/v1/health/node/{}", self.node_name());
        let Some((200, body)) = get(self.http_port, &path, self.acl_token.as_deref()) else {
            return false;
        };
        let checks: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let checks = checks.as_array().map(Vec::as_slice).unwrap_or_default();
        checks
            .iter()
            .any(|check| check["CheckID"] == "serfHealth" && check["Status"] == "passing")
    }

    /// The agent's node name, `courier-test-<http port>`.
    pub fn node_name(&self) -> String {
        format!("courier-test-{}", self.http_port)
    }

    /// `http://127.0.0.1:<http port>`, what `CONSUL_HTTP_ADDR` would be.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The HTTP API's port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The management token given to [`TestConsul::start_with_acl`].
    pub fn acl_token(&self) -> Option<&str> {
        self.acl_token.as_deref()
    }

    /// The agent's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("consul.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or(&log).to_owned()
    }

    /// Kills the agent now (for tests of Consul going away); [`TestConsul::restart`] revives it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again on the same ports and data dir, so clients keep their address.
    /// Retries for a while in case the old sockets are slow to free up.
    pub fn restart(&mut self) {
        self.stop();
        let mut last_error = String::new();
        let restarted = crate::poll_blocking(START_TIMEOUT, RESTART_PAUSE, || {
            self.launch().map_err(|e| last_error = e).ok()
        });
        if restarted.is_none() {
            panic!("could not restart consul: {last_error}");
        }
    }
}

impl Drop for TestConsul {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh, empty temp dir for one guard.
fn temp_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("courier-test-consul-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // left over from a crashed run with the same pid
    dir
}

/// Three ports that were free a moment ago, all different.
fn distinct_free_ports() -> [u16; 3] {
    let mut ports = BTreeSet::new();
    while ports.len() < 3 {
        ports.insert(crate::free_port());
    }
    let ports: Vec<u16> = ports.into_iter().collect();
    [ports[0], ports[1], ports[2]]
}

/// `GET path` from the agent on loopback, with the token if any: `(status, body)`, or `None`
/// when nothing answers properly within 2 s.
fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let token: Vec<(&str, &str)> = token.map(|t| ("X-Consul-Token", t)).into_iter().collect();
    crate::http_get(("127.0.0.1", port), path, &token, Duration::from_secs(2)).ok()
}
