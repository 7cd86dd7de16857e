//! Brokers in Docker containers, laid out as a Kubernetes StatefulSet behind a headless service:
//! a user-defined IPv6 network, one container per broker with the hostname `runnel-N`, and two
//! network aliases per container that play the service's two kinds of DNS records: `runnel`
//! (the service name, one AAAA record per broker) and `runnel-N.runnel` (the pod's own stable
//! name). Every container, volume and the network are named and labelled per run, and removed
//! when the [`DockerCluster`] is dropped, also when a test panics.

use std::net::Ipv6Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::workload::{Endpoint, Endpoints};

/// The image the container tests use (built by `scripts/build-image`); `RUNNEL_TEST_IMAGE` overrides it.
fn image() -> String {
    std::env::var("RUNNEL_TEST_IMAGE").ok().filter(|i| !i.is_empty()).unwrap_or_else(|| "runnel:dev".to_string())
}

/// The Docker CLI to run (`DOCKER` overrides it, as in scripts/build-image).
fn docker_cli() -> String {
    std::env::var("DOCKER").ok().filter(|d| !d.is_empty()).unwrap_or_else(|| "docker".to_string())
}

/// The image a container test runs, once Docker is usable and the image is there. `None`
/// (the test skips, saying so) where Docker is not usable on a developer's machine; in CI
/// (`CI` set) a missing Docker is a broken machine, not a pass, and fails the test, as a
/// missing image does anywhere.
pub fn image_for_test() -> Option<String> {
    if !usable() {
        assert!(std::env::var_os("CI").is_none(), "`docker info` failed: Docker is not usable, and CI needs this test");
        eprintln!("SKIPPED: `docker info` failed, so Docker is not usable here; the container test did not run");
        return None;
    }
    let image = image();
    assert!(
        image_exists(&image),
        "the image {image} is missing: build it with `scripts/build-image` (.ci/run does, before the tests)"
    );
    Some(image)
}

/// Whether the Docker daemon answers `docker info` (within 20 s) for this user.
fn usable() -> bool {
    let Ok(mut child) =
        Command::new(docker_cli()).arg("info").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Whether `image` is present locally (nothing is pulled).
fn image_exists(image: &str) -> bool {
    docker_sync(&["image", "inspect", "--format", "{{.Id}}", image]).is_ok()
}

/// Runs `docker args…`; its trimmed stdout, or what went wrong.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new(docker_cli())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run docker: {e}"))?;
    outcome(args, output)
}

fn docker_sync(args: &[&str]) -> Result<String, String> {
    let output = Command::new(docker_cli())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    outcome(args, output)
}

fn outcome(args: &[&str], output: std::process::Output) -> Result<String, String> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

