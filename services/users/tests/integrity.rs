//! Writes that stay whole under concurrency, retries and deadlines, against a real nats-server
//! and a fresh SQLite file: no lost update, a retried write returns its first reply, and a
//! write whose deadline passed before commit leaves nothing behind.

mod common;

use std::time::Duration;

use common::*;
use courier_actors::Meta;
use courier_users::domain::User;
use courier_users::endpoints::*;
use sqlx::Connection as _;

async fn started(test: &str) -> (InProcess, String) {
    let (dir, database) = sqlite_file(test);
    let url = database.url.expose().to_owned();
    let mut t = start(database).await;
    t.scratch = Some(dir);
    (t, url)
}

fn create(name: &str, email: &str) -> CreateUser {
    CreateUser {
        name: name.into(),
        email: email.into(),
        password: "correct horse".into(),
    }
}

fn rename(id: &str, name: &str) -> UpdateUser {
    UpdateUser {
        id: id.into(),
        name: Some(name.into()),
        email: None,
        password: None,
    }
}

fn new_password(id: &str, password: &str) -> UpdateUser {
    UpdateUser {
        id: id.into(),
        name: None,
        email: None,
        password: Some(password.into()),
    }
}

#[actix_rt::test]
async fn a_password_change_and_a_rename_sent_together_both_take_effect() {
    let (t, _) = started("lost-update").await;
    let ada: User = t
        .call("users.create", &create("Ada", "ada@example.com"))
        .await
        .unwrap();
    // The password change hashes for tens of ms before it writes; the rename, sent 3 ms later,
    // commits in between. A write of the whole row would put the old name back.
    for round in 0..4 {
        let password = format!("new secret {round}");
        let name = format!("Countess {round}");
        let (change, rename) = (new_password(&ada.id, &password), rename(&ada.id, &name));
        let first = t.call::<_, User>("users.update", &change);
        let later = async {
            tokio::time::sleep(Duration::from_millis(3)).await;
            t.call::<_, User>("users.update", &rename).await
        };
        let (changed, renamed) = futures::join!(first, later);
        changed.expect("the password change answers 200");
        renamed.expect("the rename answers 200");
        let now: User = t
            .call("users.get", &GetUser { id: ada.id.clone() })
            .await
            .unwrap();
        assert_eq!(now.name, name, "round {round}: the rename was lost");
        let auth = Authenticate {
            email: "ada@example.com".into(),
            password,
        };
        let me = t.call::<_, User>("users.authenticate", &auth).await;
        assert_eq!(
            me.map(|u| u.id).ok().as_deref(),
            Some(ada.id.as_str()),
            "round {round}: the new password authenticates"
        );
    }
    t.stop().await;
}

#[actix_rt::test]
async fn a_retried_create_returns_the_first_user_and_announces_it_once() {
    let (t, _) = started("retry-create").await;
    let mut created = t.client.subscribe("events.users.created").await.unwrap();
    t.client.flush().await.unwrap();
    let meta = Meta::root();
    let body = create("Ada", "ada@example.com");
    let first: User = t.courier.call("users.create", &body, &meta).await.unwrap();
    let again: User = t.courier.call("users.create", &body, &meta).await.unwrap();
    assert_eq!(again, first, "the retry gets the first reply, not a 409");
    assert_eq!(all_users(&t).await, std::slice::from_ref(&first));
    let events = events_until_sentinel(&t, &mut created).await;
    assert_eq!(events, [first.id], "one user, one event");
    t.stop().await;
}

#[actix_rt::test]
async fn concurrent_duplicates_of_a_create_make_one_user() {
    let (t, _) = started("duplicate-create").await;
    let meta = Meta::root();
    let body = create("Ada", "ada@example.com");
    let calls = (0..4).map(|_| t.courier.call::<_, User>("users.create", &body, &meta));
    let users: Vec<User> = futures::future::try_join_all(calls).await.unwrap();
    assert!(users.iter().all(|u| *u == users[0]), "{users:?}");
    assert_eq!(all_users(&t).await, [users[0].clone()]);
    t.stop().await;
}

