use super::*;
use serde_json::json;

#[test]
fn a_route_round_trips_through_metadata() {
    for route in [
        Route::get("/users/{id}").bearer(),
        Route::get("/users").role("admin").role("ops"),
        Route::post("/users").status(201),
        Route::post("/auth/login").login(),
        Route::delete("/users/{id}").bearer().status(204),
        Route::post("/users")
            .request_schema(json!({"type": "object", "$defs": {"N": {"type": "integer"}}}))
            .reply_schema(json!({"type": "object", "title": "User \"ü\""})),
        Route::post("/auth/login").login().request_schema(json!({})),
    ] {
        let metadata = route.to_metadata().into_iter().collect();
        assert_eq!(Route::from_metadata(&metadata), Some(Ok(route)));
    }
    assert_eq!(Route::from_metadata(&BTreeMap::new()), None);
}

#[test]
fn schemas_travel_as_compact_json_only_when_declared() {
    assert_eq!(Route::get("/x").to_metadata().len(), 3);
    let route = Route::get("/x").reply_schema(json!({ "type": "object" }));
    let metadata: BTreeMap<_, _> = route.to_metadata().into_iter().collect();
    assert_eq!(metadata[REPLY_SCHEMA_KEY], r#"{"type":"object"}"#);
    assert!(!metadata.contains_key(REQUEST_SCHEMA_KEY));
}

#[test]
fn a_schema_that_is_not_a_json_object_is_an_error() {
    for (key, schema) in [
        (REQUEST_SCHEMA_KEY, "{"),
        (REPLY_SCHEMA_KEY, "not json"),
        (REQUEST_SCHEMA_KEY, "true"),
        (REPLY_SCHEMA_KEY, r#"["type"]"#),
    ] {
        let metadata = BTreeMap::from([
            (ROUTE_KEY.to_owned(), "POST /x".to_owned()),
            (key.to_owned(), schema.to_owned()),
        ]);
        assert!(
            matches!(Route::from_metadata(&metadata), Some(Err(_))),
            "{key} {schema}"
        );
    }
    assert!(Route::get("/x").reply_schema(json!(1)).validate().is_err());
}

#[cfg(feature = "schemars")]
#[test]
fn typed_schemas_are_2020_12_with_their_defs_inside() {
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Page {
        /// The items.
        items: Vec<Item>,
    }
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Item {
        id: String,
    }
    let route = Route::get("/items").schemas::<Item, Page>();
    assert_eq!(route.validate(), Ok(()));
    let reply = route.reply_schema.unwrap();
    assert_eq!(reply.get("$schema"), None, "{reply}");
    assert_eq!(
        reply["properties"]["items"]["items"]["$ref"],
        "#/$defs/Item"
    );
    assert_eq!(reply["$defs"]["Item"]["required"], json!(["id"]));
    assert_eq!(route.request_schema.unwrap()["title"], "Item");
}

#[test]
fn malformed_templates_are_refused() {
    for bad in [
        Route::get("users"),
        Route::get("/users/"),
        Route::get("/users//x"),
        Route::get("/users/{}"),
        Route::get("/users/{id}/{id}"),
        Route::get("/users/a b"),
        Route::get("/users").status(404),
        Route::get("/users").role("a,b"),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert!(Route::get("/").validate().is_ok());
}

#[test]
fn declared_metadata_that_is_not_a_route_is_an_error() {
    let metadata = |route: &str, auth: &str| {
        BTreeMap::from([
            (ROUTE_KEY.to_owned(), route.to_owned()),
            (AUTH_KEY.to_owned(), auth.to_owned()),
        ])
    };
    for (route, auth) in [
        ("GET", "public"),
        ("FETCH /x", "public"),
        ("GET /x", "sometimes"),
    ] {
        assert!(matches!(
            Route::from_metadata(&metadata(route, auth)),
            Some(Err(_))
        ));
    }
}

#[test]
fn segments_tell_literals_from_parameters() {
    let route = Route::get("/users/{id}/orders");
    let segments: Vec<_> = route.segments().collect();
    assert_eq!(
        segments,
        [
            Segment::Literal("users"),
            Segment::Param("id"),
            Segment::Literal("orders")
        ]
    );
}
