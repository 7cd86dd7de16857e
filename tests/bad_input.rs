//! Bad input gets a clear 4xx, never a panic, and stored data stays intact (SPEC §8).

use reqwest::{Method, StatusCode};
use runnel_tests::{BrokerProcess, TestClient};
use serde_json::{json, Value};

#[tokio::test]
async fn every_kind_of_bad_request_gets_a_clear_4xx_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(&dir.path().join("broker"), &[("RUNNEL_MAX_REQUEST_SIZE", "1024")]);
    let client = TestClient::new(&broker);
    client.produce_lines("intact", Some("k"), &[json!({"before": true}).to_string()]).await;
    let http = &client.http;
    let producer = broker.url(9251, "");
    let consumer = broker.url(9252, "/v1/consumer");
    let long = "t".repeat(300);
    let max_ok = "t".repeat(249);

    let cases: Vec<(Method, String, Option<&str>, StatusCode)> = vec![
        (Method::POST, format!("{producer}/v1/topic/..%2Fx/messages"), Some("x"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("{producer}/v1/topic/a%2Fb/messages"), Some("x"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("{producer}/v1/topic/a/b/messages"), Some("x"), StatusCode::NOT_FOUND),
        (Method::POST, format!("{producer}/v1/topic/../messages"), Some("x"), StatusCode::NOT_FOUND),
        (Method::POST, format!("{producer}/v1/topic/{long}/messages"), Some("x"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("{producer}/v1/topic/caf%C3%A9/messages"), Some("x"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("{producer}/v1/topic/ok/messages"), Some(""), StatusCode::BAD_REQUEST),
        (Method::POST, format!("{producer}/v1/topic/%FF/messages"), Some("x"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("{producer}/v1/topic/ok/messages?partitionKey=%FE"), Some("x"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("{producer}/v1/topic/ok/messages"), None, StatusCode::BAD_REQUEST),
        (Method::GET, format!("{producer}/v1/topic/ok/messages"), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::DELETE, format!("{producer}/v1/topic/ok/messages"), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, format!("{producer}/nope"), None, StatusCode::NOT_FOUND),
        (Method::PUT, format!("{consumer}/register?group=g&topic=t"), None, StatusCode::BAD_REQUEST),
        (Method::PUT, format!("{consumer}/register?consumerId=c"), None, StatusCode::BAD_REQUEST),
        (Method::PUT, format!("{consumer}/register?consumerId=c&topic=..%2Fetc"), None, StatusCode::BAD_REQUEST),
        (Method::PUT, format!("{consumer}/register?consumerId=&topic=t"), None, StatusCode::BAD_REQUEST),
        (Method::PUT, format!("{consumer}/register?consumerId=%FF&topic=t"), None, StatusCode::BAD_REQUEST),
        (Method::PUT, format!("{consumer}/register?consumerId=%FE&topic=t"), None, StatusCode::BAD_REQUEST),
        (Method::POST, format!("{consumer}/poll?consumerId=%FF"), None, StatusCode::BAD_REQUEST),
        (
            Method::PUT,
            format!("{consumer}/register?consumerId=c&topic=t&onNewGroup=sometimes"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, format!("{consumer}/register?consumerId=c&topic=t"), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, format!("{consumer}/poll"), None, StatusCode::BAD_REQUEST),
        (Method::GET, format!("{consumer}/poll?consumerId=c"), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, format!("{consumer}/poll?consumerId=ghost"), None, StatusCode::CONFLICT),
        (Method::POST, format!("{consumer}/commit?consumerId=ghost"), None, StatusCode::CONFLICT),
        (Method::POST, format!("{consumer}/goodbye?consumerId=ghost"), None, StatusCode::CONFLICT),
        (Method::POST, format!("{consumer}/goodbye?consumerId=ghost&commit=maybe"), None, StatusCode::BAD_REQUEST),
    ];
    for (method, url, body, expected) in cases {
        let mut request = http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, expected, "{method} {url} answered {text}");
        let error: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {url}: error body is JSON: {text}"));
        assert!(error["error"].is_string() && error["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
        assert_eq!(error["retriable"], json!(false), "{method} {url}: a 4xx is not worth retrying: {text}");
    }
    // An ack that no poll answered is refused by poll, commit and goodbye alike (one of 32
    // bytes that are not hex digits once split a character and panicked the poll).
    let registered = http.put(format!("{consumer}/register?consumerId=acker&group=ackers&topic=intact")).send().await;
    assert_eq!(registered.expect("register").status(), StatusCode::OK);
    let multibyte = format!("a{}b", "é".repeat(15));
    for (path, ack) in [("poll", multibyte.as_str()), ("commit", "xyz"), ("commit", &multibyte), ("goodbye", "xyz")] {
        let response = http.post(format!("{consumer}/{path}")).query(&[("consumerId", "acker"), ("ack", ack)]).send();
        let response = response.await.expect("ack");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path} with ack {ack}");
        let error: Value = response.json().await.expect("JSON");
        assert!(error["message"].as_str().is_some_and(|m| m.starts_with("invalid ack")), "{error}");
    }
    let goodbye = http.post(format!("{consumer}/goodbye?consumerId=acker&ack=none")).send().await.expect("goodbye");
    assert_eq!(goodbye.status(), StatusCode::OK, "still registered after the refused goodbye, and none is an ack");

    // A missing resource is named as such, not as a missing endpoint.
    let missing: Value =
        http.get(broker.url(9252, "/v1/queue/nobody")).send().await.expect("queue").json().await.expect("JSON");
    assert_eq!(missing["error"], "not_found");
    assert!(missing["message"].as_str().is_some_and(|m| m.starts_with("no queue group 'nobody'")), "{missing}");

    // Our limits on the request head answer JSON before hyper's bodiless ones are reached.
    let long_query = format!("{producer}/v1/topic/ok/messages?partitionKey={}", "k".repeat(9 * 1024));
    let long_poll = format!("{consumer}/poll?consumerId={}", "c".repeat(9 * 1024));
    let big_header = "v".repeat(17 * 1024);
    let head_cases = [
        (http.post(&long_query).body("x"), StatusCode::URI_TOO_LONG, "uri_too_long"),
        (http.post(&long_poll), StatusCode::URI_TOO_LONG, "uri_too_long"),
        (
            http.post(format!("{producer}/v1/topic/ok/messages")).header("x-big", &big_header).body("x"),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
        ),
        (
            http.get(broker.url(9250, "/v1/brokers")).header("x-big", &big_header),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
        ),
    ];
    for (request, expected, code) in head_cases {
        let response = request.send().await.expect("send");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, expected, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is JSON: {text:?}"));
        assert_eq!(error["error"], code, "{text}");
        assert_eq!(error["retriable"], json!(false), "{text}");
    }

    let (status, _) = client.produce("big", None, "text/plain", "x".repeat(1025)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = client.produce("ndjson-blank", None, "application/x-ndjson", "\n\r\n\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "only empty lines is an empty body");
    let (status, _) = client.produce(&max_ok, None, "text/plain", "fine").await;
    assert_eq!(status, StatusCode::OK, "249 characters is a valid topic");

    // Still serving, nothing stored was damaged, and no file escaped the data directory.
    assert!(broker.is_running());
    client.produce_lines("intact", Some("k"), &[json!({"after": true}).to_string()]).await;
    client.register("checker", "g", &["intact"], Some("startFromEarliest")).await;
    let values: Vec<Value> = client.poll_until("checker", 2, 20).await.into_iter().map(|r| r.3).collect();
    assert_eq!(values, vec![json!({"before": true}), json!({"after": true})]);
    assert!(!dir.path().join("x").exists() && !dir.path().join("broker").join("x").exists());
    let log = broker.log_text();
    assert!(!log.contains("panicked"), "no panic in the broker log:\n{log}");
    broker.kill9();
}
