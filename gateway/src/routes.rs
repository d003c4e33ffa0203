//! The route table (pure): every HTTP route the services declared, and matching a request's
//! method and path to one of them.
//!
//! A literal segment beats a parameter at the first place two templates differ, so
//! `GET /users/profile` wins over `GET /users/{id}` whatever order they were learned in. Two
//! services claiming the same method and template is a conflict: the service whose name sorts
//! first keeps the route, and the conflict is logged and listed, never a silent overwrite.

use std::collections::BTreeMap;
use std::sync::Arc;

use courier_actors::route::Segment;
use courier_actors::{Method, Route};

/// One route and where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The declaration.
    pub route: Route,
    /// The service that declared it.
    pub service: String,
    /// The endpoint's name (as `$SRV.INFO` shows it).
    pub endpoint: String,
    /// The endpoint's subject: `users.get`.
    pub subject: String,
    /// Sent to the subject itself (its queue group picks a responder) instead of to an
    /// instance picked through discovery: a static route from the gateway's settings.
    pub direct: bool,
}

impl RouteEntry {
    /// `GET /users/{id}`: the label metrics and logs use.
    pub fn template(&self) -> String {
        format!("{} {}", self.route.method, self.route.path)
    }

    /// The template with parameter names erased, so `/u/{id}` and `/u/{key}` collide.
    fn shape(&self) -> (Method, Vec<Option<&str>>) {
        let segments = self.route.segments().map(|s| match s {
            Segment::Literal(l) => Some(l),
            Segment::Param(_) => None,
        });
        (self.route.method, segments.collect())
    }
}

/// Two services declaring one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `GET /users/{id}`.
    pub route: String,
    /// The service that keeps it.
    pub kept: String,
    /// The service whose claim is ignored.
    pub ignored: String,
}

/// What a request's method and path lead to.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A route, and the path parameters' values (percent-decoded).
    Found(&'a Arc<RouteEntry>, Vec<(&'a str, String)>),
    /// The path is known, with other methods.
    MethodNotAllowed(Vec<Method>),
    /// Nothing is served there.
    NotFound,
}

/// An immutable table; the learner builds a new one on every change.
#[derive(Debug, Default)]
pub struct Table {
    entries: Vec<Arc<RouteEntry>>,
    conflicts: Vec<Conflict>,
}

impl Table {
    /// A table of the routes of every service (by service name).
    pub fn build(services: &BTreeMap<String, Vec<RouteEntry>>) -> Self {
        Self::build_from(services.values().flatten())
    }

    /// A table of `entries`; of two that claim one route, the earlier keeps it.
    pub fn build_from<'a>(entries: impl IntoIterator<Item = &'a RouteEntry>) -> Self {
        let mut table = Table::default();
        for entry in entries {
            let shape = entry.shape();
            match table.entries.iter().find(|e| e.shape() == shape) {
                Some(kept) if kept.service != entry.service => {
                    table.conflicts.push(Conflict {
                        route: entry.template(),
                        kept: kept.service.clone(),
                        ignored: entry.service.clone(),
                    });
                }
                Some(_) => {}
                None => table.entries.push(Arc::new(entry.clone())),
            }
        }
        table
    }

    /// Every route, in the order learned.
    pub fn entries(&self) -> &[Arc<RouteEntry>] {
        &self.entries
    }

    /// Routes two services claimed.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// The route for `method` and `path` (a raw, percent-encoded path without the query).
    pub fn find(&self, method: Method, path: &str) -> Lookup<'_> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let segments: &[&str] = if segments == [""] { &[] } else { &segments };
        let mut best: Option<(&Arc<RouteEntry>, Vec<bool>)> = None;
        let mut allowed = Vec::new();
        for entry in &self.entries {
            let Some(literals) = matches(&entry.route, segments) else {
                continue;
            };
            if entry.route.method != method {
                allowed.push(entry.route.method);
                continue;
            }
            if best.as_ref().is_none_or(|(_, b)| literals > *b) {
                best = Some((entry, literals));
            }
        }
        match best {
            Some((entry, _)) => {
                let params = entry.route.segments().zip(segments);
                let params = params.filter_map(|(seg, value)| match seg {
                    Segment::Param(name) => Some((name, percent_decode(value))),
                    Segment::Literal(_) => None,
                });
                Lookup::Found(entry, params.collect())
            }
            None if !allowed.is_empty() => {
                allowed.sort();
                allowed.dedup();
                Lookup::MethodNotAllowed(allowed)
            }
            None => Lookup::NotFound,
        }
    }
}

