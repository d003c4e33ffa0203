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
//!
//! This crate serves no HTTP: a route is data about an endpoint, read by the gateway.

use std::collections::BTreeMap;
use std::fmt;

/// Metadata key of the method and path.
pub const ROUTE_KEY: &str = "http.route";
/// Metadata key of the access rule.
pub const AUTH_KEY: &str = "http.auth";
/// Metadata key of the success status.
pub const STATUS_KEY: &str = "http.status";

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
        Ok(())
    }

    /// The metadata entries that declare this route.
    pub fn to_metadata(&self) -> [(String, String); 3] {
        let access = match &self.access {
            Access::Public => "public".to_owned(),
            Access::Bearer { roles } if roles.is_empty() => "bearer".to_owned(),
            Access::Bearer { roles } => format!("bearer {}", roles.join(",")),
            Access::Login => "login".to_owned(),
        };
        [
            (
                ROUTE_KEY.to_owned(),
                format!("{} {}", self.method, self.path),
            ),
            (AUTH_KEY.to_owned(), access),
            (STATUS_KEY.to_owned(), self.status.to_string()),
        ]
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
            let route = Route {
                method,
                path: path.to_owned(),
                access,
                status,
            };
            route.validate()?;
            Ok(route)
        };
        Some(parse())
    }
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
mod tests {
    use super::*;

    #[test]
    fn a_route_round_trips_through_metadata() {
        for route in [
            Route::get("/users/{id}").bearer(),
            Route::get("/users").role("admin").role("ops"),
            Route::post("/users").status(201),
            Route::post("/auth/login").login(),
            Route::delete("/users/{id}").bearer().status(204),
        ] {
            let metadata = route.to_metadata().into_iter().collect();
            assert_eq!(Route::from_metadata(&metadata), Some(Ok(route)));
        }
        assert_eq!(Route::from_metadata(&BTreeMap::new()), None);
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
}
