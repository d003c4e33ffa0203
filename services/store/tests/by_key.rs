//! Batched reads by key (`courier_store::ByKey`), on a SQLite file and on PostgreSQL: reads
//! waiting together share one trip, and each still gets exactly its own row, or its own
//! failure, and never one older than its request.

use futures::FutureExt;

use courier_store::testing::TestDatabase;
use courier_store::{ByKey, Database, FromRow, Migration, Row, StoreError};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "create things",
    sql: "CREATE TABLE things (id TEXT PRIMARY KEY, n BIGINT NOT NULL)",
    sqlite_only: false,
}];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Thing {
    id: String,
    n: i64,
}

impl FromRow for Thing {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.text(0)?,
            n: row.int(1)?,
        })
    }
}

/// Each test on a SQLite file, then on PostgreSQL when a server answers.
async fn each_database(name: &str, test: impl AsyncFn(&Database)) {
    let file = TestDatabase::sqlite(name);
    let db = Database::connect(&file.settings, MIGRATIONS).await.unwrap();
    test(&db).await;
    db.close().await;
    if let Some(pg) = TestDatabase::postgres(name).await {
        let db = Database::connect(&pg.settings, MIGRATIONS).await.unwrap();
        test(&db).await;
        db.close().await;
        pg.remove().await;
    }
}

async fn insert(db: &Database, count: i64) {
    let mut write = db.begin().await.unwrap();
    for n in 0..count {
        write
            .execute(
                "INSERT INTO things (id, n) VALUES ($1, $2)",
                &[format!("t{n}").as_str().into(), n.into()],
            )
            .await
            .unwrap();
    }
    write.commit().await.unwrap();
}

fn things(db: &Database) -> ByKey<Thing> {
    ByKey::new(db, "SELECT id, n FROM things", "id")
}

/// What a read of key `t<i>` must give when `t0..t<count>` exist.
fn expected(key: &str, count: i64) -> Option<Thing> {
    let n: i64 = key.strip_prefix('t')?.parse().ok()?;
    (n < count).then(|| Thing {
        id: key.to_owned(),
        n,
    })
}