#[actix_rt::test]
async fn a_retried_delete_returns_the_first_reply_not_404() {
    let (t, _) = started("retry-delete").await;
    let mut deleted = t.client.subscribe("events.users.deleted").await.unwrap();
    t.client.flush().await.unwrap();
    let ada: User = t
        .call("users.create", &create("Ada", "ada@example.com"))
        .await
        .unwrap();
    let meta = Meta::root();
    let body = DeleteUser { id: ada.id.clone() };
    let first: Deleted = t.courier.call("users.delete", &body, &meta).await.unwrap();
    let again: Deleted = t.courier.call("users.delete", &body, &meta).await.unwrap();
    assert_eq!((first.id.as_str(), again), (ada.id.as_str(), first.clone()));
    assert_eq!(
        code(
            t.call::<_, User>("users.get", &GetUser { id: ada.id })
                .await
        ),
        404
    );
    // A sentinel delete: its event comes after any the retry could have published.
    let sentinel: User = t
        .call("users.create", &create("Sentinel", "sentinel@example.com"))
        .await
        .unwrap();
    let _: Deleted = t
        .call(
            "users.delete",
            &DeleteUser {
                id: sentinel.id.clone(),
            },
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    loop {
        let event = next_event(&mut deleted).await;
        if event == sentinel.id {
            break;
        }
        ids.push(event);
    }
    assert_eq!(ids, [first.id], "one delete, one event");
    t.stop().await;
}

#[actix_rt::test]
async fn a_retried_update_returns_the_first_reply() {
    let (t, _) = started("retry-update").await;
    let ada: User = t
        .call("users.create", &create("Ada", "ada@example.com"))
        .await
        .unwrap();
    let meta = Meta::root();
    let body = rename(&ada.id, "Countess");
    let first: User = t.courier.call("users.update", &body, &meta).await.unwrap();
    let again: User = t.courier.call("users.update", &body, &meta).await.unwrap();
    assert_eq!(
        again, first,
        "same reply, updated_at included: not done twice"
    );
    t.stop().await;
}

#[actix_rt::test]
async fn a_create_whose_deadline_passes_while_waiting_for_a_lock_leaves_nothing() {
    let (t, url) = started("deadline-lock").await;
    let mut created = t.client.subscribe("events.users.created").await.unwrap();
    t.client.flush().await.unwrap();
    // Another writer holds SQLite's write lock for 800 ms; the create has 400 ms to live, so
    // its insert waits for the lock past its deadline and reaches commit after it.
    let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let lock = holder.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let meta = Meta::root().with_timeout(Duration::from_millis(400));
    let late = t
        .courier
        .call::<_, User>("users.create", &create("Late", "late@example.com"), &meta)
        .await;
    assert_eq!(code(late), 504);
    tokio::time::sleep(Duration::from_millis(400)).await;
    lock.commit().await.unwrap();
    // A negative check needs time: let the waiting insert get the lock and finish.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(all_users(&t).await, [], "a 504 means nothing happened");
    let events = events_until_sentinel(&t, &mut created).await;
    assert_eq!(events, Vec::<String>::new(), "and nothing was announced");
    t.stop().await;
}

#[actix_rt::test]
async fn replies_older_than_a_day_are_pruned_by_a_later_write() {
    let (t, url) = started("prune").await;
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (request_id, endpoint, reply, created_at) VALUES ('old', 'users.create', '{}', 1)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let meta = Meta::root();
    let _: User = t
        .courier
        .call("users.create", &create("Ada", "ada@example.com"), &meta)
        .await
        .unwrap();
    let kept: Vec<String> = sqlx::query_scalar("SELECT request_id FROM idempotency_keys")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(
        kept,
        [meta.request_id],
        "the old reply is gone, the new kept"
    );
    t.stop().await;
}

/// Every user, oldest first (the tests make fewer than a page).
async fn all_users(t: &InProcess) -> Vec<User> {
    let page: UserPage = t
        .call(
            "users.list",
            &ListUsers {
                limit: Some(100),
                after: None,
            },
        )
        .await
        .unwrap();
    page.users
}

/// The ids of the `events.users.created` seen before that of a sentinel user created now:
/// events go out in order on the service's one connection, so any event published before the
/// sentinel's comes before it, with no sleep to guess how long to wait.
async fn events_until_sentinel(t: &InProcess, created: &mut async_nats::Subscriber) -> Vec<String> {
    let sentinel: User = t
        .call("users.create", &create("Sentinel", "sentinel@example.com"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    loop {
        let id = next_event(created).await;
        if id == sentinel.id {
            return ids;
        }
        ids.push(id);
    }
}

/// The `id` of the next event on `events`.
async fn next_event(events: &mut async_nats::Subscriber) -> String {
    use futures::StreamExt as _;
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event in time")
        .expect("an open subscription");
    let body: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
    body["id"].as_str().unwrap().to_owned()
}
