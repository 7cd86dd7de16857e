//! Issue 13, item 6: retry-safe polls. A poll response lost on its way (the connection closed
//! before it was read) is not committed unread: the next poll acknowledges the token of the last
//! response the client processed and gets the lost records again; nothing is skipped.

use std::time::Duration;

use reqwest::StatusCode;
use runnel_tests::{BrokerProcess, TestClient};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

fn values(polled: &runnel_tests::Polled) -> Vec<Value> {
    polled.records().into_iter().map(|r| r.3).collect()
}

async fn produce(client: &TestClient, from: usize, to: usize) {
    let lines: Vec<String> = (from..to).map(|n| json!({"n": n}).to_string()).collect();
    client.produce_lines("rs", Some("k"), &lines).await;
}

fn numbers(from: usize, to: usize) -> Vec<Value> {
    (from..to).map(|n| json!({"n": n})).collect()
}

/// Sends a poll acknowledging `token` and closes the connection without reading the answer.
async fn poll_and_drop_the_answer(broker: &BrokerProcess, consumer: &str, token: &str) {
    let address = format!("{}:9252", broker.ip);
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let request = format!(
        "POST /v1/consumer/poll?consumerId={consumer}&ack={token} HTTP/1.1\r\nHost: {address}\r\n\
         Accept: application/json\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send the poll");
    // The broker answers into the socket meanwhile; the answer is never read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
}

#[tokio::test]
async fn a_lost_poll_response_is_delivered_again_to_a_poll_acknowledging_the_previous_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    assert_eq!(client.register("c1", "g", &["rs"], Some("startFromEarliest")).await.0, StatusCode::OK);
    produce(&client, 0, 5).await;
    let first = client.poll("c1").await;
    assert_eq!((first.status, values(&first)), (StatusCode::OK, numbers(0, 5)));
    let first_token = first.token().expect("every 200 poll carries a Poll-Token").to_string();

    produce(&client, 5, 10).await;
    poll_and_drop_the_answer(&broker, "c1", &first_token).await;

    // The client processed only the first response, and says so.
    let again = client.poll_acking("c1", &first_token).await;
    assert_eq!((again.status, values(&again)), (StatusCode::OK, numbers(5, 10)), "the lost records come again");
    let again_token = again.token().expect("token").to_string();
    assert_ne!(again_token, first_token);

    produce(&client, 10, 12).await;
    let next = client.poll_acking("c1", &again_token).await;
    assert_eq!(values(&next), numbers(10, 12), "and reading goes on after them");

    // Acknowledged responses are what the group commits: a new member starts after them.
    let next_token = next.token().expect("token").to_string();
    assert_eq!(client.poll_acking("c1", &next_token).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.goodbye("c1", true).await.0, StatusCode::OK);
    // Auto-commits reach Raft within the auto-commit interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let group: Value =
            reqwest::get(broker.url(9252, "/v1/groups/g")).await.expect("group").json().await.expect("JSON");
        let topic = group["topics"].as_array().expect("topics").iter().find(|t| t["topic"] == "rs").expect("rs");
        // Partitions the group has not committed are null.
        let committed: Vec<u64> = topic["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .filter_map(|p| p["committed"].as_str()?.parse().ok())
            .collect();
        if committed == vec![12] {
            break;
        }
        assert!(std::time::Instant::now() < deadline && committed < vec![12], "{group}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A token the broker cannot know (another incarnation's) commits nothing: the consumer's
    // positions restart from the committed offsets, so records come again, never skipped.
    assert_eq!(client.register("c2", "g", &["rs"], None).await.0, StatusCode::OK);
    produce(&client, 12, 14).await;
    let read = client.poll("c2").await;
    assert_eq!(values(&read), numbers(12, 14));
    let unknown = client.poll_acking("c2", "0123456789abcdef0123456789abcdef").await;
    assert_eq!(values(&unknown), numbers(12, 14), "read again from the committed offset");
    let bad = client.poll_acking("c2", "not-a-token").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_lost_first_response_comes_again_to_a_client_that_acknowledges_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    assert_eq!(client.register("c1", "g", &["rs"], Some("startFromEarliest")).await.0, StatusCode::OK);
    produce(&client, 0, 5).await;
    // The client has processed nothing from this broker yet; its first response is lost.
    poll_and_drop_the_answer(&broker, "c1", "none").await;
    let again = client.poll_acking("c1", "none").await;
    assert_eq!(values(&again), numbers(0, 5), "the lost first response comes again");
    // A commit that says the client processed nothing commits none of it either.
    let commit = client
        .http
        .post(broker.url(9252, "/v1/consumer/commit"))
        .query(&[("consumerId", "c1"), ("ack", "none")])
        .send()
        .await
        .expect("commit");
    assert_eq!(commit.status(), StatusCode::NO_CONTENT);
    assert_eq!(client.goodbye("c1", false).await.0, StatusCode::OK);
    assert_eq!(client.register("c2", "g", &["rs"], None).await.0, StatusCode::OK);
    assert_eq!(values(&client.poll("c2").await), numbers(0, 5), "nothing was committed");
}
