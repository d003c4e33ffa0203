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
    t.stop().await;
}
