//! SQLite writes committed in groups (`courier_store` writer): every write keeps exactly its
//! own outcome, whatever the writes grouped with it do, and a group whose next writer gave up
//! before its turn still commits.

use std::time::Duration;

use courier_store::testing::TestDatabase;
use courier_store::{Database, Migration, StoreError};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "create things",
    sql: "CREATE TABLE things (id TEXT PRIMARY KEY, n BIGINT NOT NULL)",
    sqlite_only: false,
}];

/// The file behind a SQLite test database's `sqlite://` URL.
fn file_of(file: &TestDatabase) -> String {
    let url = file.settings.url.expose();
    url.strip_prefix("sqlite://").unwrap_or(url).to_owned()
}

async fn sqlite(name: &str) -> (TestDatabase, Database) {
    let file = TestDatabase::sqlite(name);
    let db = Database::connect(&file.settings, MIGRATIONS).await.unwrap();
    (file, db)
}

async fn ids(db: &Database) -> Vec<String> {
    db.all("SELECT id FROM things ORDER BY id", &[])
        .await
        .unwrap()
}

/// What one concurrent writer of the first test does with its row.
#[derive(Clone, Copy)]
enum Fate {
    Commit,
    RollBack,
    Drop,
    Duplicate,
}

fn fate(i: usize) -> Fate {
    match i % 4 {
        0 => Fate::Commit,
        1 => Fate::RollBack,
        2 => Fate::Drop,
        _ => Fate::Duplicate,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_each_keep_their_own_outcome() {
    let (_file, db) = sqlite("group-outcomes").await;
    let mut seed = db.begin().await.unwrap();
    seed.execute("INSERT INTO things (id, n) VALUES ('taken', 0)", &[])
        .await
        .unwrap();
    seed.commit().await.unwrap();

    let writers: Vec<_> = (0..200)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let id = format!("w{i:03}");
                let mut write = db.begin().await.unwrap();
                write
                    .execute(
                        "INSERT INTO things (id, n) VALUES ($1, $2)",
                        &[id.as_str().into(), (i as i64).into()],
                    )
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
                match fate(i) {
                    Fate::Commit => write.commit().await,
                    Fate::RollBack => write.rollback().await,
                    Fate::Drop => {
                        drop(write);
                        Ok(())
                    }
                    Fate::Duplicate => {
                        let taken = write
                            .execute("INSERT INTO things (id, n) VALUES ('taken', 1)", &[])
                            .await;
                        assert!(matches!(taken, Err(StoreError::Duplicate)), "{taken:?}");
                        // A failed statement leaves the write's earlier ones: it commits them.
                        write.commit().await
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }

    let mut expected: Vec<String> = (0..200)
        .filter(|&i| matches!(fate(i), Fate::Commit | Fate::Duplicate))
        .map(|i| format!("w{i:03}"))
        .collect();
    expected.push("taken".to_owned());
    expected.sort();
    assert_eq!(ids(&db).await, expected);
}

#[tokio::test]
async fn a_commit_returns_once_its_group_is_durable_for_every_reader() {
    let (_file, db) = sqlite("group-visible").await;
    let writers: Vec<_> = (0..50)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let id = format!("v{i:02}");
                let mut write = db.begin().await.unwrap();
                write
                    .execute(
                        "INSERT INTO things (id, n) VALUES ($1, 0)",
                        &[id.as_str().into()],
                    )
                    .await
                    .unwrap();
                write.commit().await.unwrap();
                // Read back on this thread's own reading connection, not the writer's.
                let seen: Option<String> = db
                    .one("SELECT id FROM things WHERE id = $1", &[id.as_str().into()])
                    .await
                    .unwrap();
                assert_eq!(seen.as_deref(), Some(id.as_str()));
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(ids(&db).await.len(), 50);
}

#[tokio::test]
async fn a_group_whose_next_writer_gave_up_still_commits() {
    let (_file, db) = sqlite("group-abandoned").await;
    let mut first = db.begin().await.unwrap();
    first
        .execute("INSERT INTO things (id, n) VALUES ('first', 1)", &[])
        .await
        .unwrap();

    // A second write queues for its turn, so the first will hand the transaction on to it...
    let queued = {
        let db = db.clone();
        tokio::spawn(async move {
            let _never = db.begin().await;
        })
    };
    tokio::task::yield_now().await;

    // ...and gives up before its turn comes.
    let mut commit = Box::pin(first.commit());
    assert!(
        futures::poll!(&mut commit).is_pending(),
        "with a write queued, the first leaves the commit to the group"
    );
    queued.abort();
    let _ = queued.await;

    tokio::time::timeout(Duration::from_secs(2), commit)
        .await
        .expect("the abandoned group is committed by its waiting member")
        .unwrap();
    assert_eq!(ids(&db).await, ["first"]);
}

#[tokio::test]
async fn a_write_that_met_a_grouped_duplicate_reads_it_back_after_rolling_back() {
    let (_file, db) = sqlite("group-duplicate").await;
    let mut first = db.begin().await.unwrap();
    first
        .execute("INSERT INTO things (id, n) VALUES ('once', 1)", &[])
        .await
        .unwrap();

    // A second write queues, so the first hands the open transaction on to it.
    let second = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut write = db.begin().await.unwrap();
            let again = write
                .execute("INSERT INTO things (id, n) VALUES ('once', 2)", &[])
                .await;
            assert!(matches!(again, Err(StoreError::Duplicate)), "{again:?}");
            write.rollback().await.unwrap();
            // "Insert first, on a duplicate return what is stored": on another connection.
            db.one::<i64>("SELECT n FROM things WHERE id = 'once'", &[])
                .await
                .unwrap()
        })
    };
    // A third queues behind it, so the second hands the transaction on in turn.
    let third = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut write = db.begin().await.unwrap();
            write
                .execute("INSERT INTO things (id, n) VALUES ('other', 3)", &[])
                .await
                .unwrap();
            write.commit().await.unwrap();
        })
    };
    tokio::task::yield_now().await;
    let (committed, stored, third) = tokio::join!(first.commit(), second, third);
    committed.unwrap();
    third.unwrap();
    assert_eq!(stored.unwrap(), Some(1));
}

/// Another process holding SQLite's write lock (a second instance on one host) makes a write
/// wait for it without holding its thread: everything else on the thread (other requests,
/// `$SRV`, the signal handler) runs meanwhile, and the write goes ahead once the lock is free.
#[tokio::test]
async fn a_write_waiting_for_another_process_leaves_its_thread_free() {
    let (file, db) = sqlite("busy-elsewhere").await;
    let other = rusqlite::Connection::open(file_of(&file)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let write = tokio::spawn({
        let db = db.clone();
        async move {
            let mut write = db.begin().await?;
            write
                .execute("INSERT INTO things (id, n) VALUES ('w', 1)", &[])
                .await?;
            write.commit().await
        }
    });
    // This test and the write share one thread: the timer fires on time only if the write
    // waits without holding the thread.
    let asked = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "the thread was held for {:?}",
        asked.elapsed()
    );
    assert!(!write.is_finished(), "the write waits for the lock");
    other.execute_batch("COMMIT").unwrap();
    tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .expect("the write goes ahead once the lock is free")
        .unwrap()
        .unwrap();
    assert_eq!(ids(&db).await, ["w"]);
}
