//! Helpers for the users tests: a users service on its own nats-server and database, in this
//! process or as the real binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use courier_actors::service::DrainReport;
use courier_actors::{CallError, Client, Meta};
use courier_config::{DatabaseSettings, Secret};
use courier_testkit::{poll_blocking, ServiceThread, TestNats};
use courier_users::Settings;
use serde::{de::DeserializeOwned, Serialize};

/// A users service on a thread of its own (a [`ServiceThread`]) with its own nats-server.
pub struct InProcess {
    /// Dropped first (see `Drop`), so the service drains while its NATS server still runs.
    service: Option<ServiceThread<anyhow::Result<DrainReport>>>,
    pub nats: TestNats,
    pub client: async_nats::Client,
    pub courier: Client,
    pub id: String,
    /// A folder of the test's own to remove on drop (the SQLite file's).
    pub scratch: Option<PathBuf>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        drop(self.service.take());
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh SQLite file in the temp folder.
pub fn sqlite_file(test: &str) -> (PathBuf, DatabaseSettings) {
    let dir = std::env::temp_dir().join(format!("courier-users-{test}-{}", nuid::next()));
    let file = dir.join("users.db");
    let url = format!("sqlite://{}", file.display());
    (
        dir,
        DatabaseSettings {
            url: Secret::new(url),
            max_connections: 5,
            sqlite_synchronous: Default::default(),
        },
    )
}

pub async fn start(database: DatabaseSettings) -> InProcess {
    start_with(database, |_| {}).await
}

/// [`start`], with `configure` changing the settings last (`users.admin_emails`, say).
pub async fn start_with(
    database: DatabaseSettings,
    configure: impl FnOnce(&mut Settings),
) -> InProcess {
    let nats = TestNats::start();
    let mut settings = Settings::default();
    settings.nats.url = nats.url();
    settings.database = database;
    settings.users.hash_workers = 2;
    // No Consul in these tests: the service serves over NATS and says so once.
    settings.consul.register = false;
    configure(&mut settings);
    let (id, service) = ServiceThread::start(Duration::from_secs(20), |started, stop| {
        courier_users::run(
            settings,
            move |instance| started.send(instance.running.id().to_owned()),
            stop,
        )
    })
    .await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let courier = Client::new(client.clone(), Duration::from_secs(10));
    InProcess {
        service: Some(service),
        nats,
        client,
        courier,
        id,
        scratch: None,
    }
}

impl InProcess {
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &str,
        body: &Req,
    ) -> Result<Resp, CallError> {
        self.courier.call(subject, body, &Meta::root()).await
    }

    /// Sends JSON as the NATS CLI would, returns the reply's headers' error code and body.
    pub async fn json(&self, subject: &str, body: &str) -> (Option<u16>, serde_json::Value) {
        self.json_with(subject, body, &[]).await
    }

    /// [`Self::json`] as the gateway sends it for a signed-in user: `subject` is the user id,
    /// `roles` comma-separated (`Courier-Auth-Subject`, `Courier-Auth-Roles`).
    pub async fn json_as(
        &self,
        (subject, roles): (&str, &str),
        endpoint: &str,
        body: &str,
    ) -> (Option<u16>, serde_json::Value) {
        let headers = [
            ("Courier-Auth-Subject", subject),
            ("Courier-Auth-Roles", roles),
        ];
        self.json_with(endpoint, body, &headers).await
    }

    /// [`Self::json`] with these headers.
    pub async fn json_with(
        &self,
        subject: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (Option<u16>, serde_json::Value) {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        let reply = self
            .client
            .request_with_headers(subject.to_owned(), map, body.to_owned().into())
            .await
            .expect("a reply");
        let code = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .map(|v| v.as_str().parse().unwrap());
        (
            code,
            serde_json::from_slice(&reply.payload).expect("a JSON reply"),
        )
    }

    pub async fn stop(mut self) {
        let service = self.service.take().expect("only stop and drop take it");
        let report = service.stop().await.unwrap();
        assert!(report.complete && report.abandoned == 0, "{report:?}");
    }
}

/// The expected error code of a failed call.
pub fn code<T: std::fmt::Debug>(result: Result<T, CallError>) -> u16 {
    match result {
        Err(e) => e.code(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// The real `courier-users` binary, with the given environment on top of a clean one. Its
/// stderr goes to a file (a pipe nobody reads could fill and block it).
pub struct Binary {
    pub child: Child,
    log: PathBuf,
}

impl Binary {
    pub fn spawn(env: &[(&str, String)]) -> Self {
        let log = std::env::temp_dir().join(format!("courier-users-{}.log", nuid::next()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_courier-users"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            // Hermetic by default: tests that want Consul pass their agent's address and "true".
            .env("COURIER_CONSUL__REGISTER", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("spawn courier-users"),
            log,
        }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as an orchestrator would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit (at most `within`), returning the code and what it logged.
    pub fn wait(mut self, within: Duration) -> (Option<i32>, String) {
        let exited = poll_blocking(within, Duration::from_millis(20), || {
            self.child.try_wait().unwrap()
        });
        let Some(status) = exited else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "courier-users did not exit within {within:?}:\n{}",
                self.log()
            );
        };
        (status.code(), self.log())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Waits until a users instance answers `$SRV.PING.users`, returning its id.
pub async fn wait_for_users(client: &async_nats::Client) -> String {
    courier_testkit::eventually(
        Duration::from_secs(20),
        "users to answer $SRV.PING.users",
        || async {
            let reply = client
                .request("$SRV.PING.users", bytes::Bytes::new())
                .await
                .ok()?;
            let ping: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
            ping["id"].as_str().map(str::to_owned)
        },
    )
    .await
}
