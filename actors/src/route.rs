//! HTTP routes declared next to endpoints (pure).
//!
//! A service says which HTTP method and path reach an endpoint through the gateway, who may call
//! it, and what status a success is. The declaration travels in the endpoint's `$SRV.INFO`
//! metadata, so `nats micro info users` shows it and the gateway learns it live:
//!
//! | key           | value                                                      |
//! |---------------|------------------------------------------------------------|
//! | `http.route`  | `GET /users/{id}`                                          |
//! | `http.auth`   | `public`, `bearer`, `bearer admin,ops` (roles, any of), `login` |
//! | `http.status` | `200`                                                      |
//! | `http.request_schema` | JSON Schema of the request, compact JSON (optional)  |
//! | `http.reply_schema`   | JSON Schema of a success reply, compact JSON (optional) |
//!
//! The schemas are what the gateway's OpenAPI document shows for the body and the reply; a
//! schema's own `$defs` travel inside it. Give them as JSON ([`Route::request_schema`],
//! [`Route::reply_schema`]) or, with this crate's `schemars` feature, made from the types
//! (`Route::schemas`, `schema_of`). The feature is off by default: the gateway only reads
//! schemas as JSON and needs no generator, so only services that declare typed routes build
//! schemars and its derive macro.
//!
//! This crate serves no HTTP: a route is data about an endpoint, read by the gateway.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Metadata key of the method and path.
pub const ROUTE_KEY: &str = "http.route";
/// Metadata key of the access rule.
pub const AUTH_KEY: &str = "http.auth";
/// Metadata key of the success status.
pub const STATUS_KEY: &str = "http.status";
/// Metadata key of the request's JSON Schema.
pub const REQUEST_SCHEMA_KEY: &str = "http.request_schema";
/// Metadata key of the success reply's JSON Schema.
pub const REPLY_SCHEMA_KEY: &str = "http.reply_schema";

/// The HTTP methods a route may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET` (and `HEAD`, answered by the gateway without a body).
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method's name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// Parses an upper-case method name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            _ => return None,
        })
    }

    /// Whether repeating the request is harmless, so the gateway may retry it elsewhere.
    pub fn is_idempotent(self) -> bool {
        matches!(self, Self::Get | Self::Put | Self::Delete)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Access {
    /// Anyone.
    #[default]
    Public,
    /// A valid bearer token, holding one of `roles` when any are named.
    Bearer {
        /// Roles of which the caller needs one; empty means any authenticated caller.
        roles: Vec<String>,
    },
    /// Anyone; the reply is a user (`id`, `email`, `roles`) for whom the gateway issues a
    /// token, answered instead of the user.
    Login,
}

/// An HTTP route to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path template: `/users/{id}`; a `{name}` segment is a path parameter that goes into
    /// the request body as field `name`.
    pub path: String,
    /// Who may call it.
    pub access: Access,
    /// The status of a success: 200 unless declared (201 for a create, 204 for no body).
    pub status: u16,
    /// JSON Schema of the request: the body with the query and the path parameters merged in.
    pub request_schema: Option<Value>,
    /// JSON Schema of a success reply (of the endpoint's; a login route answers a token).
    pub reply_schema: Option<Value>,
}

