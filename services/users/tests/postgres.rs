//! The users service on PostgreSQL: the same endpoints, and data that outlives the service.
//! Skipped (with a note) when no server answers, unless `COURIER_REQUIRE_POSTGRES` is set.

mod common;

use common::*;
use courier_users::domain::User;
use courier_users::endpoints::*;

#[actix_rt::test]
async fn every_endpoint_works_on_postgres_and_data_survives_a_restart() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    let t = start(db.settings()).await;
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

    let again = start(db.settings()).await;
    let got: User = again
        .call("users.get", &GetUser { id: ada.id.clone() })
        .await
        .unwrap();
    assert_eq!(got, ada, "a created user survives a restart");
    assert_eq!(
        code(
            again
                .call::<_, User>("users.get", &GetUser { id: grace.id })
                .await
        ),
        404
    );
    again.stop().await;
    db.drop_db().await;
}
