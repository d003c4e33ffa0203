//! The kit's database on SQLite and on PostgreSQL: reads, idempotent writes, the outbox and
//! its relay, handled events. Each test runs on both (PostgreSQL skipped with a note when no
//! server answers, unless `COURIER_REQUIRE_POSTGRES` is set).

use std::sync::{Arc, Mutex};

use courier_actors::Meta;
use courier_store::testing::TestDatabase;
use courier_store::{
    Claim, Database, Fingerprint, FromRow, Migration, Param, PendingEvent, Relay, Row, StoreError,
    WriteKey,
};
use serde_json::json;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "create things",
    sql: "CREATE TABLE things (id TEXT PRIMARY KEY, name TEXT, stock BIGINT NOT NULL)",
    sqlite_only: false,
}];

#[derive(Debug, PartialEq)]
struct Thing {
    id: String,
    name: Option<String>,
    stock: i64,
}

impl FromRow for Thing {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.text(0)?,
            name: row.opt_text(1)?,
            stock: row.int(2)?,
        })
    }
}

/// Runs `test` on a SQLite file, then on a PostgreSQL database of its own.
async fn on_both<F, Fut>(name: &str, test: F)
where
    F: Fn(Database) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let sqlite = TestDatabase::sqlite(name);
    let db = Database::connect(&sqlite.settings, MIGRATIONS)
        .await
        .unwrap();
    test(db.clone()).await;
    db.close().await;
    if let Some(pg) = TestDatabase::postgres(name).await {
        let db = Database::connect(&pg.settings, MIGRATIONS).await.unwrap();
        test(db.clone()).await;
        db.close().await;
        pg.remove().await;
    }
}

async fn insert(db: &Database, id: &str, name: Option<&str>, stock: i64) {
    let mut write = db.begin().await.unwrap();
    write
        .execute(
            "INSERT INTO things (id, name, stock) VALUES ($1, $2, $3)",
            &[id.into(), name.into(), stock.into()],
        )
        .await
        .unwrap();
    write.commit().await.unwrap();
}

