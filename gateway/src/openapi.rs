//! The OpenAPI 3.1 document of the live route table, at `/api-docs/openapi.json`: regenerated
//! on every request, so a route a service declared a moment ago is in it.

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

/// The document for `table`.
pub fn build(table: &Table) -> Value {
    let mut paths = Map::new();
    for entry in table.entries() {
        let item = paths
            .entry(entry.route.path.clone())
            .or_insert_with(|| json!({}));
        item[entry.route.method.as_str().to_ascii_lowercase()] = operation(entry);
    }
    json!({
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
            "schemas": {
                "Error": error_schema(),
                "Token": token_schema(),
            },
        },
    })
}

fn operation(entry: &RouteEntry) -> Value {
    let route = &entry.route;
    let parameters: Vec<Value> = route
        .segments()
        .filter_map(|s| match s {
            Segment::Param(name) => Some(json!({
                "name": name, "in": "path", "required": true, "schema": { "type": "string" }
            })),
            Segment::Literal(_) => None,
        })
        .collect();
    let success = match route.access {
        Access::Login => json!({ "description": "A token for the user",
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Token" } } } }),
        _ if route.status == 204 => json!({ "description": "Done" }),
        _ => json!({ "description": "The reply of ".to_owned() + &entry.subject,
            "content": { "application/json": { "schema": { "type": "object" } } } }),
    };
    let error = json!({ "description": "An error",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let mut op = json!({
        "operationId": format!("{}_{}", entry.service, entry.endpoint),
        "tags": [entry.service],
        "summary": format!("{} ({})", entry.subject, access_label(&route.access)),
        "parameters": parameters,
        "responses": { route.status.to_string(): success, "default": error },
    });
    if matches!(route.method, Method::Post | Method::Put | Method::Patch) {
        op["requestBody"] = json!({ "required": false,
            "content": { "application/json": { "schema": { "type": "object" } } } });
    }
    if let Access::Bearer { .. } = route.access {
        op["security"] = json!([{ "bearer": [] }]);
    }
    op
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
