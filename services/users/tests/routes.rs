//! The HTTP routes the users endpoints declare, as the gateway learns them from `$SRV.INFO`.

mod common;

use common::*;
use courier_testkit::micro_schema::{assert_valid, Kind};
use serde_json::Value;

#[actix_rt::test]
async fn srv_info_declares_each_endpoints_http_route_in_a_valid_reply() {
    let (dir, database) = sqlite_file("routes");
    let mut t = start(database).await;
    t.scratch = Some(dir);
    let reply = t
        .client
        .request(format!("$SRV.INFO.users.{}", t.id), bytes::Bytes::new())
        .await
        .unwrap();
    eprintln!("INFO_SIZE {}", reply.payload.len());
    let info: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_valid(Kind::Info, &info);
    let routes: Vec<[&str; 4]> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let meta = &e["metadata"];
            [
                e["subject"].as_str().unwrap(),
                meta["http.route"].as_str().unwrap_or("none"),
                meta["http.auth"].as_str().unwrap_or("none"),
                meta["http.status"].as_str().unwrap_or("none"),
            ]
        })
        .collect();
    assert_eq!(
        routes,
        [
            ["users.create", "POST /users", "public", "201"],
            ["users.get", "GET /users/{id}", "bearer", "200"],
            ["users.list", "GET /users", "bearer admin", "200"],
            ["users.update", "PATCH /users/{id}", "bearer", "200"],
            ["users.delete", "DELETE /users/{id}", "bearer", "204"],
            ["users.authenticate", "POST /auth/login", "login", "200"],
            ["users.me", "GET /users/profile", "bearer", "200"],
        ]
    );
    let titles: Vec<[String; 2]> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            [
                schema_title(e, "http.request_schema"),
                schema_title(e, "http.reply_schema"),
            ]
        })
        .collect();
    assert_eq!(
        titles,
        [
            ["CreateUser", "User"],
            ["GetUser", "User"],
            ["ListUsers", "UserPage"],
            ["UpdateUser", "User"],
            ["DeleteUser", "Deleted"],
            ["Authenticate", "none"],
            ["Me", "User"],
        ]
    );
    t.stop().await;
}

/// The title of the JSON Schema an endpoint declares under `key`, which must be a JSON object.
fn schema_title(endpoint: &Value, key: &str) -> String {
    let Some(schema) = endpoint["metadata"][key].as_str() else {
        return "none".to_owned();
    };
    let schema: Value = serde_json::from_str(schema).expect("a schema is JSON");
    assert!(
        schema.is_object() && schema.get("$schema").is_none(),
        "{schema}"
    );
    schema["title"]
        .as_str()
        .expect("schemars titles a type")
        .to_owned()
}
