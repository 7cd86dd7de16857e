//! Issue 13, item 3: live streams on the records URL. SSE sends one event per record whose id
//! is the next offset and resumes after a dropped connection from `Last-Event-ID` with no gap
//! and no repeat; a WebSocket sends one JSON message per record; both follow records as they
//! are produced, send something at least every 15 s, and end cleanly when the partition's
//! leadership moves, so the reader resumes on another broker.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use runnel_tests::events::{Event, EventReader};
use runnel_tests::workload::{cluster_view, Endpoint};
use runnel_tests::{partition_holding, start_cluster, BrokerProcess, TestClient};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(5);

async fn produce_n(client: &TestClient, topic: &str, from: u64, to: u64) {
    let lines: Vec<String> = (from..to).map(|n| json!({"n": n}).to_string()).collect();
    client.produce_lines(topic, Some("k"), &lines).await;
}

/// The broker that leads `partition`, as `broker` sees it.
async fn leader_of(broker: &BrokerProcess, partition: u32) -> usize {
    let (_, partitions) = cluster_view(&Endpoint::of(broker)).await.expect("the cluster view");
    partitions.get(&partition).expect("the partition's leader").0 as usize
}

/// Opens the SSE stream of `topic`/`partition` on `broker`.
async fn subscribe(broker: &BrokerProcess, topic: &str, partition: u32, last_event_id: Option<&str>) -> EventReader {
    let mut request = reqwest::Client::new()
        .get(broker.url(9252, &format!("/v1/topic/{topic}/records")))
        .query(&[("partition", partition.to_string()), ("offset", "earliest".into())])
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("subscribe");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    EventReader::new(response)
}

/// (offset, n) of a record event.
fn record_of(event: &Event) -> (u64, u64) {
    let data: Value = serde_json::from_str(event.data.as_deref().expect("data")).expect("JSON data");
    let offset: u64 = data["offset"].as_str().expect("offset").parse().expect("offset");
    assert_eq!(event.id.as_deref(), Some((offset + 1).to_string().as_str()), "the id is the next offset");
    (offset, data["value"]["n"].as_u64().expect("n"))
}

#[tokio::test]
async fn sse_follows_new_records_and_resumes_from_the_last_event_id_with_no_gap_and_no_repeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    produce_n(&client, "sse", 0, 5).await;
    let p = partition_holding(&broker, "sse", 4).await;

    let mut events = subscribe(&broker, "sse", p, None).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(record_of(&events.next_event(WITHIN).await.expect("a record event")));
    }
    // Live: a record produced now arrives on the open stream.
    produce_n(&client, "sse", 5, 6).await;
    let started = Instant::now();
    seen.push(record_of(&events.next_event(WITHIN).await.expect("the live record")));
    assert!(started.elapsed() < Duration::from_secs(1), "followed within {:?}", started.elapsed());
    let last_id = (seen.last().expect("seen").0 + 1).to_string();
    drop(events);

    // Records produced while the reader was away come after the reconnect, from where it left.
    produce_n(&client, "sse", 6, 10).await;
    let mut events = subscribe(&broker, "sse", p, Some(&last_id)).await;
    for _ in 6..10 {
        seen.push(record_of(&events.next_event(WITHIN).await.expect("a record after the reconnect")));
    }
    assert_eq!(seen, (0..10).map(|n| (n, n)).collect::<Vec<_>>(), "no gap, no repeat");

    // Nothing new: a comment keeps the connection alive well within 15 s.
    let quiet = Instant::now();
    let heartbeat = events.next(Duration::from_secs(15)).await.expect("a heartbeat");
    assert_eq!(heartbeat.comment.as_deref(), Some("heartbeat"));
    assert!(quiet.elapsed() <= Duration::from_secs(15));

    // A bad start is an error status, not a stream.
    let response = reqwest::Client::new()
        .get(broker.url(9252, "/v1/topic/sse/records"))
        .query(&[("partition", p.to_string()), ("offset", "99".into())])
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn a_websocket_receives_one_json_message_per_record_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    produce_n(&client, "ws", 0, 3).await;
    let p = partition_holding(&broker, "ws", 4).await;
    let url =
        broker.url(9252, &format!("/v1/topic/ws/records?partition={p}&offset=earliest")).replace("http://", "ws://");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket handshake");
    let mut next_text = async || loop {
        let message = tokio::time::timeout(WITHIN, socket.next()).await.expect("a message in time");
        match message.expect("open").expect("a message") {
            tokio_tungstenite::tungstenite::Message::Text(text) => {
                return serde_json::from_str::<Value>(text.as_str()).expect("JSON message")
            }
            tokio_tungstenite::tungstenite::Message::Ping(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    };
    for n in 0..3 {
        let record = next_text().await;
        assert_eq!((record["offset"].as_str(), record["value"]["n"].as_u64()), (Some(n.to_string().as_str()), Some(n)));
        assert_eq!(record["partition"].as_u64(), Some(u64::from(p)));
    }
    produce_n(&client, "ws", 3, 5).await;
    for n in 3..5 {
        assert_eq!(next_text().await["value"]["n"].as_u64(), Some(n), "live");
    }
}

#[tokio::test]
async fn a_stream_ends_cleanly_when_leadership_moves_and_resumes_on_another_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let client = TestClient::new(&brokers[0]);
    produce_n(&client, "move", 0, 3).await;
    let p = partition_holding(&brokers[0], "move", 12).await;
    let leader = leader_of(&brokers[0], p).await;
    let (reader, other) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    // Read through a broker that does not lead the partition, then kill its leader.
    let mut events = subscribe(&brokers[reader], "move", p, None).await;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for _ in 0..3 {
        seen.push(record_of(&events.next_event(WITHIN).await.expect("a record")));
    }
    brokers[leader].kill9();
    let end = events.next_event(Duration::from_secs(20)).await.expect("an end event");
    assert_eq!(end.event.as_deref(), Some("end"), "{end:?}");
    let data: Value = serde_json::from_str(end.data.as_deref().expect("data")).expect("JSON");
    assert_eq!(data["nextOffset"].as_str(), Some("3"), "{data}");
    assert!(events.next(Duration::from_secs(2)).await.is_none(), "the stream is over");

    // The reader resumes elsewhere; records produced meanwhile arrive once each.
    let survivor = TestClient::new(&brokers[other]);
    produce_n(&survivor, "move", 3, 6).await;
    let mut events = subscribe(&brokers[other], "move", p, Some("3")).await;
    for _ in 3..6 {
        seen.push(record_of(&events.next_event(WITHIN).await.expect("a record after the move")));
    }
    assert_eq!(seen, (0..6).map(|n| (n, n)).collect::<Vec<_>>());
}

