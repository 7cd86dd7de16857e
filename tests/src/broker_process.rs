use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of the `runnel-broker` binary of this build profile, built on first use so that
/// `cargo test` / `cargo nextest run` alone is enough.
pub fn broker_binary() -> PathBuf {
    built_binary("runnel-broker")
}

/// Path of a binary of this workspace in this build profile. The first call builds all of
/// them, as `cargo build --workspace --bins` does (so a build CI already made is reused:
/// the same package set resolves to the same features).
pub fn built_binary(bin: &str) -> PathBuf {
    static PROFILE_DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = PROFILE_DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--workspace", "--bins"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building the workspace binaries failed");
        profile_dir
    });
    dir.join(bin)
}

/// A loopback address whose default Runnel ports are all free right now.
pub fn free_loopback_ip() -> Ipv4Addr {
    for _ in 0..200 {
        // A fresh RandomState is seeded by the OS, so concurrent test processes pick different addresses.
        let r = RandomState::new().build_hasher().finish();
        let ip = Ipv4Addr::new(127, 10 + (r % 200) as u8, (r >> 8) as u8, 2 + ((r >> 16) % 250) as u8);
        if [9250u16, 9251, 9252, 9253, 9255].iter().all(|&p| TcpListener::bind((ip, p)).is_ok()) {
            return ip;
        }
    }
    panic!("no free loopback address found");
}

/// Writes a new random peer secret (64 hex digits, as `RUNNEL_PEER_SECRET_FILE` wants at least
/// 32 bytes) to `dir/peer-secret` and returns its path: every test cluster has its own.
pub fn write_peer_secret(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the cluster directory");
    let secret: String = (0..4).map(|_| format!("{:016x}", RandomState::new().build_hasher().finish())).collect();
    let path = dir.join("peer-secret");
    std::fs::write(&path, format!("{secret}\n")).expect("write the peer secret");
    path
}

