use super::*;

/// The document's `$refs`, each checked to resolve.
fn refs(document: &Value) -> Vec<String> {
    let (mut found, mut copy) = (Vec::new(), document.clone());
    walk_refs(&mut copy, false, &mut |r| {
        found.push(r.to_owned());
        Some(r.to_owned())
    });
    for r in &found {
        assert!(
            document.pointer(&r[1..]).is_some(),
            "{r} dangles in {document}"
        );
    }
    found
}

/// A document of `schemas` only, its dangling `$ref`s dropped.
fn finish(schemas: Map<String, Value>) -> Value {
    let mut document = json!({ "components": { "schemas": schemas } });
    drop_dangling_refs(&mut document);
    document
}

fn page(item: Value) -> Value {
    json!({ "$schema": "x", "type": "object", "properties": { "items": { "type": "array",
        "items": { "$ref": "#/$defs/Item" } } }, "$defs": { "Item": item } })
}

#[test]
fn a_schemas_definitions_become_components_its_refs_point_at() {
    let mut schemas = Map::new();
    let item = json!({ "properties": { "default": { "$ref": "#" } } });
    let reference = component(&mut schemas, "svc", "svc_list_reply", &page(item));
    assert_eq!(
        reference,
        json!({ "$ref": "#/components/schemas/svc_list_reply" })
    );
    let reply = &schemas["svc_list_reply"];
    assert_eq!((reply.get("$schema"), reply.get("$defs")), (None, None));
    let items = &reply["properties"]["items"]["items"]["$ref"];
    assert_eq!(items, "#/components/schemas/svc_Item");
    let root = &schemas["svc_Item"]["properties"]["default"]["$ref"];
    assert_eq!(root, "#/components/schemas/svc_list_reply");
    assert_eq!(refs(&finish(schemas)).len(), 2);
}

#[test]
fn definitions_are_shared_when_the_same_and_apart_when_not() {
    let mut schemas = Map::new();
    for (name, item) in [("a", "string"), ("b", "string"), ("c", "integer")] {
        component(&mut schemas, "svc", name, &page(json!({ "type": item })));
    }
    let names: Vec<&str> = schemas.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b", "c", "c_Item", "svc_Item"]);
    assert_eq!(schemas["c_Item"]["type"], "integer");
    let c = &schemas["c"]["properties"]["items"]["items"]["$ref"];
    assert_eq!(c, "#/components/schemas/c_Item");
    assert_eq!(refs(&finish(schemas)).len(), 3);
}

#[test]
fn path_parameters_leave_the_request_and_the_rest_may_be_query_parameters() {
    let mut request = json!({ "type": "object", "required": ["id", "q"], "properties": {
        "id": { "type": "string" }, "q": { "type": "string", "description": "Query" },
        "limit": { "type": "integer" } } });
    strip_properties(&mut request, &["id"]);
    assert_eq!(request["required"], json!(["q"]));
    let mut only_id = json!({ "required": ["id"], "properties": { "id": {} } });
    strip_properties(&mut only_id, &["id"]);
    assert_eq!(only_id, json!({ "properties": {} }));
    let parameters = query_parameters(&request);
    let q = json!({ "name": "q", "in": "query", "required": true,
        "schema": { "type": "string", "description": "Query" }, "description": "Query" });
    assert_eq!(
        parameters,
        [
            json!({ "name": "limit", "in": "query", "required": false,
        "schema": { "type": "integer" } }),
            q
        ]
    );
    assert_eq!(
        query_parameters(&json!({ "type": "object" })),
        Vec::<Value>::new()
    );
}

#[test]
fn a_ref_that_points_nowhere_in_the_document_is_dropped() {
    let reply = json!({ "type": "object", "properties": {
        "a": { "$ref": "other.json#/x" }, "b": { "$ref": "#anchor", "type": "string" },
        "c": { "$ref": "#/$defs/Missing" }, "d": { "const": { "$ref": "data" } } } });
    let mut schemas = Map::new();
    component(&mut schemas, "svc", "r", &reply);
    let document = finish(schemas);
    let properties = &document["components"]["schemas"]["r"]["properties"];
    assert_eq!(properties["a"], json!({}));
    assert_eq!(properties["b"], json!({ "type": "string" }));
    assert_eq!(properties["c"], json!({}));
    assert_eq!(properties["d"], json!({ "const": { "$ref": "data" } }));
    assert_eq!(refs(&document), Vec::<String>::new());
}
