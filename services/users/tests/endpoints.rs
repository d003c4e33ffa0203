//! Every users endpoint against a real nats-server and a fresh SQLite file.

mod common;

use std::time::Duration;

use common::*;
use courier_testkit::micro_schema::{assert_valid, Kind};
use courier_users::domain::User;
use courier_users::endpoints::*;
use futures::StreamExt;
use serde_json::{json, Value};

fn create(name: &str, email: &str) -> CreateUser {
    CreateUser {
        name: name.into(),
        email: email.into(),
        password: "correct horse".into(),
    }
}

async fn started(test: &str) -> InProcess {
    let (dir, database) = sqlite_file(test);
    let mut t = start(database).await;
    t.scratch = Some(dir);
    t
}

#[actix_rt::test]
async fn create_answers_json_without_the_hash_and_get_finds_it() {
    let t = started("create").await;
    let (code, body) = t
        .json(
            "users.create",
            r#"{"name":"Ada Lovelace","email":"Ada@Example.com","password":"analytical"}"#,
        )
        .await;
    assert_eq!(code, None, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["created_at", "email", "id", "name", "roles", "updated_at"],
        "no password, no hash"
    );
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(
        body["roles"],
        json!([]),
        "no admin emails configured: no roles"
    );
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    let (_, got) = t
        .json("users.get", &json!({"id": body["id"]}).to_string())
        .await;
    assert_eq!(got, body);
    t.stop().await;
}

