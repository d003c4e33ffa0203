//! Who may do what: roles from `users.admin_emails`, `users.me` for the signed-in caller, and
//! `users.update` / `users.delete` for oneself or an admin. The gateway sets the caller
//! (`Courier-Auth-Subject`, `Courier-Auth-Roles`) from a verified token; a request without one
//! comes from inside the system and is trusted.

mod common;

use common::*;
use courier_users::domain::User;
use courier_users::endpoints::*;
use serde_json::{json, Value};

const ADMIN: &str = "ada@example.com";

/// A service whose one admin email is [`ADMIN`], written in another case to show that the
/// setting is compared lower-cased.
async fn started(test: &str) -> InProcess {
    let (dir, database) = sqlite_file(test);
    let mut t = start_with(database, |settings| {
        settings.users.admin_emails = vec!["Ada@Example.com".into()];
    })
    .await;
    t.scratch = Some(dir);
    t
}

/// Creates a user over JSON, as the gateway would, and returns the reply.
async fn create(t: &InProcess, name: &str, email: &str) -> Value {
    let body = json!({"name": name, "email": email, "password": "correct horse"});
    let (code, user) = t.json("users.create", &body.to_string()).await;
    assert_eq!(code, None, "{user}");
    user
}

fn id(user: &Value) -> &str {
    user["id"].as_str().unwrap()
}

