//! Mail by SMTP, to a real SMTP server (aiosmtpd, installed by `ops/install.sh`) that keeps
//! each message in a maildir: the welcome goes to the address the event carries, an order's
//! news to the address the real users service has for its user; a mail the server never
//! takes leaves the notification stored and undelivered.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use courier_config::Secret;
use courier_contracts::notifications::NotificationKind;
use courier_contracts::orders::{OrderState, ORDER_CANCELLED};
use courier_contracts::users::{CreateUser, User};
use courier_runtime::testing::TestService;
use courier_store::testing::TestDatabase;
use courier_testkit::{eventually, free_port, poll_blocking, TestNats};

use common::*;

/// A real SMTP server on a free loopback port, writing every message it accepts to a
/// maildir; stopped on drop.
struct TestSmtp {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl TestSmtp {
    fn start(name: &str) -> Self {
        let program = courier_testkit::workspace_root().join(".tools/bin/aiosmtpd");
        assert!(
            program.exists(),
            "{} is missing: run ops/install.sh (it installs aiosmtpd from PyPI into .tools/py)",
            program.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "courier-notifications-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // The handler makes the maildir, not its parent.
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let log = std::fs::File::create(dir.join("aiosmtpd.log")).expect("a log file");
        let port = free_port();
        let child = Command::new(&program)
            .args(["-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.join("mail"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let listening = poll_blocking(Duration::from_secs(10), Duration::from_millis(50), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let mut smtp = Self { child, port, dir };
        if listening.is_none() {
            let log = read(&smtp.dir.join("aiosmtpd.log"));
            smtp.stop();
            panic!("aiosmtpd did not listen on 127.0.0.1:{port} within 10 s:\n{log}");
        }
        smtp
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages received so far, each as text.
    fn messages(&self) -> Vec<String> {
        let new = self.dir.join("mail/new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files.iter().map(|p| read(p)).collect()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A header's value in a raw message.
fn header<'m>(message: &'m str, name: &str) -> Option<&'m str> {
    let prefix = format!("{name}: ");
    message
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(prefix.as_str()))
}

fn smtp_at(url: String) -> impl FnOnce(&mut courier_notifications::Settings) + Send + 'static {
    move |s| {
        s.notifications.smtp_url = Some(Secret::new(url));
        s.notifications.from = "Courier <no-reply@courier.example>".into();
        s.notifications.smtp_timeout = Duration::from_secs(3);
    }
}

/// The users and notifications services on one NATS server (dropped last).
struct System {
    notifications: Running,
    users: Running,
    smtp: TestSmtp,
    nats: TestNats,
}

#[actix_rt::test]
async fn the_welcome_and_an_orders_news_are_mailed_to_the_users_address() {
    let nats = TestNats::start();
    let smtp = TestSmtp::start("mailed");
    let users = TestService::join(
        &nats.url(),
        TestDatabase::sqlite("mail-users"),
        |s: &mut courier_users::Settings| {
            s.users.hash_workers = 1;
            s.events = events();
        },
        |s, on, stop| courier_users::run(s, on, stop),
    )
    .await;
    let notifications = notifications(
        &nats.url(),
        TestDatabase::sqlite("mailed"),
        smtp_at(smtp.url()),
    )
    .await;
    let s = System {
        notifications,
        users,
        smtp,
        nats,
    };

    // The real users service publishes `events.users.created` through its outbox.
    let create = CreateUser {
        name: "Ada".into(),
        email: "ada@example.com".into(),
        password: "correct horse".into(),
    };
    let ada: User = s.users.send(&create).await.unwrap();
    let found = wait_for(&s.notifications, &ada.id, 1, |n| n.delivered).await;
    assert_eq!(found[0].kind, NotificationKind::Welcome);
    let mail = eventually(WITHIN, "the welcome mail", || async {
        s.smtp.messages().into_iter().next()
    })
    .await;
    assert_eq!(header(&mail, "To"), Some("ada@example.com"), "{mail}");
    assert_eq!(header(&mail, "X-RcptTo"), Some("ada@example.com"), "{mail}");
    assert_eq!(
        header(&mail, "Subject"),
        Some("Welcome to Courier"),
        "{mail}"
    );
    assert!(mail.contains("Hello Ada"), "{mail}");

    // The same event again, its id forgotten by the stream: handled before, so no second mail.
    let (raw, publisher) = publisher(&s.nats.url()).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    publish(&publisher, USER_CREATED, &found[0].event_id, json(&ada)).await;
    consumer_done(&raw, "notifications_welcome", 2).await;

    // An order event carries the user's id only: the address comes from the users service.
    let cancelled = order(
        "o-9",
        &ada.id,
        OrderState::Cancelled,
        Some("payment declined"),
    );
    publish(&publisher, ORDER_CANCELLED, "e-cancel", json(&cancelled)).await;
    let found = wait_for(&s.notifications, &ada.id, 2, |n| n.delivered).await;
    assert_eq!(found[1].kind, NotificationKind::OrderCancelled);
    let mails = s.smtp.messages();
    assert_eq!(mails.len(), 2, "one mail per notification, once: {mails:?}");
    assert_eq!(header(&mails[1], "To"), Some("ada@example.com"));
    assert_eq!(header(&mails[1], "Subject"), Some("Order o-9 cancelled"));
    assert!(mails[1].contains("payment declined"), "{}", mails[1]);

    let System {
        notifications,
        users,
        smtp,
        nats,
    } = s;
    notifications.remove().await;
    users.remove().await;
    drop((smtp, nats));
}

#[actix_rt::test]
async fn a_mail_the_server_never_takes_leaves_the_notification_stored_undelivered() {
    let nats = TestNats::start();
    // Nothing listens there.
    let nowhere = format!("smtp://127.0.0.1:{}", free_port());
    let t = notifications(
        &nats.url(),
        TestDatabase::sqlite("unsent"),
        smtp_at(nowhere),
    )
    .await;
    let (raw, publisher) = publisher(&nats.url()).await;
    let ada = user("u-ada", "Ada", "ada@example.com");
    publish(&publisher, USER_CREATED, "e-ada", json(&ada)).await;
    consumer_done(&raw, "notifications_welcome", 1).await;
    let found = list(&t, &ada.id).await;
    assert_eq!(found.len(), 1, "stored although the mail failed: {found:?}");
    assert!(!found[0].delivered);
    t.remove().await;
    drop(nats);
}