async fn must(args: &[&str]) -> String {
    docker(args).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until `/status` is 200 on the producer and consumer ports and, if `brokers` is given,
/// `/v1/brokers` lists that many.
pub async fn wait_ready(endpoint: &Endpoint, brokers: Option<u64>, within: Duration) -> Result<(), String> {
    let http = crate::tokens::harness_http(Some(Duration::from_secs(2)));
    let deadline = Instant::now() + within;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let mut ready = true;
        for base in [&endpoint.producer, &endpoint.consumer] {
            match http.get(format!("{base}/status")).send().await {
                Ok(r) if r.status() == StatusCode::OK => {}
                Ok(r) => (ready, last) = (false, format!("{base}/status answered {}", r.status())),
                Err(e) => (ready, last) = (false, format!("{base}/status: {e}")),
            }
        }
        if ready {
            let Some(brokers) = brokers else { return Ok(()) };
            let listed = match http.get(format!("{}/v1/brokers", endpoint.discovery)).send().await {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            };
            match listed {
                Some(list) if list["length"].as_u64() == Some(brokers) => return Ok(()),
                other => last = format!("/v1/brokers answered {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("not ready within {within:?}: {last}"))
}

/// A cluster of broker containers on its own IPv6 network; everything goes away on drop.
pub struct DockerCluster {
    /// Prefix of every name this run creates (`runnel-test-<pid>`), and the value of its label.
    pub run: String,
    pub network: String,
    /// The headless service's name, i.e. the alias every broker container shares.
    pub service: String,
    pub image: String,
    /// Broker containers created so far (ordinals `0..size`).
    size: usize,
    /// The cluster's secrets, bind-mounted read-only into every broker container: the peer
    /// secret, the harness's token key (tokens on), and a CA with the brokers' peer certificate
    /// (TLS between brokers), as an operator runs them (SPEC §13).
    secrets: tempfile::TempDir,
}

/// Where the containers find [`DockerCluster::secrets`].
const SECRETS_IN_CONTAINER: &str = "/etc/runnel/secrets";

/// Names the peer certificate covers: the service's and its first brokers' (the names brokers
/// call each other by, `runnel-N.<service>`).
const PEER_NAMES_COVERED: usize = 8;

/// Label on everything a run creates: `docker ps -a --filter label=io.runnel.test.run` finds leftovers.
const LABEL: &str = "io.runnel.test.run";

impl DockerCluster {
    /// Creates the network and `size` broker containers, then starts them all at once (the
    /// brokers count the service's records until they are stable, so they must start together).
    pub async fn start(image: &str, size: usize, service: &str) -> DockerCluster {
        let run = format!("runnel-test-{}", std::process::id());
        let secrets = tempfile::tempdir().expect("tempdir for the cluster's secrets");
        crate::write_peer_secret(secrets.path());
        std::fs::copy(crate::tokens::verify_key_file(), secrets.path().join("verify.pem")).expect("copy the token key");
        let ca = crate::tls::TestCa::new(secrets.path());
        let names: Vec<String> =
            (0..PEER_NAMES_COVERED).map(|i| format!("runnel-{i}.{service}")).chain([service.to_string()]).collect();
        ca.issue("peer", &[], &names.iter().map(String::as_str).collect::<Vec<_>>());
        // The brokers run as a non-root user: the directory and files must be readable by others.
        std::fs::set_permissions(secrets.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make the secrets directory readable");
        for file in std::fs::read_dir(secrets.path()).expect("list the secrets") {
            let path = file.expect("a secret").path();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .expect("make the secret readable");
        }
        let mut cluster = DockerCluster {
            network: format!("{run}-net"),
            run,
            service: service.to_string(),
            image: image.to_string(),
            size: 0,
            secrets,
        };
        // A leftover of an earlier run that had this pid (and was killed before cleaning up).
        cluster.remove_everything();
        cluster.create_network().await;
        for _ in 0..size {
            cluster.create_next().await;
        }
        let mut start = vec!["start".to_string()];
        start.extend((0..size).map(|i| cluster.container(i)));
        must(&start.iter().map(String::as_str).collect::<Vec<_>>()).await;
        cluster
    }

    /// Adds the next broker (ordinal `size`) and starts it, as a StatefulSet scaled up creates
    /// its next pod: a new volume, the same aliases and settings as the others. Returns its ordinal.
    pub async fn add_broker(&mut self) -> usize {
        let i = self.create_next().await;
        must(&["start", &self.container(i)]).await;
        i
    }

    /// Creates the volume and the (stopped) container of broker `size`, and counts it, so that
    /// the guard shows its logs from then on. Returns its ordinal.
    async fn create_next(&mut self) -> usize {
        let i = self.size;
        let (name, hostname, volume) = (self.container(i), self.hostname(i), self.volume(i));
        let pod_alias = format!("{hostname}.{}", self.service);
        let label = format!("{LABEL}={}", self.run);
        let volume_mount = format!("{volume}:/var/lib/runnel");
        let service_env = format!("RUNNEL_SERVICE_NAME={}", self.service);
        let secret_mount =
            format!("type=bind,src={},dst={SECRETS_IN_CONTAINER},readonly", self.secrets.path().display());
        let secret_env = [
            ("RUNNEL_PEER_SECRET_FILE", "peer-secret"),
            ("RUNNEL_AUTH_KEY_FILE", "verify.pem"),
            ("RUNNEL_PEER_TLS_CA", "ca.pem"),
            ("RUNNEL_PEER_TLS_CERT", "peer.pem"),
            ("RUNNEL_PEER_TLS_KEY", "peer.key"),
        ]
        .map(|(variable, file)| format!("{variable}={SECRETS_IN_CONTAINER}/{file}"));
        must(&["volume", "create", "--label", &label, &volume]).await;
        #[rustfmt::skip]
        must(&[
            "create", "--name", &name, "--hostname", &hostname, "--label", &label,
            "--network", &self.network, "--network-alias", &self.service, "--network-alias", &pod_alias,
            "--read-only", "-e", &service_env, "-e", &secret_env[0], "-e", &secret_env[1], "-e", &secret_env[2],
            "-e", &secret_env[3], "-e", &secret_env[4], "-v", &volume_mount,
            "--mount", &secret_mount, &self.image,
        ])
        .await;
        self.size += 1;
        i
    }

    /// A network with a subnet of its own (derived from the pid; another one if that is taken).
    async fn create_network(&self) {
        let label = format!("{LABEL}={}", self.run);
        let mut last_error = String::new();
        for attempt in 0..8u32 {
            let seed = std::process::id().wrapping_mul(2654435761).wrapping_add(attempt.wrapping_mul(40503));
            let subnet = format!("fd00:7275:6e6e:{:x}::/64", seed & 0xffff);
            match docker(&["network", "create", "--ipv6", "--subnet", &subnet, "--label", &label, &self.network]).await
            {
                Ok(_) => return,
                Err(e) => last_error = e,
            }
        }
        panic!("could not create an IPv6 network: {last_error}");
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The container of broker `i` (unique per run).
    pub fn container(&self, i: usize) -> String {
        format!("{}-{i}", self.run)
    }

    /// Broker `i`'s hostname, from which it takes its ordinal (as a StatefulSet pod does).
    pub fn hostname(&self, i: usize) -> String {
        format!("runnel-{i}")
    }

    fn volume(&self, i: usize) -> String {
        format!("{}-data-{i}", self.run)
    }

    /// Broker `i`'s address on the network (it may change when the container restarts or reconnects).
    pub async fn address(&self, i: usize) -> Option<Ipv6Addr> {
        let format = "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}";
        docker(&["inspect", "-f", format, &self.container(i)]).await.ok()?.parse().ok()
    }

    /// Where the host reaches broker `i` now (its current address), marked up.
    pub async fn endpoint(&self, i: usize) -> Endpoint {
        let ip = self.address(i).await.unwrap_or_else(|| panic!("{} has no IPv6 address", self.container(i)));
        Endpoint {
            producer: format!("http://[{ip}]:9251"),
            consumer: format!("http://[{ip}]:9252"),
            discovery: format!("http://[{ip}]:9250"),
            up: true,
        }
    }

    /// `docker kill`: SIGKILL, the broker gets no chance to hand anything over.
    pub async fn kill(&self, i: usize) {
        must(&["kill", &self.container(i)]).await;
    }

    /// `docker start` of the same container: same hostname, aliases and volume.
    pub async fn start_again(&self, i: usize) {
        must(&["start", &self.container(i)]).await;
    }

    /// `docker stop`: SIGTERM, then the broker hands over what it leads and exits. Returns its
    /// exit code.
    pub async fn stop(&self, i: usize) -> i64 {
        // As docker/Dockerfile advises: hand-overs may take longer than Docker's default 10 s.
        must(&["stop", "-t", "60", &self.container(i)]).await;
        let code = must(&["inspect", "-f", "{{.State.ExitCode}}", &self.container(i)]).await;
        code.parse().unwrap_or_else(|_| panic!("{} has no exit code: {code:?}", self.container(i)))
    }

    /// Waits until broker `i` (new, restarted or reconnected, maybe at a new address) answers as
    /// [`wait_ready`] checks, then gives the workload its current address (in its place, or
    /// after the others for a new broker), marked up. Returns how long that took.
    pub async fn hand_to_workload(&self, endpoints: &Endpoints, i: usize, brokers: Option<u64>) -> Duration {
        let since = Instant::now();
        let fresh = self.endpoint(i).await;
        wait_ready(&fresh, brokers, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("broker {i} did not answer: {e}; is {} up to date?", self.image));
        let mut endpoints = endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if i < endpoints.len() {
            endpoints[i] = fresh;
        } else {
            assert_eq!(i, endpoints.len(), "brokers are handed to the workload in ordinal order");
            endpoints.push(fresh);
        }
        since.elapsed()
    }

    /// Takes broker `i` off the network: it keeps running, cut off from everyone.
    pub async fn disconnect(&self, i: usize) {
        must(&["network", "disconnect", &self.network, &self.container(i)]).await;
    }

    /// Puts broker `i` back on the network with both of its aliases.
    pub async fn connect(&self, i: usize) {
        let pod_alias = format!("{}.{}", self.hostname(i), self.service);
        #[rustfmt::skip]
        must(&[
            "network", "connect", "--alias", &self.service, "--alias", &pod_alias, &self.network, &self.container(i),
        ])
        .await;
    }

    /// `docker run` arguments for a helper container in broker `i`'s network namespace (it
    /// shares the broker's `localhost`, also while the broker is cut off): `--rm`, labelled with
    /// this run, named `<run>-<name>`, running `entrypoint` from the image.
    pub fn helper_args(&self, i: usize, name: &str, entrypoint: &str, env: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--rm", "--read-only", "--name"].map(String::from).into();
        args.push(format!("{}-{name}", self.run));
        args.extend(["--label".to_string(), format!("{LABEL}={}", self.run)]);
        args.extend(["--network".to_string(), format!("container:{}", self.container(i))]);
        for e in env {
            args.extend(["-e".to_string(), e.to_string()]);
        }
        args.extend(["--entrypoint".to_string(), entrypoint.to_string(), self.image.clone()]);
        args
    }

    /// Removes a helper container started with [`DockerCluster::helper_args`] (killing it).
    pub async fn remove_helper(&self, name: &str) {
        let _ = docker(&["rm", "-fv", &format!("{}-{name}", self.run)]).await;
    }

    /// The last `lines` lines broker `i` logged (`usize::MAX`: all of them).
    pub fn logs(&self, i: usize, lines: usize) -> String {
        let tail = if lines == usize::MAX { "all".to_string() } else { lines.to_string() };
        let output = Command::new(docker_cli())
            .args(["logs", "--tail", &tail, &self.container(i)])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            Err(e) => format!("(docker logs failed: {e})"),
        }
    }

    /// Removes whatever carries this run's label: containers (brokers and helpers) first, then
    /// their volumes, then the network.
    fn remove_everything(&self) {
        let filter = format!("label={LABEL}={}", self.run);
        let mut problems = Vec::new();
        let containers = docker_sync(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
        let ids: Vec<&str> = containers.split_whitespace().collect();
        if !ids.is_empty() {
            let mut rm = vec!["rm", "-fv"];
            rm.extend(ids);
            problems.extend(docker_sync(&rm).err());
        }
        for (kind, list) in [("volume", ["volume", "ls", "-q"]), ("network", ["network", "ls", "-q"])] {
            let mut ls = list.to_vec();
            ls.extend(["--filter", &filter]);
            for id in docker_sync(&ls).unwrap_or_default().split_whitespace() {
                problems.extend(docker_sync(&[kind, "rm", id]).err());
            }
        }
        for problem in problems {
            eprintln!("cleaning up {}: {problem}", self.run);
        }
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.size {
                let (name, hostname) = (self.container(i), self.hostname(i));
                let saved = std::env::temp_dir().join(format!("{name}.log"));
                let kept = match std::fs::write(&saved, self.logs(i, usize::MAX)) {
                    Ok(()) => format!("whole log kept in {}", saved.display()),
                    Err(e) => format!("could not keep the whole log in {}: {e}", saved.display()),
                };
                eprintln!("---- last log lines of {name} ({hostname}; {kept}) ----\n{}", self.logs(i, 60));
            }
        }
        self.remove_everything();
    }
}
