//! The users service on the wire: request and reply types, which subject serves which, and
//! the HTTP route the gateway serves it at (declared here, published in `$SRV.INFO` with the
//! JSON Schemas of the request and the reply, made by schemars from these types; the gateway's
//! OpenAPI document shows them).
//!
//! | subject              | HTTP (through the gateway)            | request                        | reply        |
//! |----------------------|---------------------------------------|--------------------------------|--------------|
//! | `users.create`       | `POST /users`, public, 201            | `{"name","email","password"}`  | [`User`]     |
//! | `users.get`          | `GET /users/{id}`, bearer             | `{"id"}`                       | [`User`]     |
//! | `users.list`         | `GET /users?limit&after`, bearer admin | `{"limit"?, "after"?}`        | [`UserPage`] |
//! | `users.update`       | `PATCH /users/{id}`, bearer, self or admin | `{"id", "name"?, "email"?, "password"?}` | [`User`] |
//! | `users.delete`       | `DELETE /users/{id}`, bearer, self or admin, 204 | `{"id"}`            | [`Deleted`]  |
//! | `users.authenticate` | `POST /auth/login`, login             | `{"email","password"}`         | [`User`] or 401 |
//! | `users.me`           | `GET /users/profile`, bearer          | `{}`                           | [`User`]     |
//!
//! The caller: the gateway checks the route's rule (a valid token, a role) and sends the
//! token's user as `Courier-Auth-Subject` / `Courier-Auth-Roles`, which the endpoints read as
//! `Meta::caller`. A request with a caller is an end user's: `users.update` and `users.delete`
//! answer 403 unless the caller is the target user or holds role `admin`, and `users.me` is
//! the caller's own user (404 when it no longer exists). A request with no caller comes from
//! inside the system over NATS (NATS permissions keep end users off the bus) and is trusted:
//! it may change any account, and gets 401 from `users.me`, which needs someone to be.
//!
//! Writes (`users.create`, `users.update`, `users.delete`) are idempotent by request id
//! (`X-Request-Id`, which the gateway passes on from the client): a retry with the same
//! request id and the same request (body and caller) gets the first reply, and the same
//! request id with a different request is refused with 422, its first reply unseen (see
//! [`crate::fingerprint`]).
//!
//! Events: `events.users.created` ([`User`]), `events.users.deleted` ([`Deleted`]).

use courier_actors::route::schema_of;
use courier_actors::{Methods, Route, Service, ServiceBuilder};
pub use courier_contracts::users::*;

use crate::domain::ADMIN;
use crate::users::Users;

/// The service definition: every endpoint served by a [`Users`] method, with its HTTP route.
pub fn service(users: Users) -> ServiceBuilder {
    let methods = Methods::per_thread(users);
    Service::builder("users", env!("CARGO_PKG_VERSION"))
        .description("User accounts: create, read, update, delete, authenticate")
        .endpoint(
            methods.serve("create", Users::create).route(
                Route::post("/users")
                    .status(201)
                    .schemas::<CreateUser, User>(),
            ),
        )
        .endpoint(
            methods
                .serve("get", |users: Users, req, _| users.get(req))
                .route(
                    Route::get("/users/{id}")
                        .bearer()
                        .schemas::<GetUser, User>(),
                ),
        )
        .endpoint(
            methods
                .serve("list", |users: Users, req, _| users.list(req))
                .route(
                    Route::get("/users")
                        .role(ADMIN)
                        .schemas::<ListUsers, UserPage>(),
                ),
        )
        .endpoint(
            methods.serve("update", Users::update).route(
                Route::patch("/users/{id}")
                    .bearer()
                    .schemas::<UpdateUser, User>(),
            ),
        )
        .endpoint(
            methods.serve("delete", Users::delete).route(
                Route::delete("/users/{id}")
                    .bearer()
                    .status(204)
                    .schemas::<DeleteUser, Deleted>(),
            ),
        )
        .endpoint(
            methods
                .endpoint(
                    "authenticate",
                    "users.authenticate",
                    |users: Users, req, _| users.authenticate(req),
                )
                .route(
                    Route::post("/auth/login")
                        .login()
                        .request_schema(schema_of::<Authenticate>()),
                ),
        )
        .endpoint(
            methods
                .serve("me", |users: Users, _: Me, meta| users.me(meta))
                .route(Route::get("/users/profile").bearer().schemas::<Me, User>()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(json: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<ListUsers>(json)
            .map(|l| l.limit)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_limit_is_a_number_or_a_numeric_string() {
        assert_eq!(limit(r#"{"limit":2}"#), Ok(Some(2)));
        assert_eq!(limit(r#"{"limit":"2"}"#), Ok(Some(2)));
        assert_eq!(limit(r#"{"limit":"02"}"#), Ok(Some(2)));
        assert_eq!(limit(r#"{"limit":null}"#), Ok(None));
        assert_eq!(limit("{}"), Ok(None));
        for bad in [
            r#"{"limit":"two"}"#,
            r#"{"limit":-1}"#,
            r#"{"limit":"-1"}"#,
            r#"{"limit":1.5}"#,
            r#"{"limit":4294967296}"#,
            r#"{"limit":[2]}"#,
        ] {
            assert!(limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limit_round_trips_through_message_pack() {
        let list = ListUsers {
            limit: Some(7),
            after: None,
        };
        let bytes = rmp_serde::to_vec_named(&list).unwrap();
        let back: ListUsers = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.limit, Some(7));
    }

    #[test]
    fn me_takes_an_empty_object_only() {
        assert!(serde_json::from_str::<Me>("{}").is_ok());
        assert!(serde_json::from_str::<Me>(r#"{"id":"x"}"#).is_err());
    }
}
