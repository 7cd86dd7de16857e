//! A full disk (issue 11): a broker whose data directory is on a small loop-mounted
//! filesystem refuses produces with 507 below its disk reserve while Raft still writes, and
//! after a write and Raft really hit ENOSPC it resumes by itself once space is freed, with
//! no restart and no acknowledged record lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{BrokerProcess, TestClient};
use serde_json::Value;

const TOPIC: &str = "filling";
/// Bytes of padding per record; 50 records a request, about 200 KiB.
const PAD: usize = 4000;
const PER_REQUEST: usize = 50;

/// A small ext4 filesystem in a file, mounted on a loop device; unmounted and removed on drop,
/// so a failing test cleans up too.
struct LoopMount {
    dir: tempfile::TempDir,
    mount: PathBuf,
}

impl LoopMount {
    /// None (with the reason) where this machine cannot mount one.
    fn create(megabytes: u64) -> Result<LoopMount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("data");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let size = format!("{megabytes}M");
        // -m 0: no blocks kept for root, so the broker (root here) sees the same free space
        // that statvfs reports as available.
        let steps: [&[&str]; 3] = [
            &["truncate", "-s", &size, path(&image)],
            &["mkfs.ext4", "-q", "-m", "0", path(&image)],
            &["mount", "-o", "loop", path(&image), path(&mount)],
        ];
        for step in steps {
            let output = Command::new(step[0]).args(&step[1..]).output().map_err(|e| format!("{}: {e}", step[0]))?;
            if !output.status.success() {
                return Err(format!("{}: {}", step.join(" "), String::from_utf8_lossy(&output.stderr).trim()));
            }
        }
        Ok(LoopMount { dir, mount })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // Lazy, so a broker still holding files (a failed test) cannot keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_file(self.dir.path().join("disk.img"));
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Fills `file` with zeros: `megabytes` of them, or until the filesystem is full (None).
fn fill(file: &Path, megabytes: Option<u64>) {
    let mut dd = Command::new("dd");
    dd.arg("if=/dev/zero").arg(format!("of={}", path(file))).arg("bs=1M").arg("status=none");
    if let Some(count) = megabytes {
        dd.arg(format!("count={count}"));
    }
    // Runs into ENOSPC when unbounded: that is the point.
    let _ = dd.status().expect("run dd");
    // The last few KiB that a 1 MiB block could not take.
    if megabytes.is_none() {
        let tail = file.with_extension("tail");
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", path(&tail)))
            .args(["bs=1k", "status=none"])
            .status();
    }
    let _ = Command::new("sync").status();
}

/// Gets the mount or says why not: a failure in CI, a skip elsewhere.
fn mount_or_skip(megabytes: u64) -> Option<LoopMount> {
    match LoopMount::create(megabytes) {
        Ok(mount) => Some(mount),
        Err(reason) if std::env::var_os("CI").is_some() => panic!("cannot loop-mount a filesystem in CI: {reason}"),
        Err(reason) => {
            eprintln!("SKIPPED full_disk: cannot loop-mount a small filesystem here ({reason}); run as root with loop devices");
            None
        }
    }
}

/// One produce request of records numbered `first..first + PER_REQUEST`.
fn body(first: usize) -> String {
    (first..first + PER_REQUEST)
        .map(|n| serde_json::json!({"n": n, "pad": "x".repeat(PAD)}).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

struct Producer {
    http: reqwest::Client,
    url: String,
    next: usize,
    /// Numbers of the records acknowledged with a 200.
    acknowledged: BTreeSet<usize>,
}

/// A refusal: status, Retry-After and the JSON body.
type Refusal = (StatusCode, Option<String>, Value);

impl Producer {
    fn new(client: &TestClient) -> Producer {
        Producer {
            http: reqwest::Client::new(),
            url: client.messages_url(TOPIC),
            next: 0,
            acknowledged: BTreeSet::new(),
        }
    }

    /// Sends the next request; the refusal if it was not acknowledged.
    async fn send(&mut self) -> Option<Refusal> {
        let first = self.next;
        self.next += PER_REQUEST;
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/x-ndjson")
            .body(body(first))
            .send()
            .await
            .unwrap_or_else(|e| panic!("produce request from record {first}: {e}"));
        let status = response.status();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
        let text = response.text().await.expect("produce body");
        if status == StatusCode::OK {
            self.acknowledged.extend(first..first + PER_REQUEST);
            return None;
        }
        let json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("a {status} without a JSON body ({e}): {text}"));
        Some((status, retry_after, json))
    }

    /// Produces until a request is refused (at most `limit` requests); returns the refusal.
    async fn until_refused(&mut self, limit: usize) -> Refusal {
        for _ in 0..limit {
            if let Some(refusal) = self.send().await {
                return refusal;
            }
        }
        panic!("{limit} produce requests were all accepted on a filling disk");
    }

    /// Produces until one is acknowledged again, within `within`.
    async fn until_accepted(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let refusal = self.send().await;
            let Some((status, _, body)) = refusal else { return started.elapsed() };
            assert!(
                started.elapsed() < within,
                "produces still refused {within:?} after space was freed: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn assert_disk_refusal((status, retry_after, body): &Refusal, why: &str) {
    assert_eq!(*status, StatusCode::INSUFFICIENT_STORAGE, "{why}: {body}");
    assert!(retry_after.is_some(), "{why}: a 507 carries Retry-After");
    assert_eq!(body["error"], "insufficient_storage", "{why}: {body}");
    assert_eq!(body["retriable"], true, "{why}: {body}");
}

/// Reads the topic from the start with a new group until it has every record of `wanted` or
/// the topic has nothing more; the record numbers read.
async fn read_all(client: &TestClient, reader: &str, wanted: &BTreeSet<usize>) -> BTreeSet<usize> {
    let (status, text) = client.register(reader, reader, &[TOPIC], Some("startFromEarliest")).await;
    assert_eq!(status, StatusCode::OK, "register {reader}: {text}");
    let mut read = BTreeSet::new();
    let mut empty_polls = 0;
    while !wanted.is_subset(&read) && empty_polls < 20 {
        let polled = client.poll(reader).await;
        assert!(polled.status.is_success(), "poll got {}", polled.status);
        let records = polled.records();
        if records.is_empty() {
            empty_polls += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        read.extend(records.iter().filter_map(|(_, _, _, v)| v["n"].as_u64()).map(|n| n as usize));
    }
    read
}

fn error_lines(broker: &BrokerProcess) -> Vec<String> {
    broker.log_text().lines().filter(|l| l.contains(" ERROR ")).map(String::from).collect()
}

#[tokio::test]
async fn a_full_disk_refuses_writes_then_resumes_by_itself_when_space_is_freed() {
    let Some(disk) = mount_or_skip(120) else { return };
    let home = disk.mount.clone();

    // Part 1: the reserve (auto: 5% of 120 MB here). Leave about 25 MB, then produce until refused.
    let filler = home.join("filler");
    fill(&filler, Some(85));
    let mut broker = BrokerProcess::start(&home, &[("RUNNEL_SEGMENT_BYTES", "4194304")]);
    let client = TestClient::new(&broker);
    let mut producer = Producer::new(&client);
    let refusal = producer.until_refused(1000).await;
    assert_disk_refusal(&refusal, "below the reserve");
    assert!(refusal.2["message"].as_str().is_some_and(|m| m.contains("reserve")), "{}", refusal.2);
    assert!(!producer.acknowledged.is_empty(), "some produces were acknowledged before the disk filled");
    // The reserve is there so that Raft still writes: consumer registration and commits work.
    let (status, text) = client.register("early", "early", &[TOPIC], Some("startFromEarliest")).await;
    assert_eq!(status, StatusCode::OK, "register below the reserve: {text}");
    client.poll("early").await;
    assert_eq!(client.commit("early").await, StatusCode::NO_CONTENT, "commit below the reserve");
    let metrics = client.http.get(broker.url(9253, "/metrics")).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("metrics body");
    assert!(metrics.contains("runnel_disk_free_bytes ") && metrics.contains("runnel_disk_reserve_bytes "), "{metrics}");
    // Readiness says so: the producer port is not ready, naming the disk; the consumer port is.
    let status = client.http.get(broker.url(9251, "/status")).send().await.expect("producer /status");
    assert_eq!(status.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = status.text().await.expect("status body");
    assert!(body.contains(r#""condition":"disk_full""#), "{body}");
    let status = client.http.get(broker.url(9252, "/status")).send().await.expect("consumer /status");
    assert_eq!(status.status(), StatusCode::OK, "polls need no disk space");
    std::fs::remove_file(&filler).expect("remove the filler");
    producer.until_accepted(Duration::from_secs(10)).await;

    // Part 2: no reserve, so writes hit the full disk itself (ENOSPC), the segments' and Raft's.
    assert!(broker.terminate(), "clean stop");
    let mut broker =
        BrokerProcess::start_at(broker.ip, &home, &[("RUNNEL_SEGMENT_BYTES", "4194304"), ("RUNNEL_DISK_RESERVE", "0")]);
    let client = TestClient::new(&broker);
    // Its pooled connections were to the broker that stopped.
    producer.http = reqwest::Client::new();
    producer.until_accepted(Duration::from_secs(10)).await;
    fill(&filler, None);
    let refusal = producer.until_refused(50).await;
    assert_disk_refusal(&refusal, "a write that found the disk full");
    for _ in 0..3 {
        let again = producer.send().await.expect("still refused while the disk is full");
        assert_disk_refusal(&again, "while the disk is full");
    }
    // Raft entries (registrations) until one finds no room: it waits for space, so the
    // request times out (503) instead of Raft stopping for good.
    let mut raft_stalled = false;
    for i in 0..60 {
        let (status, _) = client.register(&format!("c{i}"), "stall", &[TOPIC], None).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            raft_stalled = true;
            break;
        }
        assert_eq!(status, StatusCode::OK, "a registration either commits or waits");
    }
    assert!(raft_stalled, "no Raft write found the disk full");
    let status = client.http.get(broker.url(9252, "/status")).send().await.expect("consumer /status");
    assert_eq!(status.status(), StatusCode::SERVICE_UNAVAILABLE, "Raft cannot write: not ready");
    let body = status.text().await.expect("status body");
    assert!(body.contains(r#""condition":"raft_waiting_for_disk""#), "{body}");
    assert!(broker.log_text().contains("Raft waits for space"), "Raft saw ENOSPC");

    // Space returns: produce, register and commit work again within seconds, no restart.
    let pid = broker.pid();
    std::fs::remove_file(&filler).expect("remove the filler");
    let _ = std::fs::remove_file(filler.with_extension("tail"));
    let took = producer.until_accepted(Duration::from_secs(15)).await;
    eprintln!("produces resumed {took:?} after space was freed");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, text) = client.register("after", "after", &[TOPIC], None).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "register still fails after space was freed: {status} {text}");
    }
    client.poll("after").await;
    assert_eq!(client.commit("after").await, StatusCode::NO_CONTENT, "commit after space was freed");
    // A partition whose write found the disk full writes it again at its next retry (every
    // second, store/writer.rs): once each has had one, every produce is taken.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..5 {
        let refused = producer.send().await;
        assert!(refused.is_none(), "produces keep working: {refused:?}");
    }
    assert!(broker.is_running() && broker.pid() == pid, "the broker was not restarted");
    broker.wait_ready(Duration::from_secs(10));
    let status = client.http.get(broker.url(9251, "/status")).send().await.expect("producer /status");
    assert_eq!(status.status(), StatusCode::OK, "{}", status.text().await.unwrap_or_default());

    // Nothing acknowledged is lost (refused records may be stored too: at least once).
    let stored = read_all(&client, "reader", &producer.acknowledged).await;
    let lost: Vec<&usize> = producer.acknowledged.difference(&stored).take(10).collect();
    assert!(lost.is_empty(), "acknowledged records missing (first 10): {lost:?}");

    let errors = error_lines(&broker);
    assert!(errors.len() <= 5, "{} ERROR lines, e.g.:\n{}", errors.len(), errors[..errors.len().min(10)].join("\n"));
}
