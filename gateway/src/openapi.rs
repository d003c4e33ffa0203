//! The OpenAPI 3.1 document of the live route table, at `/api-docs/openapi.json`: regenerated
//! on every request, so a route a service declared a moment ago is in it.
//!
//! A route's declared JSON Schemas ([`courier_actors::route`]) become components:
//! `<service>_<endpoint>_request` (the body, without the path parameters, which travel in the
//! path; for `GET` and `DELETE`, which take no body, its properties are query parameters) and
//! `<service>_<endpoint>_reply`. A schema's `$defs` (or draft-07 `definitions`) become
//! components too, `<service>_<Name>` when every route of the service that has one agrees on
//! it, else `<service>_<endpoint>_<kind>_<Name>`, and its `$ref`s are rewritten to them. A
//! `$ref` that still points nowhere in the document (another file, an anchor) is dropped, which
//! leaves the schema as loose as it was strict there: every `$ref` in the document resolves.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use courier_actors::route::Segment;
use courier_actors::{Access, Method};
use serde_json::{json, Map, Value};

use crate::proxy::Gateway;
use crate::routes::{RouteEntry, Table};

/// `GET /api-docs/openapi.json`.
pub async fn document(gateway: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().json(build(&gateway.directory.snapshot().table))
}

/// Swagger UI at `/api`, its files served by the gateway itself (no CDN: it works offline),
/// reading the live document.
pub fn swagger_ui() -> impl actix_web::dev::HttpServiceFactory {
    swagger_ui_dist::generate_scope(swagger_ui_dist::ApiDefinition {
        uri_prefix: "/api",
        api_definition: swagger_ui_dist::OpenApiSource::Uri("/api-docs/openapi.json"),
        title: Some("Courier gateway"),
    })
}

/// How `/services` and the document describe an access rule.
pub fn access_label(access: &Access) -> String {
    match access {
        Access::Public => "public".to_owned(),
        Access::Bearer { roles } if roles.is_empty() => "bearer".to_owned(),
        Access::Bearer { roles } => format!("bearer, one of: {}", roles.join(", ")),
        Access::Login => "public; login: answers a token".to_owned(),
    }
}

/// Where component schemas are: the prefix of a `$ref` to one.
const COMPONENTS: &str = "#/components/schemas/";
/// Where a schema keeps the schemas its `$ref`s name.
const DEFS: [&str; 2] = ["$defs", "definitions"];
/// Keywords whose values are maps of names to schemas.
const SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];
/// Keywords whose values are data, not schemas: a `$ref` in there is not one.
const DATA: [&str; 5] = ["const", "default", "enum", "example", "examples"];

/// The document for `table`.
pub fn build(table: &Table) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::from_iter([
        ("Error".to_owned(), error_schema()),
        ("Token".to_owned(), token_schema()),
    ]);
    for entry in table.entries() {
        let item = paths
            .entry(entry.route.path.clone())
            .or_insert_with(|| json!({}));
        item[entry.route.method.as_str().to_ascii_lowercase()] = operation(entry, &mut schemas);
    }
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Courier gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every route the running services declare, learned live.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            },
            "schemas": schemas,
        },
    });
    drop_dangling_refs(&mut document);
    document
}

fn operation(entry: &RouteEntry, schemas: &mut Map<String, Value>) -> Value {
    let route = &entry.route;
    let id = format!("{}_{}", entry.service, entry.endpoint);
    let params: Vec<&str> = route
        .segments()
        .filter_map(|s| match s {
            Segment::Param(name) => Some(name),
            Segment::Literal(_) => None,
        })
        .collect();
    let mut parameters: Vec<Value> = params
        .iter()
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    let error = json!({ "description": "An error",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let mut op = json!({
        "operationId": id,
        "tags": [entry.service],
        "summary": format!("{} ({})", entry.subject, access_label(&route.access)),
        "responses": { route.status.to_string(): success(entry, &id, schemas), "default": error },
    });
    let request = route.request_schema.clone().map(|mut schema| {
        let name = format!("{id}_request");
        hoist_defs(schemas, &entry.service, &name, &mut schema);
        strip_properties(&mut schema, &params);
        (name, schema)
    });
    if matches!(route.method, Method::Post | Method::Put | Method::Patch) {
        op["requestBody"] = request_body(request, schemas);
    } else if let Some((_, schema)) = request {
        parameters.extend(query_parameters(&schema));
    }
    op["parameters"] = parameters.into();
    if let Access::Bearer { .. } = route.access {
        op["security"] = json!([{ "bearer": [] }]);
    }
    op
}

/// The success response: a token for a login, nothing for a 204, else the declared reply.
fn success(entry: &RouteEntry, id: &str, schemas: &mut Map<String, Value>) -> Value {
    let route = &entry.route;
    let schema = match (&route.access, &route.reply_schema) {
        (Access::Login, _) => json!({ "$ref": "#/components/schemas/Token" }),
        _ if route.status == 204 => return json!({ "description": "Done" }),
        (_, Some(reply)) => component(schemas, &entry.service, &format!("{id}_reply"), reply),
        (_, None) => json!({ "type": "object" }),
    };
    let description = match route.access {
        Access::Login => "A token for the user".to_owned(),
        _ => format!("The reply of {}", entry.subject),
    };
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// The body of a `POST`, `PUT` or `PATCH`: required when its schema requires a field.
fn request_body(request: Option<(String, Value)>, schemas: &mut Map<String, Value>) -> Value {
    let (required, schema) = match request {
        Some((name, schema)) => {
            let required = schema["required"].as_array().is_some_and(|r| !r.is_empty());
            schemas.insert(name.clone(), schema);
            (required, json!({ "$ref": format!("{COMPONENTS}{name}") }))
        }
        None => (false, json!({ "type": "object" })),
    };
    json!({ "required": required, "content": { "application/json": { "schema": schema } } })
}

/// Leaves the path parameters out of a request schema: they travel in the path.
fn strip_properties(schema: &mut Value, params: &[&str]) {
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        params.iter().for_each(|p| drop(properties.remove(*p)));
    }
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| !params.iter().any(|p| r == p));
        if required.is_empty() {
            schema.as_object_mut().map(|s| s.remove("required"));
        }
    }
}