#[actix_rt::test]
async fn msgpack_callers_get_typed_users() {
    let t = started("msgpack").await;
    let user: User = t
        .call("users.create", &create("Grace", "grace@navy.mil"))
        .await
        .unwrap();
    let got: User = t
        .call(
            "users.get",
            &GetUser {
                id: user.id.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(got, user);
    t.stop().await;
}

#[actix_rt::test]
async fn a_600_kb_bad_id_is_answered_400_and_small() {
    let t = started("huge-id").await;
    // Quoted in full, the error would not fit the server's max payload and never arrive.
    let body = format!(r#"{{"id":"{}"}}"#, "a".repeat(600_000));
    let (code, reply) = t.json("users.get", &body).await;
    assert_eq!(code, Some(400));
    let message = reply["message"].as_str().unwrap();
    assert!(message.len() < 300, "{} bytes", message.len());
    assert!(message.contains("600000 bytes"), "{message}");
    t.stop().await;
}

#[actix_rt::test]
async fn a_duplicate_email_is_409_whatever_its_case() {
    let t = started("duplicate").await;
    let _: User = t
        .call("users.create", &create("Ada", "ada@example.com"))
        .await
        .unwrap();
    assert_eq!(
        code(
            t.call::<_, User>("users.create", &create("Ada 2", "ADA@example.com"))
                .await
        ),
        409
    );
    t.stop().await;
}

#[actix_rt::test]
async fn bad_input_is_400_naming_the_field() {
    let t = started("invalid").await;
    let cases = [
        (
            r#"{"name":"Ada","email":"not-an-email","password":"long enough"}"#,
            "email",
        ),
        (
            r#"{"name":"   ","email":"a@b.io","password":"long enough"}"#,
            "name",
        ),
        (
            r#"{"name":"Ada","email":"a@b.io","password":"short"}"#,
            "password",
        ),
        (
            r#"{"name":"Ada","emial":"a@b.io","password":"long enough"}"#,
            "emial",
        ),
        (r#"{"name":"Ada","password":"long enough"}"#, "email"),
        (
            r#"{"name":7,"email":"a@b.io","password":"long enough"}"#,
            "name",
        ),
        ("not json at all", "invalid request body"),
    ];
    for (body, names) in cases {
        let (code, reply) = t.json("users.create", body).await;
        assert_eq!(code, Some(400), "{body}: {reply}");
        assert_eq!(reply["code"], 400);
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.contains(names),
            "{body}: {message:?} should name {names:?}"
        );
    }
    let (code, reply) = t.json("users.get", r#"{"id":"nope"}"#).await;
    assert_eq!(
        (code, reply["details"].clone()),
        (Some(400), json!({"field": "id"}))
    );
    t.stop().await;
}

#[actix_rt::test]
async fn unknown_ids_are_404() {
    let t = started("unknown").await;
    let id = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        code(
            t.call::<_, User>("users.get", &GetUser { id: id.clone() })
                .await
        ),
        404
    );
    assert_eq!(
        code(
            t.call::<_, Deleted>("users.delete", &DeleteUser { id: id.clone() })
                .await
        ),
        404
    );
    let update = UpdateUser {
        id,
        name: Some("X".into()),
        email: None,
        password: None,
    };
    assert_eq!(code(t.call::<_, User>("users.update", &update).await), 404);
    t.stop().await;
}

#[actix_rt::test]
async fn list_pages_through_every_user_in_creation_order() {
    let t = started("list").await;
    let mut created = Vec::new();
    for i in 0..5 {
        let user: User = t
            .call(
                "users.create",
                &create(&format!("U{i}"), &format!("u{i}@example.com")),
            )
            .await
            .unwrap();
        created.push(user.id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page: UserPage = t
            .call(
                "users.list",
                &ListUsers {
                    limit: Some(2),
                    after: after.clone(),
                },
            )
            .await
            .unwrap();
        pages += 1;
        assert!(page.users.len() <= 2);
        seen.extend(page.users.iter().map(|u| u.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!((seen, pages), (created, 3));
    let (code, body) = t.json("users.list", "").await;
    assert_eq!(code, None, "an empty request lists the first page: {body}");
    assert_eq!(body["users"].as_array().unwrap().len(), 5);
    assert_eq!(
        crate::code(
            t.call::<_, UserPage>(
                "users.list",
                &ListUsers {
                    limit: Some(0),
                    after: None
                }
            )
            .await
        ),
        400
    );
    assert_eq!(
        crate::code(
            t.call::<_, UserPage>(
                "users.list",
                &ListUsers {
                    limit: Some(1000),
                    after: None
                }
            )
            .await
        ),
        400
    );
    t.stop().await;
}

#[actix_rt::test]
async fn update_changes_only_what_is_given() {
    let t = started("update").await;
    let ada: User = t
        .call("users.create", &create("Ada", "ada@example.com"))
        .await
        .unwrap();
    let _: User = t
        .call("users.create", &create("Grace", "grace@example.com"))
        .await
        .unwrap();
    let renamed: User = t
        .call(
            "users.update",
            &UpdateUser {
                id: ada.id.clone(),
                name: Some("Countess".into()),
                email: None,
                password: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.email.as_str()),
        ("Countess", "ada@example.com")
    );
    assert_eq!(renamed.created_at, ada.created_at);
    let clash = UpdateUser {
        id: ada.id.clone(),
        name: None,
        email: Some("GRACE@example.com".into()),
        password: None,
    };
    assert_eq!(code(t.call::<_, User>("users.update", &clash).await), 409);
    let nothing = UpdateUser {
        id: ada.id.clone(),
        name: None,
        email: None,
        password: None,
    };
    assert_eq!(code(t.call::<_, User>("users.update", &nothing).await), 400);

    let new_password = UpdateUser {
        id: ada.id.clone(),
        name: None,
        email: None,
        password: Some("new secret!".into()),
    };
    let _: User = t.call("users.update", &new_password).await.unwrap();
    let old = Authenticate {
        email: "ada@example.com".into(),
        password: "correct horse".into(),
    };
    assert_eq!(
        code(t.call::<_, User>("users.authenticate", &old).await),
        401
    );
    let new = Authenticate {
        email: "ada@example.com".into(),
        password: "new secret!".into(),
    };
    let me: User = t.call("users.authenticate", &new).await.unwrap();
    assert_eq!(me.id, ada.id);
    t.stop().await;
}

#[actix_rt::test]
async fn authenticate_says_401_alike_for_wrong_passwords_and_unknown_emails() {
    let t = started("auth").await;
    let ada: User = t
        .call("users.create", &create("Ada", "ada@example.com"))
        .await
        .unwrap();
    let ok = Authenticate {
        email: "ADA@example.com".into(),
        password: "correct horse".into(),
    };
    assert_eq!(
        t.call::<_, User>("users.authenticate", &ok).await.unwrap(),
        ada
    );
    let (wrong_code, wrong) = t
        .json(
            "users.authenticate",
            r#"{"email":"ada@example.com","password":"wrong horse"}"#,
        )
        .await;
    let (unknown_code, unknown) = t
        .json(
            "users.authenticate",
            r#"{"email":"bob@example.com","password":"wrong horse"}"#,
        )
        .await;
    assert_eq!((wrong_code, unknown_code), (Some(401), Some(401)));
    assert_eq!(wrong, unknown, "the reply does not tell which was wrong");
    t.stop().await;
}

#[actix_rt::test]
async fn create_and_delete_publish_events() {
    let t = started("events").await;
    let mut events = t.client.subscribe("events.users.*").await.unwrap();
    t.client.flush().await.unwrap();
    let ada: User = t
        .call("users.create", &create("Ada", "ada@example.com"))
        .await
        .unwrap();
    let deleted: Deleted = t
        .call("users.delete", &DeleteUser { id: ada.id.clone() })
        .await
        .unwrap();
    assert_eq!(deleted.id, ada.id);
    let created = next(&mut events).await;
    assert_eq!(created.subject.as_str(), "events.users.created");
    assert_eq!(
        serde_json::from_slice::<User>(&created.payload).unwrap(),
        ada
    );
    let gone = next(&mut events).await;
    assert_eq!(gone.subject.as_str(), "events.users.deleted");
    assert_eq!(
        serde_json::from_slice::<Value>(&gone.payload).unwrap(),
        json!({"id": ada.id})
    );
    assert!(gone.headers.unwrap().get("traceparent").is_some());
    assert_eq!(
        code(
            t.call::<_, User>("users.get", &GetUser { id: ada.id })
                .await
        ),
        404
    );
    t.stop().await;
}

#[actix_rt::test]
async fn events_are_kept_in_the_stream_once_each_and_only_for_committed_writes() {
    let t = started("stream").await;
    let mut meta = courier_actors::Meta::root();
    meta.request_id = "create-ada-once".into();
    let ada: User = t
        .courier
        .call("users.create", &create("Ada", "ada@example.com"), &meta)
        .await
        .unwrap();
    // A retry replays the stored reply: no second user, no second event.
    let again: User = t
        .courier
        .call("users.create", &create("Ada", "ada@example.com"), &meta)
        .await
        .unwrap();
    assert_eq!(again, ada);
    // A create that fails (email taken) rolls back, its event with it.
    let taken = t
        .call::<_, User>("users.create", &create("Eve", "ADA@example.com"))
        .await;
    assert_eq!(code(taken), 409);

    let js = async_nats::jetstream::new(t.client.clone());
    let mut stream = js.get_stream("COURIER_EVENTS").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stream.info().await.unwrap().state.messages < 1 {
        assert!(std::time::Instant::now() < deadline, "no event stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past any straggler: the relay is woken at commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    let stored = stream.get_raw_message(1).await.unwrap();
    assert_eq!(stored.subject.as_str(), "events.users.created");
    assert_eq!(
        serde_json::from_slice::<User>(&stored.payload).unwrap(),
        ada
    );
    let headers = stored.headers;
    let id = headers.get("Nats-Msg-Id").expect("an event id").as_str();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(
        headers.get("X-Request-Id").map(|v| v.as_str()),
        Some("create-ada-once")
    );
    t.stop().await;
}

async fn next(events: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event in time")
        .expect("an open subscription")
}

#[actix_rt::test]
async fn srv_info_lists_the_seven_endpoints_in_a_valid_reply() {
    let t = started("info").await;
    let reply = t
        .client
        .request(format!("$SRV.INFO.users.{}", t.id), bytes::Bytes::new())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_valid(Kind::Info, &info);
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "users.create",
            "users.get",
            "users.list",
            "users.update",
            "users.delete",
            "users.authenticate",
            "users.me"
        ]
    );
    t.stop().await;
}

#[actix_rt::test]
async fn a_create_past_its_deadline_changes_nothing() {
    let t = started("deadline").await;
    // Sixteen creates with 30 ms to live on two hashing threads (argon2id takes tens of ms):
    // some finish in time, the rest must leave no user behind their 504. The caller itself
    // waits 5 s, so every 504 is the service's own answer, not the caller's time-out.
    let calls = (0..16).map(|i| {
        let client = t.client.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Courier-Timeout-Ms", "30");
            let body = serde_json::to_vec(&create(&format!("U{i}"), &format!("u{i}@example.com")))
                .unwrap();
            let request = async_nats::Request::new()
                .headers(headers)
                .payload(body.into())
                .timeout(Some(Duration::from_secs(5)));
            let reply = client
                .send_request("users.create".to_owned(), request)
                .await
                .expect("the service answers");
            reply
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Service-Error-Code"))
                .map(|v| v.as_str().to_owned())
        }
    });
    let results = futures::future::join_all(calls).await;
    let created = results.iter().filter(|code| code.is_none()).count();
    assert!(
        results
            .iter()
            .all(|code| code.is_none() || code.as_deref() == Some("504")),
        "{results:?}"
    );
    // A negative check needs time: let every hash that was under way finish.
    tokio::time::sleep(Duration::from_millis(1500)).await;
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
    assert_eq!(
        page.users.len(),
        created,
        "only the creates answered in time exist"
    );
    assert!(
        created < 16,
        "the deadline was short enough to matter: {created}"
    );
    t.stop().await;
}
