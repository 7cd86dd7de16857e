//! SPEC §3 against a real broker: formats, keys, JSON acknowledgements and status codes.

use reqwest::StatusCode;
use runnel_tests::{BrokerProcess, TestClient};
use serde_json::Value;

fn start() -> (tempfile::TempDir, BrokerProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[("RUNNEL_MAX_REQUEST_SIZE", "65536")]);
    (dir, broker)
}

async fn produce_json(client: &TestClient, topic: &str, key: Option<&str>, ndjson: &str) -> Value {
    let mut request = client
        .http
        .post(client.messages_url(topic))
        .header("content-type", "application/x-ndjson")
        .header("accept", "application/json")
        .body(ndjson.to_string());
    if let Some(key) = key {
        request = request.query(&[("partitionKey", key)]);
    }
    let response = request.send().await.expect("produce");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON acknowledgement")
}

#[tokio::test]
async fn ndjson_and_single_records_are_acknowledged_with_offsets() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);

    let (status, body) = client.produce("orders", None, "application/json", r#"{"id":1}"#).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));

    let first = produce_json(&client, "orders", Some("customer-7"), "{\"a\":1}\r\n\n{\"a\":2}\n{\"a\":3}\n").await;
    assert_eq!(first["count"], 3, "three non-empty lines are three records: {first}");
    assert_eq!(first["topic"], "orders");
    let second = produce_json(&client, "orders", Some("customer-7"), "{\"a\":4}").await;
    assert_eq!(second["partition"], first["partition"], "same key, same partition");
    let start: u64 = first["startOffset"].as_str().expect("decimal string").parse().expect("number");
    assert_eq!(second["startOffset"].as_str(), Some((start + 3).to_string().as_str()), "offsets follow on");
    assert!(second["token"].as_str().expect("token string").parse::<i64>().is_ok());
}

#[tokio::test]
async fn chunked_bodies_are_accepted_and_the_size_limit_gives_413() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);
    let lines = futures_lines(3);
    let stream = tokio_stream_body(lines.clone());
    let (status, body) = client.produce("chunked", None, "application/x-ndjson", stream).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let big = "x".repeat(65537);
    let (status, body) = client.produce("chunked", None, "text/plain", big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("body_too_large"), "{body}");
    let (status, _) = client.produce("chunked", None, "text/plain", tokio_stream_body(vec![big])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "a chunked body over the limit is refused too");
    let (status, _) = client.produce("chunked", None, "text/plain", "y".repeat(65536)).await;
    assert_eq!(status, StatusCode::OK, "exactly the limit is fine");
}

fn futures_lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{{\"n\":{i}}}\n")).collect()
}

/// A body sent with `Transfer-Encoding: chunked` (no Content-Length).
fn tokio_stream_body(parts: Vec<String>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter(parts.into_iter().map(Ok::<_, std::io::Error>)))
}

#[tokio::test]
async fn status_discovery_and_metrics_endpoints_answer() {
    let (_dir, broker) = start();
    let http = reqwest::Client::new();
    for port in [9250, 9251, 9252] {
        let r = http.get(broker.url(port, "/status")).send().await.expect("status");
        assert_eq!(r.status(), StatusCode::OK, "port {port}");
    }
    let brokers: Value =
        http.get(broker.url(9250, "/v1/brokers")).send().await.expect("brokers").json().await.expect("json");
    assert_eq!(brokers["length"], 1);
    assert_eq!(brokers["names"][0], broker.ip.to_string());
    assert_eq!((brokers["producerPort"].as_u64(), brokers["consumerPort"].as_u64()), (Some(9251), Some(9252)));

    let client = TestClient::new(&broker);
    client.produce_lines("metered", None, &["{\"a\":1}".into(), "{\"a\":2}".into()]).await;
    let metrics = http.get(broker.url(9253, "/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("runnel_produce_records_total 2"), "{metrics}");
    assert!(metrics.contains("runnel_http_requests_total{endpoint=\"produce\",status=\"200\"} 1"), "{metrics}");
    assert!(metrics.contains("runnel_fsync_latency_seconds_count"), "{metrics}");
}

#[tokio::test]
async fn a_request_still_uploading_when_shutdown_begins_gets_503_with_retry_after() {
    let (_dir, mut broker) = start();
    let client = TestClient::new(&broker);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|part| (part, rx))
    }));
    let request =
        client.http.post(client.messages_url("late")).header("content-type", "application/x-ndjson").body(body).send();
    let pending = tokio::spawn(request);
    tx.send(Ok(b"{\"first\":1}\n".to_vec())).await.expect("first part");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let pid = broker.pid().expect("running");
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.send(Ok(b"{\"last\":2}\n".to_vec())).await.expect("last part");
    drop(tx);
    let response = pending.await.expect("task").expect("response");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert!(broker.terminate_wait(), "the broker still exits cleanly");
}

#[tokio::test]
async fn client_ports_speak_h2c_with_prior_knowledge() {
    let (_dir, broker) = start();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let response = h2
        .post(broker.url(9251, "/v1/topic/h2/messages"))
        .header("content-type", "application/json")
        .body("{\"over\":\"h2c\"}")
        .send()
        .await
        .expect("h2c produce");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    for port in [9250, 9252] {
        let r = h2.get(broker.url(port, "/status")).send().await.expect("h2c status");
        assert_eq!((r.version(), r.status()), (reqwest::Version::HTTP_2, StatusCode::OK));
    }
}
