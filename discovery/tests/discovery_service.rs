//! The `runnel-discovery` binary, started as a real process and asked over HTTP, finding brokers
//! through an in-process DNS server on 127.0.0.1.

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{eventually, TestDns, SERVICE};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// A running `runnel-discovery`, killed if the test ends before it stops.
struct Discovery {
    child: Child,
    address: SocketAddr,
    http: reqwest::Client,
}

impl Discovery {
    /// Starts the binary on 127.0.0.1 with a port the OS picks, and reads the port from its log.
    fn start(env: &[(&str, String)]) -> Discovery {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runnel-discovery"))
            .env_clear()
            .env("RUNNEL_LISTEN", "127.0.0.1")
            .env("RUNNEL_DISCOVERY_PORT", "0")
            .env("RUNNEL_DISCOVERY_REFRESH_MS", "200")
            .env("RUNNEL_LOG", "info")
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start runnel-discovery");
        let stdout = child.stdout.take().expect("piped stdout");
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("runnel-discovery: {line}");
                if line.contains("serving GET /v1/brokers") {
                    let listening = line.split_whitespace().find_map(|field| field.strip_prefix("address="));
                    let _ = found.send(listening.and_then(|address| address.parse::<SocketAddr>().ok()));
                }
            }
        });
        let address = match address.recv_timeout(WAIT) {
            Ok(Some(address)) => address,
            other => {
                let _ = child.kill();
                panic!("runnel-discovery did not say where it listens: {other:?}");
            }
        };
        // Loopback only: never through a proxy from the environment.
        let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
        Discovery { child, address, http }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("http://{}{path}", self.address))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    /// `GET /v1/brokers` once it answers 200 with `length` brokers.
    async fn brokers_once(&self, length: usize) -> Value {
        eventually(WAIT, &format!("{length} brokers"), || async {
            let response = self.get("/v1/brokers").await;
            if response.status() != 200 {
                return None;
            }
            let body: Value = response.json().await.expect("JSON body");
            (body["length"] == length).then_some(body)
        })
        .await
    }

    /// Asks it to stop with SIGTERM and waits for it to exit.
    fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().expect("wait for runnel-discovery") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("runnel-discovery did not stop within 5 s of SIGTERM");
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn headless(dns: &TestDns) -> Vec<(&'static str, String)> {
    vec![("RUNNEL_SERVICE_NAME", SERVICE.to_owned()), ("RUNNEL_DNS_SERVER", dns.address.to_string())]
}

async fn assert_unavailable(discovery: &Discovery, path: &str) {
    let response = discovery.get(path).await;
    assert_eq!(response.status(), 503, "{path}");
    assert_eq!(response.headers().get("retry-after").map(|value| value.as_bytes()), Some(&b"1"[..]), "{path}");
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"], "unavailable", "{body}");
}

#[tokio::test]
async fn serves_the_headless_service_brokers_and_follows_changes() {
    let dns = TestDns::start().await;
    dns.set_aaaa(SERVICE, &["fd00::3", "fd00::2", "fd00::4"]).await;
    let discovery = Discovery::start(&headless(&dns));

    let body = discovery.brokers_once(3).await;
    assert_eq!(
        body,
        json!({"length": 3, "names": ["[fd00::2]", "[fd00::3]", "[fd00::4]"], "producerPort": 9251, "consumerPort": 9252})
    );
    let status = discovery.get("/status").await;
    assert_eq!(status.status(), 200);

    dns.set_aaaa(SERVICE, &["fd00::2", "fd00::3", "fd00::4", "fd00::5"]).await;
    let body = discovery.brokers_once(4).await;
    assert_eq!(body["names"], json!(["[fd00::2]", "[fd00::3]", "[fd00::4]", "[fd00::5]"]));

    dns.set_aaaa(SERVICE, &["fd00::5"]).await;
    let body = discovery.brokers_once(1).await;
    assert_eq!(body["names"], json!(["[fd00::5]"]));

    // Every broker gone: not ready, and clients are told to retry.
    dns.set_aaaa(SERVICE, &[]).await;
    eventually(WAIT, "/status 503", || async { (discovery.get("/status").await.status() == 503).then_some(()) }).await;
    assert_unavailable(&discovery, "/status").await;
    assert_unavailable(&discovery, "/v1/brokers").await;

    let exit = discovery.terminate();
    assert!(exit.success(), "runnel-discovery exited with {exit} after SIGTERM");
}

#[tokio::test]
async fn status_is_503_until_a_broker_is_known() {
    let dns = TestDns::start().await;
    let discovery = Discovery::start(&headless(&dns));
    assert_unavailable(&discovery, "/status").await;
    assert_unavailable(&discovery, "/v1/brokers").await;

    dns.set_aaaa(SERVICE, &["fd00::7"]).await;
    eventually(WAIT, "/status 200", || async { (discovery.get("/status").await.status() == 200).then_some(()) }).await;
    assert_eq!(discovery.brokers_once(1).await["names"], json!(["[fd00::7]"]));
}

#[tokio::test]
async fn keeps_serving_the_last_brokers_while_dns_fails() {
    let dns = TestDns::start().await;
    dns.set_aaaa(SERVICE, &["fd00::2", "fd00::3"]).await;
    let discovery = Discovery::start(&headless(&dns));
    discovery.brokers_once(2).await;

    dns.fail_queries(true);
    let failed_from = dns.queries();
    eventually(WAIT, "failed lookups", || async { (dns.queries() >= failed_from + 3).then_some(()) }).await;
    assert_eq!(discovery.get("/status").await.status(), 200);
    assert_eq!(discovery.brokers_once(2).await["names"], json!(["[fd00::2]", "[fd00::3]"]));
}

#[tokio::test]
async fn serves_a_static_list_as_given_with_the_configured_ports() {
    let discovery = Discovery::start(&[
        ("RUNNEL_BROKER_NAMES", "runnel-1.local, runnel-0.local".to_owned()),
        ("RUNNEL_PRODUCER_PORT", "19251".to_owned()),
        ("RUNNEL_CONSUMER_PORT", "19252".to_owned()),
    ]);
    let body = discovery.brokers_once(2).await;
    assert_eq!(
        body,
        json!({"length": 2, "names": ["runnel-1.local", "runnel-0.local"], "producerPort": 19251, "consumerPort": 19252})
    );
    assert_eq!(discovery.get("/status").await.status(), 200);
    assert_eq!(discovery.get("/nope").await.status(), 404);
    let exit = discovery.terminate();
    assert!(exit.success(), "runnel-discovery exited with {exit} after SIGTERM");
}

#[test]
fn refuses_to_start_without_a_broker_source() {
    let output = Command::new(env!("CARGO_BIN_EXE_runnel-discovery"))
        .env_clear()
        .env("RUNNEL_LISTEN", "127.0.0.1")
        .env("RUNNEL_DISCOVERY_PORT", "0")
        .output()
        .expect("run runnel-discovery");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--service-name") && stderr.contains("--broker-names"), "{stderr}");
}