/// Whether `route` matches `segments`; if so, which positions matched a literal.
fn matches(route: &Route, segments: &[&str]) -> Option<Vec<bool>> {
    let mut literals = Vec::with_capacity(segments.len());
    let mut template = route.segments();
    for value in segments {
        match template.next()? {
            Segment::Literal(l) if l == *value => literals.push(true),
            Segment::Param(_) if !value.is_empty() => literals.push(false),
            _ => return None,
        }
    }
    template.next().is_none().then_some(literals)
}

/// `%XX` escapes decoded; an invalid escape or non-UTF-8 result is kept as sent.
fn percent_decode(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_owned();
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                // Both digits are below 16: the byte fits.
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(service: &str, route: Route, subject: &str) -> RouteEntry {
        RouteEntry {
            route,
            service: service.into(),
            endpoint: subject.replace('.', "_"),
            subject: subject.into(),
            direct: false,
        }
    }

    fn users_table() -> Table {
        let users = vec![
            entry("users", Route::get("/users/{id}").bearer(), "users.get"),
            entry("users", Route::get("/users/profile").bearer(), "users.me"),
            entry("users", Route::get("/users").role("admin"), "users.list"),
            entry("users", Route::post("/users").status(201), "users.create"),
            entry("users", Route::delete("/users/{id}"), "users.delete"),
        ];
        Table::build(&BTreeMap::from([("users".to_owned(), users)]))
    }

    fn found(table: &Table, method: Method, path: &str) -> (String, Vec<(String, String)>) {
        match table.find(method, path) {
            Lookup::Found(e, params) => (
                e.subject.clone(),
                params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter() {
        let table = users_table();
        assert_eq!(found(&table, Method::Get, "/users/profile").0, "users.me");
        let (subject, params) = found(&table, Method::Get, "/users/42");
        assert_eq!(subject, "users.get");
        assert_eq!(params, [("id".to_owned(), "42".to_owned())]);
    }

    #[test]
    fn parameters_are_percent_decoded() {
        let table = users_table();
        let (_, params) = found(&table, Method::Get, "/users/a%20b%2Fc");
        assert_eq!(params[0].1, "a b/c");
        let (_, params) = found(&table, Method::Get, "/users/100%");
        assert_eq!(params[0].1, "100%");
    }

    #[test]
    fn a_known_path_with_another_method_is_not_allowed_and_others_not_found() {
        let table = users_table();
        assert!(matches!(
            table.find(Method::Put, "/users/1"),
            Lookup::MethodNotAllowed(m) if m == [Method::Get, Method::Delete]
        ));
        assert!(matches!(
            table.find(Method::Get, "/nothing"),
            Lookup::NotFound
        ));
        assert!(matches!(
            table.find(Method::Get, "/users/1/x"),
            Lookup::NotFound
        ));
        assert!(matches!(
            table.find(Method::Get, "/users/"),
            Lookup::NotFound
        ));
        assert_eq!(found(&table, Method::Post, "/users").0, "users.create");
    }

    #[test]
    fn two_services_claiming_one_route_is_a_conflict_and_the_first_keeps_it() {
        let services = BTreeMap::from([
            (
                "accounts".to_owned(),
                vec![entry(
                    "accounts",
                    Route::get("/users/{key}"),
                    "accounts.get",
                )],
            ),
            (
                "users".to_owned(),
                vec![entry("users", Route::get("/users/{id}"), "users.get")],
            ),
        ]);
        let table = Table::build(&services);
        assert_eq!(table.entries().len(), 1);
        assert_eq!(found(&table, Method::Get, "/users/1").0, "accounts.get");
        assert_eq!(
            table.conflicts(),
            [Conflict {
                route: "GET /users/{id}".into(),
                kept: "accounts".into(),
                ignored: "users".into(),
            }]
        );
    }

    #[test]
    fn the_root_path_can_be_a_route() {
        let services = BTreeMap::from([(
            "home".to_owned(),
            vec![entry("home", Route::get("/"), "home.index")],
        )]);
        let table = Table::build(&services);
        assert_eq!(found(&table, Method::Get, "/").0, "home.index");
    }
}