/// A reader that stops reading its stream for 30 s while 200 MB are produced to the partition
/// it follows: the broker's memory stays within its bound (docs/design.md, resource bounds:
/// RUNNEL_MEMORY_LIMIT, plus the process' own overhead, plus one stream read in the transport),
/// and the stream is still there, in order, when the reader comes back.
#[tokio::test]
async fn a_stalled_stream_reader_does_not_grow_the_broker() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LIMIT_MIB: u64 = 96;
    const OVERHEAD_MIB: u64 = 40 + LIMIT_MIB / 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[("RUNNEL_MEMORY_LIMIT", "96MiB")]);
    let client = TestClient::new(&broker);
    produce_n(&client, "stall", 0, 1).await;
    let p = partition_holding(&broker, "stall", 4).await;

    let address = format!("{}:9252", broker.ip);
    let mut reader = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let request = format!(
        "GET /v1/topic/stall/records?partition={p}&offset=earliest HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    );
    reader.write_all(request.as_bytes()).await.expect("subscribe");
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(WITHIN, reader.read(&mut head)).await.expect("the stream starts").expect("read");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));

    // 200 MB while the reader reads nothing: 200 requests of 1,000 records of about 1 KiB.
    let stalled_since = Instant::now();
    let line = json!({"pad": "x".repeat(1000)}).to_string();
    let body = vec![line; 1000].join("\n");
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let (url, body) = (client.messages_url("stall"), body.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for _ in 0..50 {
                    let response = http
                        .post(&url)
                        .query(&[("partitionKey", "k")])
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("produce");
                    assert_eq!(response.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.expect("producer");
    }
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stalled_since.elapsed())).await;
    let peak = broker.peak_resident_mib();
    eprintln!("peak resident memory with a stalled stream reader: {peak} MiB");
    assert!(
        peak <= LIMIT_MIB + OVERHEAD_MIB,
        "peak resident memory {peak} MiB, bound {} MiB",
        LIMIT_MIB + OVERHEAD_MIB
    );

    // The reader comes back: the stream goes on where it was.
    let mut text = String::from_utf8_lossy(&head[..n]).into_owned();
    let mut buffer = vec![0u8; 1 << 16];
    while !text.contains("id: 50\n") {
        let n =
            tokio::time::timeout(WITHIN, reader.read(&mut buffer)).await.expect("the stream goes on").expect("read");
        assert!(n > 0, "the stream closed");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    let ids: Vec<u64> = text.lines().filter_map(|l| l.strip_prefix("id: ")).map(|id| id.parse().expect("id")).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "in order from the first record");
}

/// The client's follow from `latest` (`runnel tail`): it has seen no record when the
/// partition's leader is killed, and records produced while leadership moves arrive once each,
/// because every event (a heartbeat too) tells it where it stands.
#[tokio::test]
async fn a_client_following_from_latest_loses_nothing_across_a_leadership_move() {
    use runnel_client::{Brokers, Position, Reader};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let client = TestClient::new(&brokers[0]);
    produce_n(&client, "latest", 0, 3).await;
    let p = partition_holding(&brokers[0], "latest", 12).await;
    let leader = leader_of(&brokers[0], p).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let reader = Reader::new(Brokers::fixed(others.iter().map(|i| brokers[*i].ip.to_string())));
    let mut follow = Box::pin(reader.follow("latest", p, Position::Latest));
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let following = tokio::spawn(async move {
        while let Some(record) = follow.next().await {
            if sender.send(record.expect("a record").value["n"].as_u64().expect("n")).is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    brokers[leader].kill9();
    let survivor = TestClient::new(&brokers[others[0]]);
    produce_n(&survivor, "latest", 3, 6).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(30), received.recv()).await.expect("a record in time");
        seen.push(n.expect("the follow goes on"));
    }
    assert_eq!(seen, vec![3, 4, 5], "the records produced across the move, once each, in order");
    following.abort();
}
