//! The HTTP routing table, with Spin's rules (`spin-routes`, built on `routefinder`):
//!
//! - `/a/b` matches exactly (a trailing `/` on the request path is tolerated);
//! - `/a/...` (or `/a/*`) matches `/a`, `/a/` and everything below `/a/`;
//! - `:name` segments match one path segment and are captured;
//! - the most specific route wins: segment by segment, literal > `:param` > wildcard, and on a tie
//!   the route with fewer segments (so `/a` beats `/a/...` for the path `/a`);
//! - a later duplicate of the same route replaces the earlier one (Spin warns, so do we);
//! - `{ private = true }` routes are not in the table: they are reachable only by service chaining.

use anyhow::{bail, Result};

/// One route segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    Param(String),
    Wildcard,
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Exact(_) => 2,
            Segment::Param(_) => 1,
            Segment::Wildcard => 0,
        }
    }
}

/// One routing entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// Component id.
    pub component: String,
    /// The route with the base applied (Spin's `based_route`): what `spin-matched-route` shows.
    pub based_route: String,
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub raw_route: String,
    segments: Vec<Segment>,
}

/// The routing table.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

/// A successful match.
#[derive(Debug, Clone)]
pub struct RouteMatch<'r> {
    /// The matched route.
    pub route: &'r Route,
    /// Spin's `spin-path-info`: the part matched by a trailing wildcard.
    pub path_info: String,
    /// Named `:param` captures.
    pub params: Vec<(String, String)>,
}

impl Route {
    /// Spin's synthetic route for service-chained requests: `/...` for `component`.
    pub fn synthetic(component: &str) -> Route {
        Route {
            component: component.to_string(),
            based_route: "/...".to_string(),
            raw_route: "/...".to_string(),
            segments: vec![Segment::Wildcard],
        }
    }

    /// Spin's `raw_route_or_prefix` (`spin-component-route`).
    pub fn raw_route_or_prefix(&self) -> &str {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
    }
}

fn sanitize(s: &str) -> String {
    s.strip_suffix('/').unwrap_or(s).to_string()
}

fn based(raw: &str) -> String {
    // Spin 3 has no `base` any more: it is always "/", which sanitizes to "".
    let abs = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("/{raw}")
    };
    sanitize(&abs)
}

fn parse_segments(based_route: &str) -> Result<Vec<Segment>> {
    let (prefix, wildcard) = if let Some(p) = based_route.strip_suffix("/...") {
        (p, true)
    } else if let Some(p) = based_route.strip_suffix("/*") {
        (p, true)
    } else if based_route == "..." || based_route == "*" {
        ("", true)
    } else {
        (based_route, false)
    };
    let mut segments = Vec::new();
    for s in prefix.split('/').filter(|s| !s.is_empty()) {
        if s == "..." || s == "*" {
            bail!("wildcards are allowed only at the end of a route");
        }
        if let Some(name) = s.strip_prefix(':') {
            if name.is_empty() {
                bail!("empty parameter name");
            }
            segments.push(Segment::Param(name.to_string()));
        } else {
            segments.push(Segment::Exact(s.to_string()));
        }
    }
    if wildcard {
        segments.push(Segment::Wildcard);
    }
    Ok(segments)
}

impl Router {
    /// Builds the table from `(component, raw route)` pairs in manifest order.
    pub fn build<'a>(
        routes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(Router, Vec<String>)> {
        let mut table: Vec<Route> = Vec::new();
        let mut warnings = Vec::new();
        for (component, raw) in routes {
            let based_route = based(raw);
            let segments = parse_segments(&based_route).map_err(|e| {
                anyhow::anyhow!(
                    "Error parsing route {based_route} associated with component {component}: {e}"
                )
            })?;
            let route = Route {
                component: component.to_string(),
                based_route,
                raw_route: raw.to_string(),
                segments,
            };
            if let Some(existing) = table.iter_mut().find(|r| r.raw_route == route.raw_route) {
                warnings.push(format!(
                    "route {:?} is declared more than once: component {:?} replaces {:?}",
                    route.raw_route, route.component, existing.component
                ));
                *existing = route;
            } else {
                table.push(route);
            }
        }
        // Most specific first, so matching is the first hit.
        table.sort_by(|a, b| specificity_cmp(b, a));
        Ok((Router { routes: table }, warnings))
    }

