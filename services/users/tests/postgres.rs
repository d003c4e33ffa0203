//! The users service on PostgreSQL: the same endpoints, and data that outlives the service.
//! Skipped (with a note) when no server answers, unless `COURIER_REQUIRE_POSTGRES` is set.

mod common;

use common::*;
use courier_actors::Meta;
use courier_store::testing::TestDatabase;
use courier_users::domain::User;
use courier_users::endpoints::*;
use courier_users::store::Store;

#[actix_rt::test]
async fn every_endpoint_works_on_postgres_and_data_survives_a_restart() {
    let Some(db) = TestDatabase::postgres("users").await else {
        return;
    };
    let admins = |settings: &mut courier_users::Settings| {
        settings.users.admin_emails = vec!["ada@example.com".into()];
    };
    let t = start_with(db.settings.clone(), admins).await;
    let create = |name: &str, email: &str| CreateUser {
        name: name.into(),
        email: email.into(),
        password: "correct horse".into(),
    };
    let ada: User = t
        .call("users.create", &create("Ada", "ada@example.com"))
        .await
        .unwrap();
    let grace: User = t
        .call("users.create", &create("Grace", "grace@example.com"))
        .await
        .unwrap();
    assert_eq!(
        (ada.roles.as_slice(), grace.roles.len()),
        (["admin".to_owned()].as_slice(), 0)
    );
    assert_eq!(
        code(
            t.call::<_, User>("users.create", &create("Ada", "ADA@example.com"))
                .await
        ),
        409
    );
    let page: UserPage = t
        .call(
            "users.list",
            &ListUsers {
                limit: Some(1),
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (page.users[0].id.as_str(), page.next.as_deref()),
        (ada.id.as_str(), Some(ada.id.as_str()))
    );
    let clash = UpdateUser {
        id: grace.id.clone(),
        name: None,
        email: Some("ada@example.com".into()),
        password: None,
    };
    assert_eq!(code(t.call::<_, User>("users.update", &clash).await), 409);
    let auth = Authenticate {
        email: "grace@example.com".into(),
        password: "correct horse".into(),
    };
    assert_eq!(
        t.call::<_, User>("users.authenticate", &auth)
            .await
            .unwrap()
            .id,
        grace.id
    );
    let _: Deleted = t
        .call(
            "users.delete",
            &DeleteUser {
                id: grace.id.clone(),
            },
        )
        .await
        .unwrap();
    t.stop().await;

    let again = start(db.settings.clone()).await;
    let got: User = again
        .call("users.get", &GetUser { id: ada.id.clone() })
        .await
        .unwrap();
    assert_eq!(
        got, ada,
        "a created user, roles included, survives a restart"
    );
    assert_eq!(
        code(
            again
                .call::<_, User>("users.get", &GetUser { id: grace.id })
                .await
        ),
        404
    );
    again.stop().await;
    db.remove().await;
}

#[actix_rt::test]
async fn eight_instances_starting_at_once_on_a_fresh_database_all_migrate_it() {
    // One try may not hit the race: the first starts of a few fresh databases.
    for attempt in 0..4 {
        let Some(db) = TestDatabase::postgres("users").await else {
            return;
        };
        let settings = db.settings.clone();
        let starts = (0..8).map(|_| Store::connect(&settings));
        let results = futures::future::join_all(starts).await;
        let failures: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
            .collect();
        for store in results.into_iter().flatten() {
            store.close().await;
        }
        db.remove().await;
        assert_eq!(failures, Vec::<String>::new(), "attempt {attempt}");
    }
}

#[actix_rt::test]
async fn a_create_sent_twice_at_once_with_one_request_id_makes_one_user_on_postgres() {
    let Some(db) = TestDatabase::postgres("users").await else {
        return;
    };
    let t = start(db.settings.clone()).await;
    let meta = Meta::root();
    let body = CreateUser {
        name: "Ada".into(),
        email: "ada@example.com".into(),
        password: "correct horse".into(),
    };
    // At once: the second waits on the first's key, then gets its reply.
    let (first, second) = futures::join!(
        t.courier.call::<_, User>("users.create", &body, &meta),
        t.courier.call::<_, User>("users.create", &body, &meta)
    );
    let first = first.expect("the first answers 200");
    assert_eq!(second.expect("the duplicate answers 200"), first);
    // Later: a plain retry gets the stored reply.
    let retry: User = t.courier.call("users.create", &body, &meta).await.unwrap();
    assert_eq!(retry, first);
    let page: UserPage = t
        .call(
            "users.list",
            &ListUsers {
                limit: Some(10),
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.users, [first]);
    t.stop().await;
    db.remove().await;
}

#[actix_rt::test]
async fn a_request_id_reused_for_another_create_is_refused_on_postgres() {
    let Some(db) = TestDatabase::postgres("users").await else {
        return;
    };
    let t = start(db.settings.clone()).await;
    let service = &t;
    let send = |body: serde_json::Value| async move {
        let headers = [("X-Request-Id", "r-1")];
        service
            .json_with("users.create", &body.to_string(), &headers)
            .await
    };
    let user = |name: &str, email: &str| {
        let password = "correct horse";
        serde_json::json!({"name": name, "email": email, "password": password})
    };
    let (code, ada) = send(user("Ada", "ada@example.com")).await;
    assert_eq!(code, None, "{ada}");
    let (code, reply) = send(user("Eve", "eve@example.com")).await;
    assert_eq!(code, Some(422), "{reply}");
    assert!(!reply.to_string().contains("ada@example.com"), "{reply}");
    let (code, again) = send(user("Ada", "ada@example.com")).await;
    assert_eq!(
        (code, &again),
        (None, &ada),
        "a true retry gets the stored reply"
    );
    let (_, page) = t.json("users.list", "{}").await;
    assert_eq!(page["users"], serde_json::json!([ada]), "no second user");
    t.stop().await;
    db.remove().await;
}
