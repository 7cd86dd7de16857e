//! SPEC §13, TLS, against real brokers and a test CA: HTTPS on the client ports for the CLI
//! and the Rust client (HTTP/1.1 and h2 by ALPN, plain HTTP refused); a new certificate put in
//! place is served without a restart; and a 3-broker cluster whose brokers also talk TLS to
//! each other (verified against the CA) replicates, forwards and serves as without TLS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_client::tokens::{sign, Scope, TokenSpec};
use runnel_client::{Access, AccessConfig, Brokers, Consumer, ConsumerConfig, Producer, StartFrom};
use runnel_tests::tls::{served_certificate, IssuedCert, TestCa};
use runnel_tests::tokens;
use runnel_tests::{built_binary, free_loopback_ip, BrokerProcess, StaticCluster};
use serde_json::json;

fn tls_env(cert: &IssuedCert) -> Vec<(&'static str, String)> {
    vec![("RUNNEL_TLS_CERT", path(&cert.cert)), ("RUNNEL_TLS_KEY", path(&cert.key))]
}

fn path(p: &Path) -> String {
    p.to_str().expect("UTF-8 test directory").to_string()
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn trusting(ca: &TestCa, token: Option<&str>) -> Access {
    let ca_pem = std::fs::read(ca.ca_path()).expect("read ca.pem");
    let token = token.map(str::to_string);
    Access::new(AccessConfig { ca_pem: Some(ca_pem), token, ..AccessConfig::default() }).expect("access")
}

#[tokio::test]
async fn the_cli_and_the_client_use_https_with_a_private_ca_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = free_loopback_ip();
    let ca = TestCa::new(&dir.path().join("tls"));
    let cert = ca.issue("broker", &[ip], &["localhost"]);
    let env = tls_env(&cert);
    let broker = BrokerProcess::start_at(ip, &dir.path().join("broker"), &borrowed(&env));
    let host = ip.to_string();
    let runnel = built_binary("runnel");
    let ca_file = path(&ca.ca_path());

    let mut produce = Command::new(&runnel)
        .args(["produce", "--host", &host, "--ca", &ca_file, "secure", "--key", "k"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runnel produce");
    {
        use std::io::Write;
        produce.stdin.take().expect("stdin").write_all(b"{\"n\":1}\n{\"n\":2}\n").expect("write");
    }
    let produced = produce.wait_with_output().expect("wait");
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));
    let consumed = Command::new(&runnel)
        .args(["consume", "--host", &host, "--ca", &ca_file, "secure", "-n", "2"])
        .output()
        .expect("runnel consume");
    assert!(consumed.status.success(), "{}", String::from_utf8_lossy(&consumed.stderr));
    let stdout = String::from_utf8_lossy(&consumed.stdout);
    assert!(stdout.contains(r#"{"n":1}"#) && stdout.contains(r#"{"n":2}"#), "{stdout}");
    let untrusted = Command::new(&runnel).args(["brokers", "--host", &host, "--tls"]).output().expect("runnel brokers");
    assert_eq!(untrusted.status.code(), Some(1), "a certificate of an unknown CA is refused");

    // The library: discovery, a producer and a consumer over HTTPS.
    let brokers = Brokers::discover_with(&trusting(&ca, None), &host, 9250).await.expect("discover over HTTPS");
    let producer = Producer::new(brokers.clone());
    producer.send("secure", Some("k"), json!({"n": 3}).to_string()).await.expect("produce over HTTPS");
    let config = ConsumerConfig { start: StartFrom::Earliest, ..ConsumerConfig::new("c", "g", &["secure"]) };
    let mut consumer = Consumer::connect(brokers.clone(), config).await.expect("register over HTTPS");
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while values.len() < 3 {
        assert!(Instant::now() < deadline, "only {values:?} consumed");
        values.extend(consumer.poll().await.expect("poll over HTTPS").into_iter().map(|r| r.value));
    }
    assert_eq!(values, vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]);

    // h2 by ALPN for a client that offers it, HTTP/1.1 for one that does not (the client
    // library: one connection per request in flight), and no plain HTTP on a TLS port.
    let status_url = broker.url(9252, "/status");
    let ca_cert = reqwest::Certificate::from_pem(&std::fs::read(ca.ca_path()).expect("ca")).expect("ca cert");
    let h2 = reqwest::Client::builder().add_root_certificate(ca_cert).build().expect("client");
    let answered = h2.get(&status_url).send().await.expect("status over h2");
    assert_eq!((answered.status(), answered.version()), (StatusCode::OK, reqwest::Version::HTTP_2));
    let answered = brokers.access.http().get(&status_url).send().await.expect("status over HTTP/1.1");
    assert_eq!((answered.status(), answered.version()), (StatusCode::OK, reqwest::Version::HTTP_11));
    let plain = reqwest::Client::new().get(format!("http://{ip}:9252/status")).send().await;
    assert!(plain.is_err(), "plain HTTP on the TLS port: {plain:?}");
}

#[tokio::test]
async fn a_new_certificate_put_in_place_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = free_loopback_ip();
    let ca = TestCa::new(&dir.path().join("tls"));
    let cert = ca.issue("broker", &[ip], &[]);
    let env = tls_env(&cert);
    let broker = BrokerProcess::start_at(ip, &dir.path().join("broker"), &borrowed(&env));
    let first = served_certificate(ip, 9251, &ca.ca_path()).expect("the first certificate");

    // As a renewal writes it: new files beside the old, moved over them (key, then certificate).
    let (renewed_cert, renewed_key) = ca.issue_pem("broker-renewed", &[ip], &[]);
    for (target, text) in [(&cert.key, renewed_key), (&cert.cert, renewed_cert)] {
        let staged = target.with_extension("new");
        std::fs::write(&staged, text).expect("write the renewed file");
        std::fs::rename(&staged, target).expect("move it into place");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let served = served_certificate(ip, 9251, &ca.ca_path()).expect("a certificate");
        if served != first {
            break served;
        }
        assert!(Instant::now() < deadline, "the old certificate is still served 10 s after the swap");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second, rustls_pem_der(&cert.cert), "the new certificate, as on disk");
    let access = trusting(&ca, None);
    let status = access.http().get(broker.url(9252, "/status")).send().await.expect("status").status();
    assert_eq!(status, StatusCode::OK, "every port serves the new certificate");

    // A broken replacement keeps the certificate in use.
    std::fs::write(&cert.cert, "not a certificate").expect("break the file");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_certificate(ip, 9251, &ca.ca_path()), Some(second), "the last good certificate stays");
    assert!(broker.log_text().contains("kept the TLS certificate in use"), "the failed reload is logged");
}