#[actix_rt::test]
async fn an_admin_email_makes_an_admin_and_everyone_else_has_no_roles() {
    let t = started("roles").await;
    let ada = create(&t, "Ada", "ADA@example.com").await;
    let bob = create(&t, "Bob", "bob@example.com").await;
    assert_eq!(
        (&ada["roles"], &bob["roles"]),
        (&json!(["admin"]), &json!([]))
    );
    let keys: Vec<&String> = bob.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["created_at", "email", "id", "name", "roles", "updated_at"]
    );

    let (_, got) = t
        .json("users.get", &json!({"id": id(&ada)}).to_string())
        .await;
    assert_eq!(got, ada, "users.get reads the roles back");
    let (_, page) = t.json("users.list", "{}").await;
    assert_eq!(page["users"], json!([ada, bob]), "so does users.list");
    let login = json!({"email": ADMIN, "password": "correct horse"});
    let (_, me) = t.json("users.authenticate", &login.to_string()).await;
    assert_eq!(me, ada, "and users.authenticate, for the gateway's token");
    let typed: User = t
        .call(
            "users.get",
            &GetUser {
                id: id(&ada).into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(typed.roles, ["admin"], "MessagePack callers get them too");
    t.stop().await;
}

#[actix_rt::test]
async fn roles_cannot_be_set_through_update() {
    let t = started("no-role-update").await;
    let bob = create(&t, "Bob", "bob@example.com").await;
    let body = json!({"id": id(&bob), "roles": ["admin"]}).to_string();
    let (code, reply) = t.json_as((id(&bob), ""), "users.update", &body).await;
    assert_eq!(code, Some(400), "{reply}");
    let (_, got) = t
        .json("users.get", &json!({"id": id(&bob)}).to_string())
        .await;
    assert_eq!(got["roles"], json!([]));
    t.stop().await;
}

#[actix_rt::test]
async fn me_is_the_callers_own_user_and_needs_a_caller() {
    let t = started("me").await;
    let bob = create(&t, "Bob", "bob@example.com").await;
    for body in ["{}", ""] {
        let (code, me) = t.json_as((id(&bob), ""), "users.me", body).await;
        assert_eq!((code, &me), (None, &bob), "{body:?}");
    }
    let (code, reply) = t.json("users.me", "{}").await;
    assert_eq!(code, Some(401), "{reply}");
    assert_eq!(
        reply["message"],
        "this endpoint needs an authenticated caller"
    );
    let (code, reply) = t.json_as((id(&bob), ""), "users.me", r#"{"id":"x"}"#).await;
    assert_eq!(code, Some(400), "the request is {{}}: {reply}");

    let gone = uuid::Uuid::now_v7().to_string();
    let (code, _) = t.json_as((&gone, ""), "users.me", "{}").await;
    assert_eq!(code, Some(404), "a caller whose user no longer exists");
    let (code, _) = t.json_as(("not-a-uuid", ""), "users.me", "{}").await;
    assert_eq!(code, Some(404), "a subject that is no user id");
    t.stop().await;
}

#[actix_rt::test]
async fn another_non_admin_caller_may_neither_update_nor_delete_and_changes_nothing() {
    let t = started("forbidden").await;
    let bob = create(&t, "Bob", "bob@example.com").await;
    let carol = create(&t, "Carol", "carol@example.com").await;
    let rename = json!({"id": id(&carol), "name": "Mallory"}).to_string();
    let password = json!({"id": id(&carol), "password": "taken over!"}).to_string();
    let delete = json!({"id": id(&carol)}).to_string();
    for (endpoint, body) in [
        ("users.update", &rename),
        ("users.update", &password),
        ("users.delete", &delete),
    ] {
        // Bob with a role that is not admin.
        let (code, reply) = t.json_as((id(&bob), "ops"), endpoint, body).await;
        assert_eq!(code, Some(403), "{endpoint} {body}: {reply}");
        assert_eq!(reply["message"], "you may only change your own account");
    }
    let (_, got) = t.json("users.get", &delete).await;
    assert_eq!(got, carol, "Carol is untouched");
    let login = json!({"email": "carol@example.com", "password": "correct horse"});
    let (code, _) = t.json("users.authenticate", &login.to_string()).await;
    assert_eq!(code, None, "her password too");
    t.stop().await;
}

#[actix_rt::test]
async fn oneself_an_admin_or_a_caller_inside_the_system_may_update_and_delete() {
    let t = started("allowed").await;
    let ada = create(&t, "Ada", ADMIN).await;
    let bob = create(&t, "Bob", "bob@example.com").await;
    let carol = create(&t, "Carol", "carol@example.com").await;
    let dan = create(&t, "Dan", "dan@example.com").await;
    let rename = |user: &Value, name: &str| json!({"id": id(user), "name": name}).to_string();
    let delete = |user: &Value| json!({"id": id(user)}).to_string();

    let (code, me) = t
        .json_as((id(&bob), ""), "users.update", &rename(&bob, "Robert"))
        .await;
    assert_eq!((code, &me["name"]), (None, &json!("Robert")), "self: {me}");
    let admin = (id(&ada), "admin");
    let (code, c) = t
        .json_as(admin, "users.update", &rename(&carol, "Caroline"))
        .await;
    assert_eq!((code, &c["name"]), (None, &json!("Caroline")), "admin: {c}");
    let (code, d) = t.json("users.update", &rename(&dan, "Daniel")).await;
    assert_eq!(
        (code, &d["name"]),
        (None, &json!("Daniel")),
        "no caller: {d}"
    );

    let (code, reply) = t
        .json_as((id(&bob), ""), "users.delete", &delete(&bob))
        .await;
    assert_eq!(code, None, "self: {reply}");
    let (code, reply) = t.json_as(admin, "users.delete", &delete(&carol)).await;
    assert_eq!(code, None, "admin: {reply}");
    let (code, reply) = t.json("users.delete", &delete(&dan)).await;
    assert_eq!(code, None, "no caller: {reply}");
    let (_, page) = t.json("users.list", "{}").await;
    assert_eq!(page["users"], json!([ada]));
    t.stop().await;
}

#[actix_rt::test]
async fn list_takes_its_limit_as_a_number_or_a_numeric_string() {
    let t = started("limit").await;
    for i in 0..3 {
        create(&t, &format!("U{i}"), &format!("u{i}@example.com")).await;
    }
    for body in [r#"{"limit":2}"#, r#"{"limit":"2"}"#] {
        let (code, page) = t.json("users.list", body).await;
        assert_eq!(code, None, "{body}: {page}");
        assert_eq!(page["users"].as_array().unwrap().len(), 2, "{body}");
    }
    for body in [r#"{"limit":"two"}"#, r#"{"limit":"-1"}"#, r#"{"limit":-1}"#] {
        let (code, reply) = t.json("users.list", body).await;
        assert_eq!(code, Some(400), "{body}: {reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains("limit"), "{body}: {message}");
    }
    let (code, page) = t.json("users.list", r#"{"limit":null}"#).await;
    assert_eq!(code, None, "null is the default: {page}");
    t.stop().await;
}