#[tokio::test]
async fn rows_read_the_same_on_both_databases_whatever_the_order_of_parameters() {
    on_both("reads", |db| async move {
        insert(&db, "a", Some("apple"), 3).await;
        insert(&db, "b", None, 5).await;
        insert(&db, "c", Some("cherry"), 7).await;
        let b: Option<Thing> = db
            .one(
                "SELECT id, name, stock FROM things WHERE id = $1",
                &["b".into()],
            )
            .await
            .unwrap();
        assert_eq!(
            b,
            Some(Thing {
                id: "b".into(),
                name: None,
                stock: 5
            })
        );
        // `$2` before `$1` in the text: bound by number, not by place.
        let page: Vec<Thing> = db
            .all(
                "SELECT id, name, stock FROM things WHERE stock < $2 AND id > $1 ORDER BY id",
                &["a".into(), 7i64.into()],
            )
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        let none: Option<Thing> = db
            .one(
                "SELECT id, name, stock FROM things WHERE id = $1",
                &["z".into()],
            )
            .await
            .unwrap();
        assert_eq!(none, None);
        let duplicate = {
            let mut write = db.begin().await.unwrap();
            write
                .execute(
                    "INSERT INTO things (id, stock) VALUES ($1, $2)",
                    &["a".into(), 1i64.into()],
                )
                .await
        };
        assert!(
            matches!(duplicate, Err(StoreError::Duplicate)),
            "{duplicate:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_retried_write_gets_the_first_reply_and_a_reused_key_is_refused() {
    on_both("idempotency", |db| async move {
        let first = Fingerprint::of("test/1", "things.create", None, json!([["id", "a"]]));
        let other = Fingerprint::of("test/1", "things.create", None, json!([["id", "b"]]));
        let key = |fingerprint| WriteKey {
            request_id: "r1",
            endpoint: "things.create",
            fingerprint,
        };
        let Claim::Fresh(mut write) = db.claim::<String>(key(&first)).await.unwrap() else {
            panic!("a new key is fresh");
        };
        write
            .execute(
                "INSERT INTO things (id, stock) VALUES ($1, $2)",
                &["a".into(), 1i64.into()],
            )
            .await
            .unwrap();
        write.record(&"made a").await.unwrap();
        write.commit().await.unwrap();
        match db.claim::<String>(key(&first)).await.unwrap() {
            Claim::Done(reply) => assert_eq!(reply, "made a"),
            Claim::Fresh(_) => panic!("the key was committed"),
        }
        assert_eq!(
            db.reply::<String>(key(&first)).await.unwrap().as_deref(),
            Some("made a")
        );
        assert!(matches!(
            db.reply::<String>(key(&other)).await,
            Err(StoreError::KeyReused)
        ));
        // A claim rolled back leaves the key free.
        let fresh = WriteKey {
            request_id: "r2",
            ..key(&first)
        };
        let Claim::Fresh(write) = db.claim::<String>(fresh).await.unwrap() else {
            panic!("fresh");
        };
        write.rollback().await.unwrap();
        assert!(matches!(
            db.claim::<String>(fresh).await.unwrap(),
            Claim::Fresh(_)
        ));
    })
    .await;
}

/// A publish function that records what it was given, and fails while `failing` is set.
#[derive(Clone, Default)]
struct Broker {
    published: Arc<Mutex<Vec<PendingEvent>>>,
    failing: Arc<Mutex<bool>>,
}

impl Broker {
    fn publish(
        &self,
    ) -> impl Fn(Vec<PendingEvent>) -> std::future::Ready<Vec<Result<(), String>>> + '_ {
        move |events| {
            let results = events
                .into_iter()
                .map(|event| {
                    if *self.failing.lock().unwrap() {
                        return Err("broker down".to_owned());
                    }
                    self.published.lock().unwrap().push(event);
                    Ok(())
                })
                .collect();
            std::future::ready(results)
        }
    }

    fn subjects(&self) -> Vec<String> {
        let published = self.published.lock().unwrap();
        published.iter().map(|e| e.subject.clone()).collect()
    }
}

async fn outbox_rows(db: &Database) -> i64 {
    db.one::<i64>("SELECT COUNT(*) FROM outbox", &[])
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn events_leave_only_when_their_write_commits_and_once_acknowledged_are_forgotten() {
    on_both("outbox", |db| async move {
        let meta = Meta::root();
        let broker = Broker::default();
        let relay = Relay::new(db.clone());

        let mut write = db.begin().await.unwrap();
        write
            .event("events.things.gone", &json!({"id": "x"}), &meta)
            .await
            .unwrap();
        write.rollback().await.unwrap();
        let mut write = db.begin().await.unwrap();
        let first = write
            .event("events.things.made", &json!({"id": "a"}), &meta)
            .await
            .unwrap();
        write
            .event("events.things.made", &json!({"id": "b"}), &meta)
            .await
            .unwrap();
        write.commit().await.unwrap();

        *broker.failing.lock().unwrap() = true;
        let pass = relay.pass(&broker.publish()).await.unwrap();
        assert_eq!((pass.published, pass.failed), (0, 2));
        assert_eq!(outbox_rows(&db).await, 2, "kept while the broker is down");

        *broker.failing.lock().unwrap() = false;
        let pass = relay.pass(&broker.publish()).await.unwrap();
        assert_eq!((pass.published, pass.failed), (2, 0));
        assert_eq!(
            broker.subjects(),
            ["events.things.made", "events.things.made"]
        );
        let published = broker.published.lock().unwrap().clone();
        assert_eq!(published[0].id, first, "the id given at write time travels");
        assert_eq!(published[0].payload, r#"{"id":"a"}"#);
        assert_eq!(
            published[0].request_id.as_deref(),
            Some(meta.request_id.as_str())
        );
        assert_eq!(published[0].traceparent, Some(meta.trace.to_header()));
        assert_eq!(outbox_rows(&db).await, 0, "acknowledged events are deleted");
        let pass = relay.pass(&broker.publish()).await.unwrap();
        assert_eq!(pass.published, 0, "nothing twice");
    })
    .await;
}

/// The delete of a pass is padded to a power of two (3 ids become 4): the count and the rows
/// deleted are still the events published.
#[tokio::test]
async fn a_pass_of_three_counts_and_deletes_three() {
    on_both("relay_three", |db| async move {
        let broker = Broker::default();
        let mut write = db.begin().await.unwrap();
        for n in 0..3 {
            write
                .event("events.things.made", &json!({ "n": n }), &Meta::root())
                .await
                .unwrap();
        }
        write.commit().await.unwrap();
        let pass = Relay::new(db.clone())
            .pass(&broker.publish())
            .await
            .unwrap();
        assert_eq!((pass.published, pass.failed), (3, 0));
        assert_eq!(broker.subjects().len(), 3);
        assert_eq!(outbox_rows(&db).await, 0);
    })
    .await;
}

#[tokio::test]
async fn the_relay_publishes_a_commit_at_once_and_what_is_left_at_stop() {
    on_both("relay", |db| async move {
        let broker = Broker::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = {
            let (db, broker) = (db.clone(), broker.clone());
            tokio::spawn(async move {
                Relay::new(db)
                    .run(broker.publish(), async {
                        let _ = stopped.await;
                    })
                    .await;
            })
        };
        let mut write = db.begin().await.unwrap();
        write
            .event("events.things.made", &json!({}), &Meta::root())
            .await
            .unwrap();
        write.commit().await.unwrap();
        let woke = std::time::Instant::now();
        while broker.subjects().is_empty() {
            assert!(
                woke.elapsed() < std::time::Duration::from_secs(5),
                "not published"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Well under the relay's 1 s poll: the commit woke it.
        assert!(
            woke.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            woke.elapsed()
        );
        stop.send(()).unwrap();
        relay.await.unwrap();
        assert_eq!(broker.subjects().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_event_is_handled_once_per_consumer() {
    on_both("inbox", |db| async move {
        let mut first = db.claim_event("welcome", "e1").await.unwrap().expect("new");
        first
            .execute(
                "INSERT INTO things (id, stock) VALUES ($1, $2)",
                &[Param::Text("welcomed"), 1i64.into()],
            )
            .await
            .unwrap();
        first.commit().await.unwrap();
        assert!(db.claim_event("welcome", "e1").await.unwrap().is_none());
        // Another consumer of the same event handles it for itself.
        let other = db.claim_event("audit", "e1").await.unwrap();
        assert!(other.is_some());
        drop(other);
        // A handling rolled back leaves the event to be handled again.
        let undone = db.claim_event("welcome", "e2").await.unwrap().unwrap();
        undone.rollback().await.unwrap();
        assert!(db.claim_event("welcome", "e2").await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn instances_starting_at_once_on_one_database_all_migrate_it() {
    let sqlite = TestDatabase::sqlite("migrate");
    let pg = TestDatabase::postgres("migrate").await;
    for settings in std::iter::once(&sqlite.settings).chain(pg.as_ref().map(|pg| &pg.settings)) {
        let starts = (0..6).map(|_| Database::connect(settings, MIGRATIONS));
        for db in futures::future::join_all(starts).await {
            let db = db.unwrap();
            let n: Option<i64> = db
                .one("SELECT COUNT(*) FROM courier_kit_migrations", &[])
                .await
                .unwrap();
            assert_eq!(n, Some(5));
            db.close().await;
        }
    }
    if let Some(pg) = pg {
        pg.remove().await;
    }
}

#[tokio::test]
async fn a_migration_for_sqlite_only_is_applied_there_and_recorded_but_skipped_on_postgresql() {
    // On PostgreSQL the statement would fail: SQLite's `WITHOUT ROWID` is not its syntax.
    const WITH_SQLITE_ONLY: &[Migration] = &[
        MIGRATIONS[0],
        Migration {
            version: 2,
            name: "store kinds by name (SQLite)",
            sql: "CREATE TABLE kinds (name TEXT PRIMARY KEY) WITHOUT ROWID",
            sqlite_only: true,
        },
    ];
    let tables = "SELECT COUNT(*) FROM things, kinds";
    let recorded = "SELECT COUNT(*) FROM courier_migrations WHERE version = 2";
    let sqlite = TestDatabase::sqlite("sqlite-only");
    let db = Database::connect(&sqlite.settings, WITH_SQLITE_ONLY)
        .await
        .unwrap();
    assert_eq!(db.one::<i64>(tables, &[]).await.unwrap(), Some(0));
    assert_eq!(db.one::<i64>(recorded, &[]).await.unwrap(), Some(1));
    db.close().await;
    if let Some(pg) = TestDatabase::postgres("sqlite-only").await {
        let db = Database::connect(&pg.settings, WITH_SQLITE_ONLY)
            .await
            .unwrap();
        assert!(db.one::<i64>(tables, &[]).await.is_err(), "kinds was made");
        assert_eq!(db.one::<i64>(recorded, &[]).await.unwrap(), Some(1));
        db.close().await;
        pg.remove().await;
    }
}