fn rustls_pem_der(cert: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(cert).expect("a PEM certificate").to_vec()
}

#[tokio::test]
async fn a_cluster_with_tls_between_brokers_replicates_forwards_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = StaticCluster::new(dir.path(), 3);
    let ca = TestCa::new(&dir.path().join("tls"));
    let cert = ca.issue("brokers", &cluster.ips, &[]);
    let mut env = tls_env(&cert);
    env.push(("RUNNEL_PEER_TLS_CA", path(&ca.ca_path())));
    env.push(("RUNNEL_AUTH_KEY_FILE", path(&tokens::verify_key_file())));
    let mut brokers: Vec<BrokerProcess> = (0..3).map(|i| cluster.start(i, 3, &borrowed(&env))).collect();

    let access = trusting(&ca, Some(tokens::token()));
    let hosts: Vec<String> = cluster.ips.iter().map(|ip| ip.to_string()).collect();
    let fixed = Brokers::fixed(hosts.clone()).with_access(access.clone());
    // Keyed records through every broker: most are forwarded to their partition's leader.
    for (i, host) in hosts.iter().enumerate() {
        let one = Brokers::fixed([host.clone()]).with_access(access.clone());
        let producer = Producer::new(one);
        for n in 0..20 {
            let key = format!("k{}", (i * 20 + n) % 12);
            producer
                .send("replicated", Some(&key), json!({"n": i * 20 + n}).to_string())
                .await
                .expect("produce over TLS");
        }
    }
    let config = ConsumerConfig { start: StartFrom::Earliest, ..ConsumerConfig::new("c", "g", &["replicated"]) };
    let mut consumer = Consumer::connect(fixed, config).await.expect("register");
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 60 {
        assert!(Instant::now() < deadline, "only {} of 60 records consumed", seen.len());
        for record in consumer.poll().await.expect("poll") {
            seen.insert(record.value["n"].as_u64().expect("n"));
        }
    }
    assert_eq!(seen, (0..60).collect());
    // Every partition has its three copies in step (replication went over TLS).
    let view: serde_json::Value = access
        .http()
        .get(brokers[0].url(9250, "/v1/cluster"))
        .send()
        .await
        .expect("cluster view")
        .json()
        .await
        .expect("JSON");
    assert_eq!(view["raftVoters"].as_array().map(Vec::len), Some(3), "{view}");
    for broker in &brokers {
        assert!(!broker.log_text().contains("TLS handshake failed"), "a peer handshake failed:\n{}", broker.log_text());
    }

    // A token revoked through one broker is refused by all (through Raft, over TLS), also after
    // a restart; the others' tokens still work.
    let scope = Scope { topics: "*".into(), ops: vec!["produce".into()], groups: None };
    let spec = TokenSpec { scopes: vec![scope], ttl: Duration::from_secs(600), subject: None, id: None };
    let leaked = sign(tokens::signing_key().as_bytes(), &spec).expect("sign");
    // Each call on a connection of its own: a restarted broker's old connections are gone.
    let produce_with = |broker: &BrokerProcess, token: &str| {
        let http = trusting(&ca, None);
        let url = broker.url(9251, "/v1/topic/replicated/messages");
        let token = token.to_string();
        async move {
            let sent = http.http().post(&url).bearer_auth(token).body("{}").send().await;
            sent.unwrap_or_else(|e| panic!("produce to {url}: {e:?}")).status()
        }
    };
    assert_eq!(produce_with(&brokers[1], &leaked.jwt).await, StatusCode::OK);
    let revoked = access
        .http()
        .post(brokers[0].url(9250, "/v1/tokens/revoke"))
        .json(&json!({"id": leaked.id, "expiresAt": leaked.expires_at}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(5);
    for broker in &brokers {
        while produce_with(broker, &leaked.jwt).await != StatusCode::UNAUTHORIZED {
            assert!(Instant::now() < deadline, "{} still takes the revoked token after 5 s", broker.ip);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    brokers[2].restart();
    assert_eq!(produce_with(&brokers[2], &leaked.jwt).await, StatusCode::UNAUTHORIZED, "revoked after a restart");
    assert_eq!(produce_with(&brokers[2], tokens::token()).await, StatusCode::OK, "other tokens still work");
    // The peer port speaks only TLS.
    let peer = reqwest::Client::new().get(format!("http://{}:9255/raft/node", cluster.ips[0])).send().await;
    assert!(peer.is_err(), "plain HTTP on the TLS peer port: {peer:?}");
}

#[test]
fn a_broker_whose_certificate_key_or_ca_does_not_load_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("tls"));
    let cert = ca.issue("broker", &[std::net::Ipv4Addr::LOCALHOST], &[]);
    let other = ca.issue("other", &[std::net::Ipv4Addr::LOCALHOST], &[]);
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM").expect("write");
    let missing = dir.path().join("missing.pem");
    let ca_file = ca.ca_path();
    let cases: [(Vec<(&str, &Path)>, &str); 5] = [
        (vec![("RUNNEL_TLS_CERT", &missing), ("RUNNEL_TLS_KEY", &cert.key)], "RUNNEL_TLS_CERT"),
        (vec![("RUNNEL_TLS_CERT", &junk), ("RUNNEL_TLS_KEY", &cert.key)], "RUNNEL_TLS_CERT"),
        (vec![("RUNNEL_TLS_CERT", &cert.cert), ("RUNNEL_TLS_KEY", &other.key)], "does not belong"),
        (
            vec![("RUNNEL_TLS_CERT", &cert.cert), ("RUNNEL_TLS_KEY", &cert.key), ("RUNNEL_PEER_TLS_CA", &junk)],
            "RUNNEL_PEER_TLS_CA",
        ),
        (vec![("RUNNEL_PEER_TLS_CA", &ca_file)], "needs a certificate"),
    ];
    for (env, says) in cases {
        let mut command = Command::new(runnel_tests::broker_binary());
        command.env_clear().env("RUNNEL_HOME", dir.path().join("data")).env("RUNNEL_LISTEN", "127.0.0.1");
        for (k, v) in &env {
            command.env(k, v);
        }
        let output = command.stdin(Stdio::null()).output().expect("run the broker");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
    }
}