/// `GET /status` on the consumer port answers 200 (plain blocking HTTP/1.1, no client needed).
fn status_is_ok(ip: Ipv4Addr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&(ip, 9252).into(), Duration::from_secs(1)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /status HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// One broker process with its own address and data directory.
pub struct BrokerProcess {
    pub ip: Ipv4Addr,
    pub home: PathBuf,
    env: Vec<(String, String)>,
    /// Soft and hard open-file limit the broker runs under (set by prlimit), if not inherited.
    open_files: Option<u64>,
    child: Option<Child>,
    log: PathBuf,
}

impl BrokerProcess {
    /// Starts a broker with data in `home` and waits until `/status` says it is ready.
    pub fn start(home: &Path, env: &[(&str, &str)]) -> BrokerProcess {
        BrokerProcess::start_at(free_loopback_ip(), home, env)
    }

    /// Like [`BrokerProcess::start`], on a given address.
    pub fn start_at(ip: Ipv4Addr, home: &Path, env: &[(&str, &str)]) -> BrokerProcess {
        BrokerProcess::launch(ip, home, env, None)
    }

    /// Like [`BrokerProcess::start`], with soft and hard open-file limits of `open_files`
    /// (through prlimit, util-linux), on every start and restart.
    pub fn start_with_open_files(home: &Path, env: &[(&str, &str)], open_files: u64) -> BrokerProcess {
        BrokerProcess::launch(free_loopback_ip(), home, env, Some(open_files))
    }

    /// Like [`BrokerProcess::start_at`], without waiting for `/status` (for a broker that is
    /// not meant to become ready).
    pub fn start_unready(ip: Ipv4Addr, home: &Path, env: &[(&str, &str)]) -> BrokerProcess {
        let mut broker = BrokerProcess::new(ip, home, env, None);
        broker.spawn_process();
        broker
    }

    fn launch(ip: Ipv4Addr, home: &Path, env: &[(&str, &str)], open_files: Option<u64>) -> BrokerProcess {
        let mut broker = BrokerProcess::new(ip, home, env, open_files);
        broker.spawn();
        broker
    }

    fn new(ip: Ipv4Addr, home: &Path, env: &[(&str, &str)], open_files: Option<u64>) -> BrokerProcess {
        BrokerProcess {
            ip,
            home: home.to_path_buf(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            open_files,
            child: None,
            log: home.with_extension("log"),
        }
    }

    fn spawn(&mut self) {
        self.spawn_process();
        self.wait_ready(Duration::from_secs(30));
    }

    fn spawn_process(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open broker log");
        let mut command = match self.open_files {
            Some(n) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={n}:{n}")).arg(broker_binary());
                prlimit
            }
            None => Command::new(broker_binary()),
        };
        command
            .env_clear()
            .env("RUNNEL_HOME", &self.home)
            .env("RUNNEL_LISTEN", self.ip.to_string())
            .env("RUNNEL_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            command.env(k, v);
        }
        self.child = Some(command.spawn().expect("start runnel-broker"));
    }

    pub fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("broker exited with {status} before becoming ready; log:\n{}", self.log_text());
                }
            }
            let ready = match self.tls_ca() {
                Some(ca) => crate::tls::tls_status_is_ok(self.ip, 9252, &ca),
                None => status_is_ok(self.ip),
            };
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "broker not ready in {within:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value this broker was started with for environment variable `key`, if any.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// With `RUNNEL_TLS_CERT`, the CA that issued it: `ca.pem` beside it (as
    /// [`crate::tls::TestCa`] writes them).
    pub fn tls_ca(&self) -> Option<PathBuf> {
        let cert = Path::new(self.env_value("RUNNEL_TLS_CERT")?);
        Some(cert.with_file_name("ca.pem"))
    }

    pub fn url(&self, port: u16, path: &str) -> String {
        let scheme = if self.env_value("RUNNEL_TLS_CERT").is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{port}{path}", self.ip)
    }

    /// The process' peak resident memory (VmHWM, as the kernel counts it), in MiB.
    pub fn peak_resident_mib(&self) -> u64 {
        let pid = self.pid().expect("a running broker");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("a VmHWM line");
        line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).expect("a number in kB") >> 10
    }

    /// Everything the broker logged so far (all runs).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        self.terminate_wait()
    }

    /// Waits for a broker that was already sent SIGTERM; returns whether it exited successfully.
    pub fn terminate_wait(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        child.wait().map(|s| s.success()).unwrap_or(false)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the broker again on the same address and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The addresses and secret of a static cluster that may grow to `ips.len()` brokers: broker
/// i runs on `ips[i]` with data in `dir/broker-i`.
pub struct StaticCluster {
    pub dir: PathBuf,
    pub ips: Vec<Ipv4Addr>,
    secret: PathBuf,
}

impl StaticCluster {
    /// Picks `capacity` free loopback addresses and writes a new peer secret in `dir/peer-secret`.
    pub fn new(dir: &Path, capacity: usize) -> StaticCluster {
        let secret = write_peer_secret(dir);
        let mut ips: Vec<Ipv4Addr> = Vec::new();
        while ips.len() < capacity {
            let ip = free_loopback_ip();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        StaticCluster { dir: dir.to_path_buf(), ips, secret }
    }

    /// `RUNNEL_BROKER_NAMES` of the first `count` brokers.
    pub fn names(&self, count: usize) -> String {
        self.ips[..count].iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(",")
    }

    /// Starts broker `ordinal` configured with the first `names` names (and `env`), and waits
    /// until it is ready.
    pub fn start(&self, ordinal: usize, names: usize, env: &[(&str, &str)]) -> BrokerProcess {
        let (names, ordinal_text) = (self.names(names), ordinal.to_string());
        let secret = self.secret.to_str().expect("UTF-8 test directory");
        let mut all: Vec<(&str, &str)> = vec![
            ("RUNNEL_BROKER_NAMES", &names),
            ("RUNNEL_ORDINAL", &ordinal_text),
            ("RUNNEL_PEER_SECRET_FILE", secret),
        ];
        all.extend_from_slice(env);
        BrokerProcess::start_at(self.ips[ordinal], &self.dir.join(format!("broker-{ordinal}")), &all)
    }
}

/// Starts `n` brokers of one cluster (static topology, each on its own loopback address),
/// sharing a new peer secret in `dir/peer-secret` (`env` may override it).
pub fn start_cluster(dir: &Path, n: usize, env: &[(&str, &str)]) -> Vec<BrokerProcess> {
    let cluster = StaticCluster::new(dir, n);
    (0..n).map(|i| cluster.start(i, n, env)).collect()
}