/// Why a declared route cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP route {route:?}: {problem}")]
pub struct RouteError {
    /// The route as declared.
    pub route: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Route {
    /// A public route.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            access: Access::Public,
            status: 200,
            request_schema: None,
            reply_schema: None,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::Get, path)
    }

    /// `POST path`.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::Post, path)
    }

    /// `PUT path`.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::Put, path)
    }

    /// `PATCH path`.
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::Patch, path)
    }

    /// `DELETE path`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::Delete, path)
    }

    /// Requires a valid bearer token.
    pub fn bearer(mut self) -> Self {
        if !matches!(self.access, Access::Bearer { .. }) {
            self.access = Access::Bearer { roles: Vec::new() };
        }
        self
    }

    /// Requires a bearer token holding `role` (or another role named this way).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self = self.bearer();
        if let Access::Bearer { roles } = &mut self.access {
            roles.push(role.into());
        }
        self
    }

    /// Makes this the login route: the gateway answers a token for the user the endpoint
    /// returns.
    pub fn login(mut self) -> Self {
        self.access = Access::Login;
        self
    }

    /// The status of a success.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Declares the request's JSON Schema (an object).
    pub fn request_schema(mut self, schema: Value) -> Self {
        self.request_schema = Some(schema);
        self
    }

    /// Declares a success reply's JSON Schema (an object).
    pub fn reply_schema(mut self, schema: Value) -> Self {
        self.reply_schema = Some(schema);
        self
    }

    /// Declares the schemas of `Request` and `Reply`, made by [`schema_of`].
    #[cfg(feature = "schemars")]
    pub fn schemas<Request: schemars::JsonSchema, Reply: schemars::JsonSchema>(self) -> Self {
        self.request_schema(schema_of::<Request>())
            .reply_schema(schema_of::<Reply>())
    }

    /// The path's segments, without the leading `/`.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(Segment::parse)
    }

    /// Checks the path template and the status.
    pub fn validate(&self) -> Result<(), RouteError> {
        let bad = |problem: &str| {
            Err(RouteError {
                route: format!("{} {}", self.method, self.path),
                problem: problem.to_owned(),
            })
        };
        if !self.path.starts_with('/') {
            return bad("the path must start with /");
        }
        if self.path.len() > 1 && self.path.ends_with('/') {
            return bad("the path must not end with /");
        }
        let mut params = Vec::new();
        for raw in self.path.trim_start_matches('/').split('/') {
            if self.path == "/" {
                break;
            }
            match Segment::parse(raw) {
                Segment::Literal("") => return bad("empty path segment"),
                Segment::Literal(lit) if !lit.bytes().all(literal_byte) => {
                    return bad("literal segments take letters, digits, - _ . ~ only")
                }
                Segment::Param(name) if !valid_param(name) => {
                    return bad("a parameter is {name}, letters, digits and _")
                }
                Segment::Param(name) if params.contains(&name) => {
                    return bad("a parameter is named twice")
                }
                Segment::Param(name) => params.push(name),
                Segment::Literal(_) => {}
            }
        }
        if !(200..300).contains(&self.status) {
            return bad("the success status must be 2xx");
        }
        if let Access::Bearer { roles } = &self.access {
            if roles.iter().any(|r| !valid_param(r)) {
                return bad("roles are letters, digits and _");
            }
        }
        let schemas = [&self.request_schema, &self.reply_schema];
        if schemas
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| !s.is_object()))
        {
            return bad("a schema must be a JSON object");
        }
        Ok(())
    }

    /// The metadata entries that declare this route: a schema only when declared.
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let access = match &self.access {
            Access::Public => "public".to_owned(),
            Access::Bearer { roles } if roles.is_empty() => "bearer".to_owned(),
            Access::Bearer { roles } => format!("bearer {}", roles.join(",")),
            Access::Login => "login".to_owned(),
        };
        let mut entries = vec![
            (
                ROUTE_KEY.to_owned(),
                format!("{} {}", self.method, self.path),
            ),
            (AUTH_KEY.to_owned(), access),
            (STATUS_KEY.to_owned(), self.status.to_string()),
        ];
        let schemas = [
            (REQUEST_SCHEMA_KEY, &self.request_schema),
            (REPLY_SCHEMA_KEY, &self.reply_schema),
        ];
        for (key, schema) in schemas {
            if let Some(schema) = schema {
                // `Value`'s `Display` is compact JSON.
                entries.push((key.to_owned(), schema.to_string()));
            }
        }
        entries
    }

    /// Reads a route back from endpoint metadata: `None` when the endpoint declares none.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Option<Result<Self, RouteError>> {
        let declared = metadata.get(ROUTE_KEY)?;
        let bad = |problem: &str| RouteError {
            route: declared.clone(),
            problem: problem.to_owned(),
        };
        let parse = || {
            let (method, path) = declared
                .split_once(' ')
                .ok_or_else(|| bad("not METHOD /path"))?;
            let method = Method::parse(method).ok_or_else(|| bad("unknown method"))?;
            let access = match metadata.get(AUTH_KEY).map(String::as_str) {
                None | Some("public") => Access::Public,
                Some("login") => Access::Login,
                Some("bearer") => Access::Bearer { roles: Vec::new() },
                Some(other) => match other.strip_prefix("bearer ") {
                    Some(roles) => Access::Bearer {
                        roles: roles.split(',').map(str::to_owned).collect(),
                    },
                    None => return Err(bad("unknown http.auth")),
                },
            };
            let status = match metadata.get(STATUS_KEY) {
                None => 200,
                Some(s) => s.parse().map_err(|_| bad("http.status is not a number"))?,
            };
            let schema = |key: &str| {
                metadata
                    .get(key)
                    .map(|s| serde_json::from_str(s))
                    .transpose()
                    .map_err(|_| bad(&format!("{key} is not JSON")))
            };
            let route = Route {
                method,
                path: path.to_owned(),
                access,
                status,
                request_schema: schema(REQUEST_SCHEMA_KEY)?,
                reply_schema: schema(REPLY_SCHEMA_KEY)?,
            };
            route.validate()?;
            Ok(route)
        };
        Some(parse())
    }
}

/// The JSON Schema (2020-12, OpenAPI 3.1's dialect) of `T`, without `$schema` (the document
/// it goes into says which dialect); types it refers to are in its `$defs`.
#[cfg(feature = "schemars")]
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.meta_schema = None)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// One segment of a path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Matched as written.
    Literal(&'a str),
    /// `{name}`: matches any one non-empty segment.
    Param(&'a str),
}

impl<'a> Segment<'a> {
    fn parse(raw: &'a str) -> Self {
        match raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(name) => Self::Param(name),
            None => Self::Literal(raw),
        }
    }
}

fn literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn valid_param(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests;
