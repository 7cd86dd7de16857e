//! A test certificate authority and the broker certificates it issues (rcgen), written as PEM
//! files the way an operator would mount them: `ca.pem`, and per certificate `NAME.pem` and
//! `NAME.key` in the same directory.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, SanType};

pub struct TestCa {
    pub dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
}

/// A certificate and key issued by a [`TestCa`].
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA, its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> TestCa {
        std::fs::create_dir_all(dir).expect("create the certificate directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "runnel test CA");
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write ca.pem");
        TestCa { dir: dir.to_path_buf(), cert, key }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `ips` and `names` (its subject `name`), written to
    /// `dir/{name}.pem` and `dir/{name}.key`.
    pub fn issue(&self, name: &str, ips: &[Ipv4Addr], names: &[&str]) -> IssuedCert {
        let (cert, key) = self.issue_pem(name, ips, names);
        let issued =
            IssuedCert { cert: self.dir.join(format!("{name}.pem")), key: self.dir.join(format!("{name}.key")) };
        std::fs::write(&issued.cert, cert).expect("write the certificate");
        std::fs::write(&issued.key, key).expect("write the key");
        issued
    }

    /// The PEM certificate and key of a new certificate for `ips` and `names`.
    pub fn issue_pem(&self, subject: &str, ips: &[Ipv4Addr], names: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(IpAddr::V4(*ip))));
        params.distinguished_name.push(DnType::CommonName, subject);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign the certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// `GET /status` over TLS on `ip:port` answers 200, the server's certificate verified against
/// `ca` (blocking, for the harness's readiness check).
pub fn tls_status_is_ok(ip: Ipv4Addr, port: u16, ca: &Path) -> bool {
    use std::io::{Read, Write};
    let Some(mut stream) = connect(ip, port, ca) else { return false };
    if stream.write_all(b"GET /status HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// The certificate (DER) the server on `ip:port` presents, verified against `ca`.
pub fn served_certificate(ip: Ipv4Addr, port: u16, ca: &Path) -> Option<Vec<u8>> {
    let mut stream = connect(ip, port, ca)?;
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).ok()?;
    }
    Some(stream.conn.peer_certificates()?.first()?.to_vec())
}

/// A TLS connection to `ip:port`, verified against `ca` the way a broker verifies its peers.
fn connect(ip: Ipv4Addr, port: u16, ca: &Path) -> Option<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let config = Arc::new(runnel_broker::tls::peer_client_config(ca).ok()?);
    let name = rustls_pki_types::ServerName::IpAddress(IpAddr::V4(ip).into());
    let connection = rustls::ClientConnection::new(config, name).ok()?;
    let socket = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(1)).ok()?;
    let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
    Some(rustls::StreamOwned::new(connection, socket))
}
