//! SPEC §13, client part, against a real broker with `RUNNEL_AUTH_KEY_FILE`: every client route
//! (queue groups' included) answers 401 (with `WWW-Authenticate: Bearer`) without a valid token (none, expired, badly
//! signed, revoked), 403 outside its scopes (topic, operation, group), and serves a token that
//! covers it; health stays open; a consumer whose token expires is refused at its next poll;
//! rotating keys (two public keys at once) and HMAC secrets work; a bad key keeps the broker down.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runnel_client::tokens::{keygen, sign, Scope, TokenSpec};
use runnel_client::{Access, AccessConfig, Brokers, Consumer, ConsumerConfig, StartFrom};
use runnel_tests::{broker_binary, BrokerProcess};
use serde_json::{json, Value};

/// The topic and group the good token covers; the wrong ones are outside its scopes.
const TOPIC: &str = "orders.eu";
const GROUP: &str = "billing-1";
const CONSUMER: &str = "c-1";

fn scope(topics: &str, ops: &[&str], groups: Option<&str>) -> Scope {
    Scope { topics: topics.into(), ops: ops.iter().map(|o| o.to_string()).collect(), groups: groups.map(Into::into) }
}

fn token(key: &[u8], scopes: Vec<Scope>, ttl: Duration) -> (String, String) {
    let token = sign(key, &TokenSpec { scopes, ttl, subject: Some("test".into()), id: None }).expect("sign");
    (token.jwt, token.id)
}

/// A new key pair in `dir`: (signing key PEM, path of verify.pem).
fn keys(dir: &Path) -> (String, PathBuf) {
    let pair = keygen().expect("keygen");
    std::fs::create_dir_all(dir).expect("key dir");
    let verify = dir.join("verify.pem");
    std::fs::write(&verify, &pair.verify).expect("write verify.pem");
    (pair.signing, verify)
}

/// The tokens of the matrix, by what is wrong with them.
struct Tokens {
    /// produce and consume on `orders.*` as `billing-*`, and admin on `orders.*` as `billing-*`.
    good: String,
    /// admin on every topic: the cluster operations.
    cluster: String,
    expired: String,
    bad_signature: String,
    revoked: String,
    revoked_id: String,
    wrong_topic: String,
    wrong_op: String,
    wrong_group: String,
}

impl Tokens {
    fn new(signing: &str) -> Tokens {
        let key = signing.as_bytes();
        let hour = Duration::from_secs(3600);
        let all = |topics: &str, groups: &str| {
            vec![scope(topics, &["produce", "consume"], Some(groups)), scope(topics, &["admin"], Some(groups))]
        };
        let (revoked, revoked_id) = token(key, all("orders.*", "billing-*"), hour);
        let other = keygen().expect("another key");
        Tokens {
            good: token(key, all("orders.*", "billing-*"), hour).0,
            cluster: token(key, vec![scope("*", &["admin"], None)], hour).0,
            expired: token(key, all("orders.*", "billing-*"), Duration::from_secs(1)).0,
            bad_signature: token(other.signing.as_bytes(), all("orders.*", "billing-*"), hour).0,
            revoked,
            revoked_id,
            wrong_topic: token(key, all("payments", "billing-*"), hour).0,
            wrong_op: token(key, vec![scope("orders.*", &["produce"], Some("billing-*"))], hour).0,
            wrong_group: token(key, all("orders.*", "audit-*"), hour).0,
        }
    }
}

/// One client route and which of the wrong tokens apply to it.
struct Route {
    name: &'static str,
    method: Method,
    port: u16,
    path: String,
    body: Option<String>,
    /// The good token for this route (the cluster one for cluster operations).
    cluster_op: bool,
    /// Scopes that a wrong topic / op / group token miss for this route.
    topic: bool,
    op: bool,
    group: bool,
}

