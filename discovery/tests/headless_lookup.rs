//! The library against a real (in-process) authoritative DNS server on 127.0.0.1.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use common::{eventually, TestDns, SERVICE};
use hickory_server::proto::op::ResponseCode;
use runnel_discovery::{BrokerSource, DiscoveryError};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(10);
const REFRESH: Duration = Duration::from_millis(200);

fn source(dns: &TestDns, service: &str) -> BrokerSource {
    BrokerSource::Headless { service: service.to_owned(), dns_server: Some(dns.address) }
}

/// Waits until the watched list equals `expected`.
async fn wait_for_list(brokers: &mut watch::Receiver<Vec<String>>, expected: &[&str]) {
    let waited = tokio::time::timeout(WAIT, brokers.wait_for(|list| list == expected)).await.map(|found| found.is_ok());
    match waited {
        Ok(true) => {}
        Ok(false) => panic!("the watcher stopped before the list became {expected:?}"),
        Err(_) => panic!("timed out waiting for {expected:?}, last list {:?}", *brokers.borrow()),
    }
}

#[tokio::test]
async fn resolve_returns_the_aaaa_records_bracketed_sorted_and_unique() {
    let dns = TestDns::start().await;
    dns.set_aaaa(SERVICE, &["fd00::10", "fd00::2", "fd00::3", "fd00::2"]).await;
    dns.set_aaaa("other.streams.svc.cluster.local", &["fd00::99"]).await;

    let expected = ["[fd00::2]", "[fd00::3]", "[fd00::10]"];
    assert_eq!(source(&dns, SERVICE).resolve().await.expect("lookup"), expected);
    // A name already fully qualified is used as is.
    assert_eq!(source(&dns, &format!("{SERVICE}.")).resolve().await.expect("lookup"), expected);
    // The bracketed form is what URLs need.
    let url = format!("http://{}:9251/status", expected[0]);
    assert_eq!(url, "http://[fd00::2]:9251/status");
}

#[tokio::test]
async fn a_service_without_records_resolves_to_an_empty_list() {
    let dns = TestDns::start().await;
    dns.set_aaaa(SERVICE, &["fd00::2"]).await;
    // NXDOMAIN: no such name in the zone.
    let missing = source(&dns, "missing.streams.svc.cluster.local").resolve().await.expect("NXDOMAIN is an answer");
    assert!(missing.is_empty(), "{missing:?}");
    // NOERROR without AAAA records: the name exists (here: the zone apex, which has only an SOA).
    let apex = source(&dns, "cluster.local").resolve().await.expect("an empty NOERROR is an answer");
    assert!(apex.is_empty(), "{apex:?}");
}

#[tokio::test]
async fn a_failing_nameserver_is_an_error_not_an_empty_list() {
    let dns = TestDns::start().await;
    dns.set_aaaa(SERVICE, &["fd00::2"]).await;
    dns.fail_queries(true);
    let result = source(&dns, SERVICE).resolve().await;
    assert!(matches!(result, Err(DiscoveryError::Nameserver { code: ResponseCode::ServFail, .. })), "{result:?}");
    dns.fail_queries(false);
    assert_eq!(source(&dns, SERVICE).resolve().await.expect("lookup"), ["[fd00::2]"]);
}

#[tokio::test]
async fn watch_follows_records_added_and_removed() {
    let dns = TestDns::start().await;
    dns.set_aaaa(SERVICE, &["fd00::2", "fd00::3"]).await;
    let mut brokers = source(&dns, SERVICE).watch(REFRESH);

    // The first answer is announced as a change.
    tokio::time::timeout(WAIT, brokers.changed()).await.expect("first answer in time").expect("watcher alive");
    assert_eq!(*brokers.borrow_and_update(), ["[fd00::2]", "[fd00::3]"]);

    dns.set_aaaa(SERVICE, &["fd00::2", "fd00::3", "fd00::4"]).await;
    wait_for_list(&mut brokers, &["[fd00::2]", "[fd00::3]", "[fd00::4]"]).await;

    dns.set_aaaa(SERVICE, &["fd00::3", "fd00::4"]).await;
    wait_for_list(&mut brokers, &["[fd00::3]", "[fd00::4]"]).await;

    // Every pod gone: the service answers NXDOMAIN, and the list is empty (not kept).
    dns.set_aaaa(SERVICE, &[]).await;
    wait_for_list(&mut brokers, &[]).await;
}

#[tokio::test]
async fn watch_keeps_the_last_list_while_lookups_fail() {
    let dns = TestDns::start().await;
    dns.set_aaaa(SERVICE, &["fd00::2", "fd00::3"]).await;
    let mut brokers = source(&dns, SERVICE).watch(REFRESH);
    wait_for_list(&mut brokers, &["[fd00::2]", "[fd00::3]"]).await;

    dns.fail_queries(true);
    dns.set_aaaa(SERVICE, &["fd00::9"]).await;
    // Several refreshes fail; the list stays as it was.
    tokio::time::sleep(REFRESH * 5).await;
    assert_eq!(*brokers.borrow(), ["[fd00::2]", "[fd00::3]"]);

    dns.fail_queries(false);
    wait_for_list(&mut brokers, &["[fd00::9]"]).await;
}

#[tokio::test]
async fn watch_stops_its_task_when_every_receiver_is_dropped() {
    let dns = TestDns::start().await;
    dns.set_aaaa(SERVICE, &["fd00::2"]).await;
    let mut brokers = source(&dns, SERVICE).watch(REFRESH);
    wait_for_list(&mut brokers, &["[fd00::2]"]).await;
    let copy = brokers.clone();
    drop(brokers);
    // One receiver left: the watcher goes on asking.
    let asked = dns.queries();
    eventually(WAIT, "another lookup", || async { (dns.queries() > asked).then_some(()) }).await;
    drop(copy);
    // None left: at most a lookup already under way finishes, then the nameserver hears no more.
    tokio::time::sleep(REFRESH * 2).await;
    let asked = dns.queries();
    tokio::time::sleep(REFRESH * 5).await;
    assert_eq!(dns.queries(), asked, "the watcher kept looking up after every receiver was dropped");
}