    /// All routes, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the most specific route for a request path.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        self.routes.iter().find_map(|r| match_route(r, path))
    }
}

/// Ordering: greater = more specific.
fn specificity_cmp(a: &Route, b: &Route) -> std::cmp::Ordering {
    for (x, y) in a.segments.iter().zip(&b.segments) {
        match x.rank().cmp(&y.rank()) {
            std::cmp::Ordering::Equal => continue,
            other => return other,
        }
    }
    // Tie on the common prefix: fewer segments is more specific.
    b.segments.len().cmp(&a.segments.len())
}

fn match_route<'r>(route: &'r Route, path: &str) -> Option<RouteMatch<'r>> {
    let trailing_slash = path.len() > 1 && path.ends_with('/');
    let mut parts = path.split('/').filter(|s| !s.is_empty()).peekable();
    let mut params = Vec::new();
    for seg in &route.segments {
        match seg {
            Segment::Exact(lit) => {
                if parts.next()? != lit {
                    return None;
                }
            }
            Segment::Param(name) => {
                let v = parts.next()?;
                params.push((name.clone(), v.to_string()));
            }
            Segment::Wildcard => {
                let rest: Vec<&str> = parts.collect();
                let joined = rest.join("/");
                let path_info = match (joined.is_empty(), trailing_slash) {
                    (true, false) => String::new(),
                    (true, true) => "/".to_string(),
                    (false, false) => format!("/{joined}"),
                    (false, true) => format!("/{joined}/"),
                };
                return Some(RouteMatch {
                    route,
                    path_info,
                    params,
                });
            }
        }
    }
    if parts.peek().is_some() {
        return None;
    }
    Some(RouteMatch {
        route,
        path_info: String::new(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::build(routes.iter().copied()).expect("build").0
    }

    #[test]
    fn exact_and_wildcard() {
        let r = router(&[
            ("orders", "/api/orders/..."),
            ("health", "/api/health/order"),
            ("catch", "/..."),
        ]);
        let m = r.route("/api/orders/42").expect("match");
        assert_eq!(m.route.component, "orders");
        assert_eq!(m.path_info, "/42");
        assert_eq!(m.route.based_route, "/api/orders/...");
        assert_eq!(m.route.raw_route_or_prefix(), "/api/orders");
        let m = r.route("/api/orders").expect("bare prefix");
        assert_eq!(m.route.component, "orders");
        assert_eq!(m.path_info, "");
        let m = r.route("/api/orders/").expect("slash");
        assert_eq!(m.path_info, "/");
        assert_eq!(
            r.route("/api/health/order").expect("exact").route.component,
            "health"
        );
        assert_eq!(
            r.route("/api/ordersx").expect("catch").route.component,
            "catch"
        );
        assert_eq!(r.route("/").expect("root").route.component, "catch");
    }

    #[test]
    fn not_found_without_catch_all() {
        let r = router(&[("a", "/a/..."), ("b", "/b")]);
        assert!(r.route("/c").is_none());
        assert!(r.route("/b/c").is_none());
        assert!(r.route("/ab").is_none());
        assert!(r.route("/b").is_some());
        assert!(r.route("/b/").is_some());
    }

    #[test]
    fn most_specific_wins() {
        let r = router(&[
            ("root", "/..."),
            ("short", "/a/..."),
            ("long", "/a/b/..."),
            ("exact", "/a"),
            ("param", "/a/:id"),
        ]);
        assert_eq!(r.route("/a/b/c").expect("m").route.component, "long");
        assert_eq!(r.route("/a/b").expect("m").route.component, "long");
        assert_eq!(r.route("/a/c/d").expect("m").route.component, "short");
        assert_eq!(r.route("/a").expect("m").route.component, "exact");
        let m = r.route("/a/x").expect("m");
        assert_eq!(m.route.component, "param");
        assert_eq!(m.params, vec![("id".to_string(), "x".to_string())]);
        assert_eq!(r.route("/z").expect("m").route.component, "root");
    }

    #[test]
    fn duplicates_replace_and_warn() {
        let (r, warnings) = Router::build([("a", "/x"), ("b", "/x")]).expect("build");
        assert_eq!(r.route("/x").expect("m").route.component, "b");
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn bad_routes() {
        assert!(Router::build([("a", "/.../x")]).is_err());
    }
}