fn routes() -> Vec<Route> {
    let route = |name, method, port, path: &str, (topic, op, group): (bool, bool, bool)| Route {
        name,
        method,
        port,
        path: path.to_string(),
        body: None,
        cluster_op: false,
        topic,
        op,
        group,
    };
    let member = format!("consumerId={CONSUMER}");
    vec![
        Route {
            body: Some("{\"n\":1}".into()),
            ..route("produce", Method::POST, 9251, &format!("/v1/topic/{TOPIC}/messages"), (true, false, false))
        },
        route(
            "register",
            Method::PUT,
            9252,
            &format!("/v1/consumer/register?{member}&group={GROUP}&topic={TOPIC}&onNewGroup=startFromEarliest"),
            (true, true, true),
        ),
        route("poll", Method::POST, 9252, &format!("/v1/consumer/poll?{member}"), (true, true, true)),
        route("commit", Method::POST, 9252, &format!("/v1/consumer/commit?{member}"), (true, true, true)),
        route("read", Method::GET, 9252, &format!("/v1/topic/{TOPIC}/records?partition=0"), (true, true, false)),
        route("topic layout", Method::GET, 9252, &format!("/v1/topic/{TOPIC}"), (true, false, false)),
        route("groups", Method::GET, 9252, "/v1/groups", (false, false, false)),
        route("group", Method::GET, 9252, &format!("/v1/groups/{GROUP}"), (false, false, true)),
        Route {
            body: Some(json!({"topic": TOPIC, "to": "earliest"}).to_string()),
            ..route(
                "reset offsets",
                Method::POST,
                9252,
                &format!("/v1/groups/{GROUP}/offsets?dryRun=true&force=true"),
                (true, true, true),
            )
        },
        Route {
            body: Some(json!({"topics": [TOPIC]}).to_string()),
            ..route("queue group settings", Method::PUT, 9252, &format!("/v1/queue/{GROUP}"), (true, true, true))
        },
        route("queue next", Method::POST, 9252, &format!("/v1/queue/{GROUP}/next?topic={TOPIC}"), (true, true, true)),
        Route {
            // A token of a record of TOPIC's partition 0 ("q1:0:0:0:1:orders.eu"), leased or not.
            body: Some(json!({"ack_tokens": ["cTE6MDowOjA6MTpvcmRlcnMuZXU"]}).to_string()),
            ..route("queue ack", Method::POST, 9252, &format!("/v1/queue/{GROUP}/ack"), (true, true, true))
        },
        route("queue group", Method::GET, 9252, &format!("/v1/queue/{GROUP}"), (false, true, true)),
        route("brokers", Method::GET, 9250, "/v1/brokers", (false, false, false)),
        route("cluster", Method::GET, 9250, "/v1/cluster", (false, false, false)),
        Route {
            cluster_op: true,
            ..route("resize", Method::POST, 9250, "/v1/cluster/resize?brokers=1", (true, true, false))
        },
        Route {
            cluster_op: true,
            body: Some(json!({"id": "never-issued"}).to_string()),
            ..route("revoke", Method::POST, 9250, "/v1/tokens/revoke", (true, true, false))
        },
        route("topics", Method::GET, 9250, "/v1/topics", (false, false, false)),
        route("topic", Method::GET, 9250, &format!("/v1/topics/{TOPIC}"), (true, false, false)),
        Route {
            // As the first produce created it: answered 200, identical.
            body: Some("{}".into()),
            ..route("create topic", Method::PUT, 9250, &format!("/v1/topics/{TOPIC}"), (true, true, false))
        },
        Route {
            body: Some(json!({"retention": "2h"}).to_string()),
            ..route("change topic", Method::PATCH, 9250, &format!("/v1/topics/{TOPIC}"), (true, true, false))
        },
        route("metrics", Method::GET, 9253, "/metrics", (false, false, false)),
        // After every consumer route: it ends the registration they use.
        route("goodbye", Method::POST, 9252, &format!("/v1/consumer/goodbye?{member}"), (true, true, true)),
        // After every route that uses the topic.
        route("delete topic", Method::DELETE, 9250, &format!("/v1/topics/{TOPIC}"), (true, true, false)),
    ]
}

