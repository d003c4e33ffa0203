//! A request id names one request: a retry (same request id, same request) gets the first
//! reply, and a request id reused for a different request (another body, another caller) is
//! refused with 422, without doing anything and without the first reply. The gateway passes a
//! client's `X-Request-Id` on, so these tests send it as a header, over JSON, as it does.

mod common;

use common::*;
use serde_json::{json, Value};

/// Ada's email is an admin's.
async fn started(test: &str) -> InProcess {
    let (dir, database) = sqlite_file(test);
    let mut t = start_with(database, |settings| {
        settings.users.admin_emails = vec!["ada@example.com".into()];
    })
    .await;
    t.scratch = Some(dir);
    t
}

fn new_user(name: &str, email: &str) -> String {
    json!({"name": name, "email": email, "password": "correct horse"}).to_string()
}

/// `body` to `endpoint` under `request_id`, for `caller` (a user id, roles) or from inside.
async fn send(
    t: &InProcess,
    endpoint: &str,
    body: &str,
    request_id: &str,
    caller: Option<(&str, &str)>,
) -> (Option<u16>, Value) {
    let mut headers = vec![("X-Request-Id", request_id)];
    if let Some((subject, roles)) = caller {
        headers.extend([
            ("Courier-Auth-Subject", subject),
            ("Courier-Auth-Roles", roles),
        ]);
    }
    t.json_with(endpoint, body, &headers).await
}

async fn all_users(t: &InProcess) -> Value {
    let (code, page) = t.json("users.list", r#"{"limit": 100}"#).await;
    assert_eq!(code, None, "{page}");
    page["users"].clone()
}

fn id(user: &Value) -> &str {
    user["id"].as_str().expect("a user")
}

#[actix_rt::test]
async fn a_request_id_reused_for_another_create_is_refused_and_leaks_nothing() {
    let t = started("reuse-create").await;
    let ada_body = new_user("Ada", "ada@example.com");
    let (code, ada) = send(&t, "users.create", &ada_body, "r-1", None).await;
    assert_eq!(code, None, "{ada}");

    let eve_body = new_user("Eve", "eve@example.com");
    let (code, reply) = send(&t, "users.create", &eve_body, "r-1", None).await;
    assert_eq!(code, Some(422), "{reply}");
    let text = reply.to_string();
    assert!(
        !text.contains("ada@example.com") && !text.contains(id(&ada)),
        "the first request's reply leaked: {text}"
    );
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("already used for a different request")),
        "{reply}"
    );
    assert_eq!(all_users(&t).await, json!([ada]), "no second user");
    t.stop().await;
}

#[actix_rt::test]
async fn a_retry_with_the_same_body_gets_the_first_user() {
    let t = started("retry-same").await;
    let body = new_user("Ada", "ada@example.com");
    let (code, first) = send(&t, "users.create", &body, "r-1", None).await;
    assert_eq!(code, None, "{first}");
    let (code, again) = send(&t, "users.create", &body, "r-1", None).await;
    assert_eq!((code, &again), (None, &first), "the stored reply");
    // The same request written differently (key order, spacing) is the same request.
    let reordered = r#"{ "password": "correct horse", "email": "ada@example.com", "name": "Ada" }"#;
    let (code, again) = send(&t, "users.create", reordered, "r-1", None).await;
    assert_eq!((code, &again), (None, &first), "the stored reply");
    assert_eq!(all_users(&t).await, json!([first]), "one user");
    t.stop().await;
}

#[actix_rt::test]
async fn a_request_id_reused_by_another_caller_for_an_update_is_refused() {
    let t = started("reuse-update").await;
    let (_, ada) = send(
        &t,
        "users.create",
        &new_user("Ada", "ada@example.com"),
        "a",
        None,
    )
    .await;
    let (_, bob) = send(
        &t,
        "users.create",
        &new_user("Bob", "bob@example.com"),
        "b",
        None,
    )
    .await;
    let rename = json!({"id": id(&bob), "name": "Robert"}).to_string();
    let as_bob = Some((id(&bob), ""));
    let (code, renamed) = send(&t, "users.update", &rename, "r-2", as_bob).await;
    assert_eq!(code, None, "{renamed}");

    // Ada, an admin, may rename Bob, but not under Bob's request id; nor may the system.
    let as_ada = Some((id(&ada), "admin"));
    for caller in [as_ada, None] {
        let (code, reply) = send(&t, "users.update", &rename, "r-2", caller).await;
        assert_eq!(code, Some(422), "{caller:?}: {reply}");
        assert!(!reply.to_string().contains(id(&bob)), "{reply}");
    }
    let (_, now) = t
        .json("users.get", &json!({"id": id(&bob)}).to_string())
        .await;
    assert_eq!(now, renamed, "nothing changed, updated_at included");
    // Bob's own retry still gets his reply.
    let (code, again) = send(&t, "users.update", &rename, "r-2", as_bob).await;
    assert_eq!((code, again), (None, renamed));
    t.stop().await;
}

#[actix_rt::test]
async fn a_request_id_reused_to_delete_another_user_is_refused() {
    let t = started("reuse-delete").await;
    let (_, ada) = send(
        &t,
        "users.create",
        &new_user("Ada", "ada@example.com"),
        "a",
        None,
    )
    .await;
    let (_, bob) = send(
        &t,
        "users.create",
        &new_user("Bob", "bob@example.com"),
        "b",
        None,
    )
    .await;
    let delete = |user: &Value| json!({"id": id(user)}).to_string();
    let (code, _) = send(&t, "users.delete", &delete(&bob), "r-3", None).await;
    assert_eq!(code, None);
    let (code, reply) = send(&t, "users.delete", &delete(&ada), "r-3", None).await;
    assert_eq!(code, Some(422), "{reply}");
    assert_eq!(all_users(&t).await, json!([ada]), "Ada is still there");
    t.stop().await;
}