#[tokio::test]
async fn reads_waiting_together_each_get_their_own_row() {
    each_database("by-key-rows", async |db| {
        insert(db, 50).await;
        let things = things(db);
        // Keys that exist, keys that do not, and the same key asked many times at once.
        let keys: Vec<String> = (0..300).map(|i| format!("t{}", (i * 7) % 80)).collect();
        let rows = futures::future::join_all(keys.iter().map(|key| things.get(key))).await;
        for (key, row) in keys.iter().zip(rows) {
            assert_eq!(row.unwrap(), expected(key, 50), "{key}");
        }
        // Asked at once on one thread, they went in full batches (128 keys at most each).
        assert_eq!(
            things.batching(),
            courier_store::Batching {
                reads: 300,
                batches: 3
            }
        );
        // A lone read, after the batches have ended: a batch of its own.
        assert_eq!(things.get("t3").await.unwrap(), expected("t3", 50));
        assert_eq!(things.batching().batches, 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_tasks_on_several_threads_each_get_their_own_row() {
    each_database("by-key-threads", async |db| {
        insert(db, 20).await;
        let things = things(db);
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let things = things.clone();
                tokio::spawn(async move {
                    for i in 0..20 {
                        let key = format!("t{}", (t + i) % 25);
                        assert_eq!(things.get(&key).await.unwrap(), expected(&key, 20));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_read_asked_after_a_commit_sees_it() {
    each_database("by-key-fresh", async |db| {
        insert(db, 1).await;
        let things = things(db);
        // Other reads of the same row keep batches going the whole time.
        let busy = std::sync::atomic::AtomicBool::new(true);
        let churn = async {
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = futures::future::join_all((0..8).map(|_| things.get("t0"))).await;
            }
        };
        let check = async {
            for n in 1..=40 {
                let mut write = db.begin().await.unwrap();
                write
                    .execute("UPDATE things SET n = $1 WHERE id = 't0'", &[n.into()])
                    .await
                    .unwrap();
                write.commit().await.unwrap();
                let row = things.get("t0").await.unwrap().unwrap();
                assert_eq!(row.n, n, "the read after commit {n} saw {}", row.n);
            }
            busy.store(false, std::sync::atomic::Ordering::Relaxed);
        };
        futures::future::join(churn, check).await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_batch_answers_every_read_with_the_failure() {
    each_database("by-key-failure", async |db| {
        let missing = ByKey::<Thing>::new(db, "SELECT id, n FROM no_such_table", "id");
        let reads = futures::future::join_all((0..20).map(|i| missing.get(["t1", "t2"][i % 2])));
        let reads = tokio::time::timeout(std::time::Duration::from_secs(10), reads)
            .await
            .expect("every read is answered");
        for read in reads {
            let error = read.expect_err("no table, no row");
            let message = error.to_string();
            assert!(message.contains("no_such_table"), "{message}");
            // The wire gets a 500 that does not leak the SQL.
            assert_eq!(courier_actors::ServiceError::from(error).code, 500);
        }
    })
    .await;
}

#[tokio::test]
async fn reads_given_up_before_their_batch_leave_the_others_answered() {
    each_database("by-key-cancel", async |db| {
        insert(db, 10).await;
        let things = things(db);
        let mut reads: Vec<_> = (0..40)
            .map(|i| {
                let things = things.clone();
                async move { (i, things.get(&format!("t{}", i % 10)).await) }.boxed()
            })
            .collect();
        // Each read joins the queue on its first poll; then every other one is given up.
        for read in &mut reads {
            assert!(
                read.now_or_never().is_none(),
                "no read is answered before its batch"
            );
        }
        let kept: Vec<_> = reads
            .into_iter()
            .enumerate()
            .filter_map(|(i, read)| (i % 2 == 0).then_some(read))
            .collect();
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures::future::join_all(kept),
        )
        .await
        .expect("the reads kept are answered");
        for (i, row) in answered {
            let key = format!("t{}", i % 10);
            assert_eq!(row.unwrap(), expected(&key, 10));
        }
        assert_eq!(things.get("t9").await.unwrap(), expected("t9", 10));
    })
    .await;
}

/// A `Thing` whose `n` must not be negative: a row that does not map.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked(Thing);

impl FromRow for Checked {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        let thing = Thing::from_row(row)?;
        if thing.n < 0 {
            return Err(StoreError::Json(serde_json::Error::io(
                std::io::Error::other("negative"),
            )));
        }
        Ok(Self(thing))
    }
}

#[tokio::test]
async fn a_row_that_does_not_map_fails_its_own_reads_only() {
    each_database("by-key-bad-row", async |db| {
        insert(db, 10).await;
        let mut write = db.begin().await.unwrap();
        write
            .execute("INSERT INTO things (id, n) VALUES ('bad', -1)", &[])
            .await
            .unwrap();
        write.commit().await.unwrap();
        let checked = ByKey::<Checked>::new(db, "SELECT id, n FROM things", "id");
        let keys: Vec<String> = (0..40)
            .map(|i| {
                if i % 4 == 0 {
                    "bad".to_owned()
                } else {
                    format!("t{}", i % 10)
                }
            })
            .collect();
        let reads = futures::future::join_all(keys.iter().map(|key| checked.get(key))).await;
        for (key, read) in keys.iter().zip(reads) {
            match (key.as_str(), read) {
                ("bad", Err(e)) => assert!(e.to_string().contains("negative"), "{e}"),
                ("bad", Ok(row)) => panic!("the bad row mapped: {row:?}"),
                (key, read) => assert_eq!(read.unwrap().map(|c| c.0), expected(key, 10)),
            }
        }
    })
    .await;
}

#[test]
fn a_flush_dropped_before_it_ran_does_not_stop_later_reads() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let home = runtime();
    let file = TestDatabase::sqlite("by-key-dropped");
    let db = home.block_on(async {
        let db = Database::connect(&file.settings, MIGRATIONS).await.unwrap();
        insert(&db, 2).await;
        db
    });
    let things = things(&db);
    // A read joins the queue and spawns its flush on a runtime that is then dropped before
    // the flush ever runs.
    let doomed = runtime();
    doomed.block_on(async {
        assert!(things.get("t1").now_or_never().is_none());
    });
    drop(doomed);
    // On this thread, a later read on another runtime still gets its row.
    let row = runtime().block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), things.get("t1"))
            .await
            .expect("the read is answered, not left behind a flush that never ran")
    });
    assert_eq!(row.unwrap(), expected("t1", 2));
}

/// A `Thing` whose mapping panics on the row `boom`.
#[derive(Debug, Clone)]
struct Panicky;

impl FromRow for Panicky {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        assert_ne!(row.text(0)?, "boom", "a mapping that panics");
        Ok(Self)
    }
}

#[tokio::test]
async fn a_batch_that_panicked_leaves_no_old_snapshot_behind() {
    let file = TestDatabase::sqlite("by-key-panic");
    let db = Database::connect(&file.settings, MIGRATIONS).await.unwrap();
    insert(&db, 1).await;
    let mut write = db.begin().await.unwrap();
    write
        .execute("INSERT INTO things (id, n) VALUES ('boom', 0)", &[])
        .await
        .unwrap();
    write.commit().await.unwrap();
    // Two reads in one batch (one read transaction), the second of which panics.
    let panicky = ByKey::<Panicky>::new(&db, "SELECT id, n FROM things", "id");
    let (first, boom) = futures::join!(panicky.get("t0"), panicky.get("boom"));
    assert!(matches!(first, Err(StoreError::Abandoned)), "{first:?}");
    assert!(matches!(boom, Err(StoreError::Abandoned)), "{boom:?}");
    // A commit after it is seen by the next read on this thread.
    let mut write = db.begin().await.unwrap();
    write
        .execute("UPDATE things SET n = 99 WHERE id = 't0'", &[])
        .await
        .unwrap();
    write.commit().await.unwrap();
    let row = things(&db).get("t0").await.unwrap().unwrap();
    assert_eq!(row.n, 99, "the read saw the panicked batch's snapshot");
}
