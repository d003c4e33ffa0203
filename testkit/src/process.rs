//! A Courier binary run by a test as an operator would run it: environment in, stderr to a
//! log file, SIGTERM or SIGKILL out.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running binary, killed (SIGKILL) and reaped on drop.
pub struct Process {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Process {
    /// Starts `binary` with a clean environment plus `PATH`, `RUST_LOG=info`, Consul
    /// registration off, and `env`.
    pub fn spawn(binary: &std::path::Path, env: &[(&str, String)]) -> Self {
        let name = binary
            .file_name()
            .map_or("binary".into(), |n| n.to_string_lossy().into_owned());
        let log = std::env::temp_dir().join(format!(
            "{name}-{}-{}.log",
            std::process::id(),
            crate::free_port()
        ));
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("COURIER_CONSUL__REGISTER", "false")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        Self { child, log, name }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log shows `text` (at most `within`); panics with the log otherwise.
    pub fn wait_for_log(&mut self, text: &str, within: Duration) {
        let found = crate::poll_blocking(within, Duration::from_millis(10), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {text:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            self.log().contains(text).then_some(())
        });
        if found.is_none() {
            panic!(
                "{} did not log {text:?} within {within:?}:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// SIGKILL: the process ends where it stands, as in a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The debug build of a workspace binary (`courier-payments`), built first when missing (a
/// test of one crate that runs another crate's binary).
pub fn workspace_binary(name: &str) -> PathBuf {
    workspace_binaries(&[name]).remove(0)
}

/// The debug builds of workspace binaries, built in one cargo run where missing or stale.
pub fn workspace_binaries(names: &[&str]) -> Vec<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // Without the variables cargo sets for this test's own crate: build scripts that watch
    // them (ring's watches CARGO_MANIFEST_DIR) would otherwise see them change between this
    // build and a plain `cargo build`, and rebuild half the workspace each time.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_test) {
            build.env_remove(key);
        }
    }
    build
        .args(["build", "--quiet", "--locked"])
        .current_dir(crate::workspace_root());
    for name in names {
        build.args(["--bin", name]);
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("cargo build {names:?}: {e}"));
    assert!(status.success(), "cargo build {names:?} failed");
    names
        .iter()
        .map(|name| target.join("debug").join(name))
        .collect()
}

/// Whether `cargo test` sets the variable `key` for the test it runs (as opposed to the
/// user's own `CARGO_*` settings, such as `CARGO_TARGET_DIR`, which a build must keep).
fn set_by_cargo_test(key: &str) -> bool {
    const EXACT: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&key)
        || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || key.starts_with("CARGO_BIN_EXE_")
}
