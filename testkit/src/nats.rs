use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Test passwords for the users of the shipped `ops/nats/authorization.conf` (letters and
/// digits, starting with a letter, as the file asks), as the variables it reads.
pub const OPS_PASSWORDS: [(&str, &str); 4] = [
    ("COURIER_NATS_ADMIN_PASSWORD", "adminPw1"),
    ("COURIER_NATS_SERVICE_PASSWORD", "servicePw1"),
    ("COURIER_NATS_GATEWAY_PASSWORD", "gatewayPw1"),
    ("COURIER_NATS_GUEST_PASSWORD", "guestPw1"),
];

/// The shipped server configuration with users and permissions, `ops/nats/nats-server.conf`.
pub fn ops_config() -> PathBuf {
    crate::workspace_root().join("ops/nats/nats-server.conf")
}

/// The test password of an `ops/nats` user (`admin`, `service`, `gateway`, `guest`).
pub fn ops_password(user: &str) -> &'static str {
    let var = format!("COURIER_NATS_{}_PASSWORD", user.to_ascii_uppercase());
    OPS_PASSWORDS
        .iter()
        .find(|(name, _)| *name == var)
        .map(|(_, password)| *password)
        .unwrap_or_else(|| panic!("no test password for {user}"))
}

/// A real `nats-server` with JetStream on a free loopback port, owned by the test: killed and
/// reaped on drop, its files removed.
pub struct TestNats {
    child: Child,
    port: u16,
    log: PathBuf,
    /// JetStream's folder, when the test did not name one.
    store: PathBuf,
}

/// How long a fresh `nats-server` may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl TestNats {
    /// Starts a server, retrying on another port if the chosen one was taken meanwhile.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra arguments (such as `--max_payload`).
    pub fn start_with_args(extra: &[&str]) -> Self {
        Self::start_with_env_and_args(&[], extra)
    }

    /// Starts a server with extra arguments and environment variables: a configuration file
    /// (`-c path`) that reads its passwords from the environment, as `ops/nats/` does. The
    /// guard's address, port and name flags win over the file's `listen`.
    pub fn start_with_env_and_args(env: &[(&str, &str)], extra: &[&str]) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start_with_env(crate::free_port(), env, extra) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start nats-server: {last_error}");
    }

    /// Starts a server running the shipped configuration ([`ops_config`]) with the test
    /// passwords ([`OPS_PASSWORDS`]), its JetStream data in `store`.
    pub fn start_with_ops_config(store: &Path) -> Self {
        let config = ops_config();
        let args = [
            "-c",
            config.to_str().expect("a UTF-8 path"),
            "-sd",
            store.to_str().expect("a UTF-8 path"),
        ];
        Self::start_with_env_and_args(&OPS_PASSWORDS, &args)
    }

    /// Starts a server on a given port (to restart one on the port its clients know).
    pub fn start_on(port: u16) -> Self {
        Self::try_start(port, &[])
            .unwrap_or_else(|e| panic!("could not start nats-server on {port}: {e}"))
    }

    fn try_start(port: u16, extra: &[&str]) -> Result<Self, String> {
        Self::try_start_with_env(port, &[], extra)
    }

    fn try_start_with_env(port: u16, env: &[(&str, &str)], extra: &[&str]) -> Result<Self, String> {
        let binary = crate::tool("nats-server");
        let name = format!("courier-test-{port}-{}", std::process::id());
        let log = std::env::temp_dir().join(format!("{name}.log"));
        // JetStream is always on (every service keeps its events in a stream), its data in a
        // folder of the test's own unless the caller names one; a server restarted on the
        // same port by the same test finds its streams again.
        let store = std::env::temp_dir().join(format!("{name}-js"));
        let store_args = if extra.contains(&"-sd") {
            vec![]
        } else {
            vec!["-sd".to_owned(), store.display().to_string()]
        };
        let mut child = Command::new(&binary)
            .envs(env.iter().copied())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-n",
                &name,
                "-l",
            ])
            .arg(&log)
            .arg("-js")
            .args(&store_args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = std::fs::remove_file(&log);
                return Err(format!("exited with {status}: {tail}"));
            }
            if greets(port, &name) {
                return Ok(Self {
                    child,
                    port,
                    log,
                    store,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no INFO on port {port} within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server now (for tests of a broker going away).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the NATS server named `name` greets on `port`.
fn greets(port: u16, name: &str) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    // Our own server, not another test's that took the port between our check and our start.
    BufReader::new(stream).read_line(&mut line).is_ok()
        && line.starts_with("INFO")
        && line.contains(&format!("\"server_name\":\"{name}\""))
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
