//! Issue 11, item 1: slow and idle clients cannot stop a broker. Connections that declare a
//! large body and send 10 bytes of it, chunked requests that send no chunk, heads that never
//! end and idle connections each hold at most their connection's allowance until a timeout
//! closes them, and a connection limit refuses the ones beyond it with a JSON 503.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{stalled_produce, BrokerProcess, Stall, TestClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PRODUCER_PORT: u16 = 9251;

async fn connect(broker: &BrokerProcess) -> TcpStream {
    TcpStream::connect((broker.ip, PRODUCER_PORT)).await.expect("connect to the producer port")
}

/// Everything the broker sends on `stream` until it closes it (or `within` passes).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_bodies_do_not_stop_other_producers_and_time_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 16 MiB of produce bodies: on the code before issue 11, 17 declared 1 MiB bodies took it all.
    let env = [("RUNNEL_MEMORY_LIMIT", "64MiB"), ("RUNNEL_BODY_TIMEOUT_MS", "3000")];
    let broker = BrokerProcess::start(&dir.path().join("b"), &env);
    let mut slow = Vec::new();
    for i in 0..100 {
        let stall = if i % 5 == 0 { Stall::Chunked } else { Stall::Declared { declared: 1 << 20, sent: 10 } };
        slow.push(stalled_produce(&broker, stall).await);
    }
    let client = TestClient::new(&broker);
    let big = "x".repeat(200 * 1024);
    let started = Instant::now();
    for i in 0..20 {
        let body = if i % 2 == 0 { format!("small {i}") } else { big.clone() };
        let produced = tokio::time::timeout(Duration::from_secs(5), client.produce("fast", None, "text/plain", body));
        let (status, text) = produced.await.expect("a produce beside 100 stalled bodies is answered within 5 s");
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "other producers were held up: {:?}", started.elapsed());

    // The stalled ones get a JSON 408 once the body deadline passes, and are closed.
    for stream in slow.iter_mut().take(10) {
        let answer = read_until_closed(stream, Duration::from_secs(10)).await.expect("closed after the body timeout");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""error":"request_timeout""#) && answer.contains(r#""retriable":true"#), "{answer}");
    }
    let (status, _) = client.produce("fast", None, "text/plain", "still serving").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn idle_connections_heads_that_never_end_and_connections_past_the_limit_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env =
        [("RUNNEL_MAX_CONNECTIONS", "40"), ("RUNNEL_IDLE_TIMEOUT_MS", "1500"), ("RUNNEL_HEADER_TIMEOUT_MS", "1500")];
    let broker = BrokerProcess::start(&dir.path().join("b"), &env);
    // The harness' readiness probe may still hold a connection for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..35 {
        held.push(connect(&broker).await);
    }
    for _ in 0..5 {
        let mut partial = connect(&broker).await;
        partial.write_all(b"POST /v1/topic/t/messages HTTP/1.1\r\nhost: b\r\nx-slow: ").await.expect("part of a head");
        held.push(partial);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut refused = connect(&broker).await;
    let answer = read_until_closed(&mut refused, Duration::from_secs(2)).await.expect("refused at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains(r#""error":"too_many_connections""#), "{answer}");

    // Idle connections and unfinished heads are closed by the broker, which then serves again.
    for stream in &mut held {
        let closed = read_until_closed(stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "an idle or unfinished connection stayed open past its timeout");
    }
    let metrics = reqwest::get(broker.url(9253, "/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("runnel_connections_refused_total 1"), "{metrics}");
    let (status, _) = TestClient::new(&broker).produce("t", None, "text/plain", "after").await;
    assert_eq!(status, StatusCode::OK);
}
