//! `GET /openapi.json` on the discovery port (SPEC §15): the OpenAPI 3.1 description of every
//! client-facing route, `broker/openapi.json`, compiled in. Each operation's tags name the
//! ports that serve it (producer, consumer, discovery, metrics), and each path lists them as
//! its servers. The test below fails when a route is registered without an operation in the
//! document or the document describes a route no port has.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::SharedState;

const DOCUMENT: &str = include_str!("../../openapi.json");

pub fn routes() -> Router<SharedState> {
    Router::new().route("/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::DOCUMENT;

    /// The port (an OpenAPI tag) each router file's routes are served on: the files a port's
    /// router merges.
    const PORT_OF_FILE: [(&str, &str); 9] = [
        ("producer_api.rs", "producer"),
        ("consumer_api.rs", "consumer"),
        ("groups_api.rs", "consumer"),
        ("queue_api.rs", "consumer"),
        ("discovery_api.rs", "discovery"),
        ("tokens_api.rs", "discovery"),
        ("topics_api.rs", "discovery"),
        ("openapi_api.rs", "discovery"),
        ("metrics_api.rs", "metrics"),
    ];
    /// The default port of each tag, as the document's servers name them.
    const PORT_OF_TAG: [(&str, u16); 4] =
        [("producer", 9251), ("consumer", 9252), ("discovery", 9250), ("metrics", 9253)];
    const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

    /// The text of a call's arguments from just after its opening parenthesis to the
    /// matching close.
    fn arguments(text: &str) -> &str {
        let mut depth = 1;
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return &text[..i];
                    }
                }
                _ => {}
            }
        }
        text
    }

    /// The HTTP methods a method router expression names (`get(a).put(b)`), looking up a
    /// `let` binding when the expression is a name.
    fn methods_of(source: &str, expression: &str) -> Vec<String> {
        let expression = expression.trim();
        if expression.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            let binding = format!("let {expression} = ");
            let start = source.find(&binding).unwrap_or_else(|| panic!("no `{binding}`")) + binding.len();
            let end = start + source[start..].find(";\n").expect("the binding's end");
            return methods_of(source, &source[start..end]);
        }
        let mut methods = Vec::new();
        let mut rest = expression;
        while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
            rest = &rest[at..];
            let word: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            let after = &rest[word.len()..];
            if METHODS.contains(&word.as_str()) && after.starts_with('(') {
                methods.push(word.to_uppercase());
                rest = &after[1 + arguments(&after[1..]).len()..];
            } else if let Some(open) = after.strip_prefix('(') {
                rest = &open[arguments(open).len()..];
            } else {
                rest = after;
            }
        }
        methods
    }

    /// (port tag, path, method) of every route the routers register, read from their source.
    fn registered() -> BTreeSet<(String, String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut routes = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("src/http") {
            let path = entry.expect("entry").path();
            let whole = std::fs::read_to_string(&path).expect("source");
            // The routers, not their tests (this one's quote `.route(`).
            let source = whole.split("#[cfg(test)]").next().expect("the code").to_string();
            let file = path.file_name().and_then(|n| n.to_str()).expect("name").to_string();
            assert_eq!(
                source.matches(".route(").count(),
                source.matches(".route(\"").count(),
                "{file}: a route whose path is not a string literal, which this scan cannot read"
            );
            let mut rest = source.as_str();
            while let Some(at) = rest.find(".route(\"") {
                rest = &rest[at + ".route(\"".len()..];
                let route_path = &rest[..rest.find('"').expect("the path's end")];
                let call = arguments(rest);
                let expression = &call[route_path.len() + 1..].trim_start().trim_start_matches(',');
                let port = PORT_OF_FILE
                    .iter()
                    .find(|(f, _)| *f == file)
                    .unwrap_or_else(|| panic!("{file} registers routes: add it to PORT_OF_FILE"))
                    .1;
                let methods = methods_of(&source, expression);
                assert!(!methods.is_empty(), "{file}: no method for {route_path}");
                for method in methods {
                    routes.insert((port.to_string(), route_path.to_string(), method));
                }
            }
        }
        routes
    }

    fn documented() -> BTreeSet<(String, String, String)> {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let mut routes = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            let servers: BTreeSet<&str> = item["servers"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}: no servers"))
                .iter()
                .map(|s| s["url"].as_str().expect("a server url"))
                .collect();
            for (method, operation) in item.as_object().expect("a path item") {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                for field in ["summary", "description", "operationId"] {
                    assert!(
                        operation[field].as_str().is_some_and(|s| !s.trim().is_empty()),
                        "{method} {path}: no {field}"
                    );
                }
                assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
                let tags = operation["tags"].as_array().expect("tags");
                assert!(!tags.is_empty(), "{method} {path}: no port tag");
                for tag in tags {
                    let tag = tag.as_str().expect("a tag");
                    let port = PORT_OF_TAG.iter().find(|(t, _)| *t == tag).unwrap_or_else(|| panic!("tag {tag}")).1;
                    assert!(
                        servers.contains(format!("http://{{host}}:{port}").as_str()),
                        "{path}: no server on :{port}"
                    );
                    routes.insert((tag.to_string(), path.clone(), method.to_uppercase()));
                }
            }
        }
        routes
    }

    #[test]
    fn the_document_describes_every_registered_route_and_no_other() {
        let registered = registered();
        assert!(registered.len() >= 30, "the source scan found only {registered:?}");
        let documented = documented();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unregistered: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty() && unregistered.is_empty(),
            "routes without an operation in broker/openapi.json: {undocumented:?}\n\
             operations in broker/openapi.json no port serves: {unregistered:?}"
        );
    }

    #[test]
    fn methods_are_read_from_chains_and_bindings() {
        let source = "let messages = post(produce).get(|| async { x() });\n";
        assert_eq!(methods_of(source, "messages"), ["POST", "GET"]);
        assert_eq!(
            methods_of(source, "get(describe).put(create).patch(change).delete(delete)"),
            ["GET", "PUT", "PATCH", "DELETE"]
        );
        assert_eq!(methods_of(source, "get(super::records_api::records)"), ["GET"]);
        assert_eq!(methods_of(source, "post(|| async { get_it(1) })"), ["POST"]);
    }
}
