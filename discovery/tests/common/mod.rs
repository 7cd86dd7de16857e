//! An authoritative DNS server in the test process (hickory-server, loopback only), serving a
//! zone whose AAAA records the tests change while the code under test watches them.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::authority::{AuthorityObject, Catalog, MessageResponseBuilder, ZoneType};
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::rdata::{AAAA, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};

/// The zone every test serves; services live under it, as in a Kubernetes cluster.
pub const ZONE: &str = "cluster.local.";
/// The headless service the tests look up.
pub const SERVICE: &str = "runnel.streams.svc.cluster.local";

const TTL: u32 = 30;
const SERIAL: u32 = 1;

pub struct TestDns {
    /// `127.0.0.1:port`, on UDP and TCP.
    pub address: SocketAddr,
    authority: Arc<InMemoryAuthority>,
    failing: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    _server: ServerFuture<Switchable>,
}

impl TestDns {
    /// Serves [`ZONE`] on a free port of 127.0.0.1; the server stops when this is dropped.
    pub async fn start() -> TestDns {
        let origin = Name::from_str(ZONE).expect("zone name");
        let soa = SOA::new(
            Name::from_str("ns.cluster.local.").expect("mname"),
            Name::from_str("admin.cluster.local.").expect("rname"),
            SERIAL,
            3600,
            600,
            86400,
            5,
        );
        let mut soa_set = RecordSet::with_ttl(origin.clone(), RecordType::SOA, TTL);
        soa_set.insert(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), SERIAL);
        let records = BTreeMap::from([(RrKey::new(LowerName::from(&origin), RecordType::SOA), soa_set)]);
        let authority =
            Arc::new(InMemoryAuthority::new(origin.clone(), records, ZoneType::Primary, false).expect("zone"));
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::from(&origin), vec![authority.clone() as Arc<dyn AuthorityObject>]);
        let failing = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let mut server = ServerFuture::new(Switchable { catalog, failing: failing.clone(), queries: queries.clone() });
        let (udp, tcp) = bind_udp_and_tcp().await;
        let address = udp.local_addr().expect("local address");
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        TestDns { address, authority, failing, queries, _server: server }
    }

    /// Replaces the AAAA records of `name` (a name under [`ZONE`]); none removes them.
    pub async fn set_aaaa(&self, name: &str, addresses: &[&str]) {
        let mut name = Name::from_str(name).expect("record name");
        name.set_fqdn(true);
        let key = RrKey::new(LowerName::from(&name), RecordType::AAAA);
        let mut records = self.authority.records_mut().await;
        if addresses.is_empty() {
            records.remove(&key);
            return;
        }
        let mut set = RecordSet::with_ttl(name.clone(), RecordType::AAAA, TTL);
        for address in addresses {
            let address: Ipv6Addr = address.parse().expect("IPv6 address");
            set.insert(Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(address))), SERIAL);
        }
        records.insert(key, Arc::new(set));
    }

    /// While on, every query is answered SERVFAIL, as a cluster DNS that lost its backend does.
    pub fn fail_queries(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// How many queries the server has received.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// The catalog, or SERVFAIL for every query while `failing` is set; counts queries.
struct Switchable {
    catalog: Catalog,
    failing: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Switchable {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        if !self.failing.load(Ordering::SeqCst) {
            return self.catalog.handle_request(request, response).await;
        }
        let message =
            MessageResponseBuilder::from_message_request(request).error_msg(request.header(), ResponseCode::ServFail);
        match response.send_response(message).await {
            Ok(info) => info,
            Err(_) => {
                let mut header = Header::response_from_request(request.header());
                header.set_response_code(ResponseCode::ServFail);
                header.into()
            }
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let address = udp.local_addr().expect("local address");
        if let Ok(tcp) = TcpListener::bind(address).await {
            return (udp, tcp);
        }
    }
    panic!("no port of 127.0.0.1 was free on both UDP and TCP");
}

/// Polls `check` every 50 ms until it gives `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