async fn call(
    http: &reqwest::Client,
    broker: &BrokerProcess,
    route: &Route,
    token: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut request = http.request(route.method.clone(), broker.url(route.port, &route.path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &route.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{}: {e}", route.name));
    let status = response.status();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or_default().to_string());
    (status, response.text().await.unwrap_or_default(), challenge)
}

#[tokio::test]
async fn every_client_route_answers_401_without_a_valid_token_403_outside_its_scopes_and_serves_a_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (signing, verify) = keys(&dir.path().join("keys"));
    let tokens = Tokens::new(&signing);
    let broker = BrokerProcess::start(
        &dir.path().join("broker"),
        &[("RUNNEL_AUTH_KEY_FILE", verify.to_str().expect("UTF-8")), ("RUNNEL_METRICS_AUTH", "true")],
    );
    let http = reqwest::Client::new();
    let revoke = Route {
        body: Some(json!({"id": tokens.revoked_id}).to_string()),
        ..routes().into_iter().find(|r| r.name == "revoke").expect("revoke route")
    };
    let (status, body, _) = call(&http, &broker, &revoke, Some(&tokens.cluster)).await;
    assert_eq!(status, StatusCode::OK, "revoking: {body}");
    // The expired token's second runs out.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let unauthenticated = [
        ("no token", None),
        ("expired", Some(tokens.expired.as_str())),
        ("bad signature", Some(tokens.bad_signature.as_str())),
        ("revoked", Some(tokens.revoked.as_str())),
        ("not a JWT", Some("not-a-token")),
    ];
    let (mut unauthenticated_checked, mut forbidden_checked, mut good_checked) = (0, 0, 0);
    for route in routes() {
        for (case, token) in unauthenticated {
            let (status, body, challenge) = call(&http, &broker, &route, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} with {case}: {body}", route.name);
            assert!(
                challenge.is_some_and(|c| c.starts_with("Bearer")),
                "{} with {case}: no WWW-Authenticate",
                route.name
            );
            let json: Value =
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("{}: not JSON: {body}", route.name));
            assert_eq!(json["error"], "unauthorized", "{} with {case}: {body}", route.name);
            unauthenticated_checked += 1;
        }
        let good = if route.cluster_op { &tokens.cluster } else { &tokens.good };
        let wrong = [
            ("wrong topic", route.topic, &tokens.wrong_topic),
            ("wrong op", route.op || route.cluster_op, if route.cluster_op { &tokens.good } else { &tokens.wrong_op }),
            ("wrong group", route.group, &tokens.wrong_group),
        ];
        for (case, applies, token) in wrong {
            if !applies {
                continue;
            }
            let (status, body, _) = call(&http, &broker, &route, Some(token)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{} with {case}: {body}", route.name);
            let json: Value =
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("{}: not JSON: {body}", route.name));
            assert_eq!(json["error"], "forbidden", "{} with {case}: {body}", route.name);
            forbidden_checked += 1;
        }
        let (status, body, _) = call(&http, &broker, &route, Some(good)).await;
        assert!(status.is_success(), "{} with a good token: {status} {body}", route.name);
        good_checked += 1;
    }
    // 24 routes; the wrong-scope cases that apply to them, counted by hand from the table.
    assert_eq!((unauthenticated_checked, forbidden_checked, good_checked), (24 * 5, 42, 24));

    // Only the health paths themselves are open: no spelling of another path gets past.
    for path in ["/status/", "/%73tatus", "/livez/..", "/status?x=/v1/topic/t/messages", "//status"] {
        let status = http.get(broker.url(9251, path)).send().await.expect("request").status();
        let expected = if path.starts_with("/status?") { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
        assert_eq!(status, expected, "{path}");
    }

    // Health stays open on every port, and so does the API description, a listing shows only
    // what the token covers, and the refusals are counted.
    for port in [9250, 9251, 9252] {
        for path in ["/status", "/livez"] {
            let status = http.get(broker.url(port, path)).send().await.expect("health").status();
            assert!(status.is_success(), "{port}{path}: {status}");
        }
    }
    let description = http.get(broker.url(9250, "/openapi.json")).send().await.expect("openapi");
    assert_eq!(description.status(), StatusCode::OK);
    let description: Value = description.json().await.expect("openapi JSON");
    assert_eq!(description["openapi"], "3.1.0");
    let listed = |token: String| {
        let http = http.clone();
        let url = broker.url(9252, "/v1/groups");
        async move {
            let body: Value =
                http.get(url).bearer_auth(token).send().await.expect("groups").json().await.expect("JSON");
            body["groups"]
                .as_array()
                .expect("groups")
                .iter()
                .map(|g| g["group"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(tokens.good.clone()).await, vec![GROUP.to_string()]);
    assert!(listed(tokens.wrong_group.clone()).await.is_empty(), "a token for audit-* sees no billing group");
    let metrics = http.get(broker.url(9253, "/metrics")).bearer_auth(&tokens.good).send().await.expect("metrics");
    let text = metrics.text().await.expect("metrics text");
    for reason in ["missing", "expired", "bad_signature", "revoked", "malformed", "forbidden"] {
        assert!(
            text.contains(&format!("runnel_auth_refused_total{{reason=\"{reason}\"}}")),
            "no {reason} count:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_consumer_whose_token_expires_is_refused_at_its_next_poll_and_a_new_token_resumes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (signing, verify) = keys(&dir.path().join("keys"));
    let broker =
        BrokerProcess::start(&dir.path().join("broker"), &[("RUNNEL_AUTH_KEY_FILE", verify.to_str().expect("UTF-8"))]);
    let scopes = vec![scope("orders.*", &["produce", "consume"], Some("billing-*"))];
    let (short, _) = token(signing.as_bytes(), scopes.clone(), Duration::from_secs(3));
    let issued = Instant::now();
    let access = |token: &str| {
        Access::new(AccessConfig { token: Some(token.into()), ..AccessConfig::default() }).expect("access")
    };
    let brokers = Brokers::fixed([broker.ip.to_string()]).with_access(access(&short));
    let http = brokers.access.http().clone();
    let produced = http
        .post(broker.url(9251, &format!("/v1/topic/{TOPIC}/messages")))
        .body("{\"n\":1}")
        .send()
        .await
        .expect("produce");
    assert_eq!(produced.status(), StatusCode::OK);
    // A live stream opened with the token is one long call: it ends when the token expires.
    let stream = http
        .get(broker.url(9252, &format!("/v1/topic/{TOPIC}/records?partition=0&offset=earliest")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("open a stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let streamed = tokio::spawn(async move {
        let text = stream.text().await.unwrap_or_default();
        (text, Instant::now())
    });
    let config = ConsumerConfig { start: StartFrom::Earliest, ..ConsumerConfig::new(CONSUMER, GROUP, &[TOPIC]) };
    let mut consumer = Consumer::connect(brokers, config.clone()).await.expect("register with a valid token");
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(issued.elapsed() < Duration::from_secs(3), "no record polled while the token was valid");
        got = consumer.poll().await.expect("poll with a valid token");
    }
    tokio::time::sleep((issued + Duration::from_millis(4100)).saturating_duration_since(Instant::now())).await;
    let refused = consumer.poll().await.expect_err("a poll after the token expired");
    assert!(refused.to_string().contains("401"), "{refused}");
    assert!(refused.to_string().contains("expired"), "{refused}");
    let (text, ended) =
        tokio::time::timeout(Duration::from_secs(5), streamed).await.expect("the stream ended").expect("read");
    assert!(text.contains("event: end") && text.contains("token expired"), "{text}");
    assert!(ended.duration_since(issued) < Duration::from_millis(4500), "the stream outlived its token by over 1.5 s");

    // A stream of a token revoked while it runs ends too.
    let (long, long_id) = token(signing.as_bytes(), scopes.clone(), Duration::from_secs(3600));
    let (admin, _) = token(signing.as_bytes(), vec![scope("*", &["admin"], None)], Duration::from_secs(3600));
    let plain = reqwest::Client::new();
    let stream = plain
        .get(broker.url(9252, &format!("/v1/topic/{TOPIC}/records?partition=0&offset=earliest")))
        .bearer_auth(&long)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("open a stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let streamed = tokio::spawn(stream.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!streamed.is_finished(), "the stream runs while its token is valid");
    let revoked = plain
        .post(broker.url(9250, "/v1/tokens/revoke"))
        .bearer_auth(&admin)
        .json(&json!({"id": long_id}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(3), streamed).await.expect("the stream ended").expect("join");
    let text = text.unwrap_or_default();
    assert!(text.contains("token was revoked"), "the end event names the revocation: {text}");

    let (fresh, _) = token(signing.as_bytes(), scopes, Duration::from_secs(3600));
    let renewed = Brokers::fixed([broker.ip.to_string()]).with_access(access(&fresh));
    let mut consumer = Consumer::connect(renewed, config).await.expect("register again with a new token");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let polled = consumer.poll().await.expect("poll with the new token");
        if !polled.is_empty() {
            // Nothing was committed after the refusal: the record comes again.
            assert_eq!(polled[0].value, json!({"n": 1}));
            break;
        }
        assert!(Instant::now() < deadline, "the new token's consumer got nothing");
    }
}

#[tokio::test]
async fn two_public_keys_accept_tokens_of_either_and_an_hmac_secret_works_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, old_verify) = keys(&dir.path().join("old"));
    let (new, new_verify) = keys(&dir.path().join("new"));
    let both = dir.path().join("both.pem");
    let pems = [old_verify, new_verify].map(|p| std::fs::read_to_string(p).expect("read"));
    std::fs::write(&both, pems.concat()).expect("write both keys");
    let broker =
        BrokerProcess::start(&dir.path().join("broker"), &[("RUNNEL_AUTH_KEY_FILE", both.to_str().expect("UTF-8"))]);
    let http = reqwest::Client::new();
    let url = broker.url(9251, &format!("/v1/topic/{TOPIC}/messages"));
    for key in [&old, &new] {
        let (jwt, _) = token(key.as_bytes(), vec![scope("orders.*", &["produce"], None)], Duration::from_secs(60));
        let status = http.post(&url).bearer_auth(jwt).body("{}").send().await.expect("produce").status();
        assert_eq!(status, StatusCode::OK, "a token of either key is taken while both are listed");
    }
    drop(broker);

    let secret = dir.path().join("hmac-secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("write secret");
    let broker =
        BrokerProcess::start(&dir.path().join("hmac"), &[("RUNNEL_AUTH_KEY_FILE", secret.to_str().expect("UTF-8"))]);
    let url = broker.url(9251, &format!("/v1/topic/{TOPIC}/messages"));
    let (jwt, _) = token(
        b"0123456789abcdef0123456789abcdef",
        vec![scope("orders.*", &["produce"], None)],
        Duration::from_secs(60),
    );
    assert_eq!(http.post(&url).bearer_auth(jwt).body("{}").send().await.expect("produce").status(), StatusCode::OK);
    let (ed25519, _) = token(old.as_bytes(), vec![scope("orders.*", &["produce"], None)], Duration::from_secs(60));
    let refused = http.post(&url).bearer_auth(ed25519).body("{}").send().await.expect("produce");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "an EdDSA token is refused by an HMAC broker");
}

#[tokio::test]
async fn a_broker_without_a_key_serves_everyone_and_says_so_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]);
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let status =
            http.post(broker.url(9251, "/v1/topic/open/messages")).body("{}").send().await.expect("produce").status();
        assert_eq!(status, StatusCode::OK);
    }
    let warnings = broker.log_text().matches("RUNNEL_AUTH_KEY_FILE is not set").count();
    assert_eq!(warnings, 1, "the open ports are warned about once:\n{}", broker.log_text());
}

#[test]
fn a_broker_whose_key_file_is_missing_or_invalid_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let private = dir.path().join("signing.key");
    std::fs::write(&private, keygen().expect("keygen").signing).expect("write");
    let short = dir.path().join("short");
    std::fs::write(&short, "too short").expect("write");
    for (file, says) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (private, "never the signing key"),
        (short, "at least 32 bytes"),
    ] {
        let output = Command::new(broker_binary())
            .env_clear()
            .env("RUNNEL_HOME", dir.path().join("data"))
            .env("RUNNEL_LISTEN", "127.0.0.1")
            .env("RUNNEL_AUTH_KEY_FILE", &file)
            .stdin(Stdio::null())
            .output()
            .expect("run the broker");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}: {stderr}", file.display());
        assert!(stderr.contains("RUNNEL_AUTH_KEY_FILE") && stderr.contains(says), "{}: {stderr}", file.display());
    }
}