/// The request's properties as query parameters (of a `GET` or a `DELETE`).
fn query_parameters(schema: &Value) -> Vec<Value> {
    let required = |name: &str| {
        schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|n| n == name))
    };
    let properties = schema["properties"].as_object().into_iter().flatten();
    properties
        .map(|(name, property)| {
            let mut parameter = json!({ "name": name, "in": "query",
                "required": required(name), "schema": property });
            if let Some(description) = property.get("description") {
                parameter["description"] = description.clone();
            }
            parameter
        })
        .collect()
}

/// Adds `schema` as the component `name`, its definitions beside it; a `$ref` to it.
fn component(schemas: &mut Map<String, Value>, service: &str, name: &str, schema: &Value) -> Value {
    let mut schema = schema.clone();
    hoist_defs(schemas, service, name, &mut schema);
    schemas.insert(name.to_owned(), schema);
    json!({ "$ref": format!("{COMPONENTS}{name}") })
}

/// Moves the definitions of `schema` (to be the component `root`) into `schemas` and points its
/// `$ref`s at them: shared by the service's schemas when the same, else `root`'s own.
fn hoist_defs(schemas: &mut Map<String, Value>, service: &str, root: &str, schema: &mut Value) {
    let mut defs = BTreeMap::new();
    if let Some(object) = schema.as_object_mut() {
        // A `$id` would move the base its `$ref`s resolve against; the document names the dialect.
        object.remove("$id");
        object.remove("$schema");
        for keyword in DEFS {
            if let Some(Value::Object(map)) = object.remove(keyword) {
                defs.extend(map);
            }
        }
    }
    for prefix in [service, root] {
        let names: BTreeMap<String, String> = defs
            .keys()
            .map(|def| (def.clone(), format!("{prefix}_{}", component_name(def))))
            .collect();
        let mut hoisted = defs.clone();
        hoisted
            .values_mut()
            .for_each(|d| rebase_refs(d, &names, root));
        let hoisted: Vec<_> = hoisted
            .into_iter()
            .map(|(d, s)| (names[&d].clone(), s))
            .collect();
        let agree = hoisted
            .iter()
            .all(|(n, s)| schemas.get(n).is_none_or(|old| old == s));
        if agree || prefix == root {
            schemas.extend(hoisted);
            rebase_refs(schema, &names, root);
            return;
        }
    }
}

/// Points a schema's local `$ref`s into the components: a definition's at its component in
/// `names`, any other (`#`, `#/properties/...`) into the component `root`.
fn rebase_refs(schema: &mut Value, names: &BTreeMap<String, String>, root: &str) {
    walk_refs(schema, false, &mut |reference| {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Some(reference.to_owned());
        };
        for keyword in DEFS {
            let Some(rest) = pointer.strip_prefix(&format!("/{keyword}/")) else {
                continue;
            };
            let (def, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if let Some(name) = names.get(&def.replace("~1", "/").replace("~0", "~")) {
                return Some(format!("{COMPONENTS}{name}{tail}"));
            }
        }
        match pointer.is_empty() || pointer.starts_with('/') {
            true => Some(format!("{COMPONENTS}{root}{pointer}")),
            false => Some(reference.to_owned()),
        }
    });
}

/// Removes every `$ref` that does not resolve inside `document`.
fn drop_dangling_refs(document: &mut Value) {
    let whole = document.clone();
    walk_refs(document, false, &mut |reference| {
        let pointer = reference.strip_prefix('#')?;
        whole.pointer(pointer).map(|_| reference.to_owned())
    });
}

/// Calls `f` on every `$ref` in `value` (a map of names to schemas when `named`), which
/// answers the new reference, or `None` to remove it.
fn walk_refs(value: &mut Value, named: bool, f: &mut impl FnMut(&str) -> Option<String>) {
    match value {
        Value::Object(map) if named => map.values_mut().for_each(|v| walk_refs(v, false, f)),
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                match f(reference) {
                    Some(new) => map["$ref"] = new.into(),
                    None => drop(map.remove("$ref")),
                }
            }
            for (key, v) in map.iter_mut() {
                if key != "$ref" && !DATA.contains(&key.as_str()) {
                    walk_refs(v, SCHEMA_MAPS.contains(&key.as_str()), f);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| walk_refs(v, false, f)),
        _ => {}
    }
}

/// A definition's name as a component name may be: letters, digits, `.`, `-` and `_`.
fn component_name(def: &str) -> String {
    def.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                true => c,
                false => '_',
            },
        )
        .collect()
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["statusCode", "message", "error", "timestamp", "path", "requestId"],
        "properties": {
            "statusCode": { "type": "integer" },
            "message": { "type": "string" },
            "error": { "type": "string" },
            "timestamp": { "type": "string", "format": "date-time" },
            "path": { "type": "string" },
            "requestId": { "type": "string" },
            "details": {},
        },
    })
}

fn token_schema() -> Value {
    json!({
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": { "type": "string" },
            "token_type": { "type": "string", "const": "Bearer" },
            "expires_in": { "type": "integer" },
        },
    })
}

#[cfg(test)]
mod tests;
