//! A broker keeps files open per segment; started with a low soft open-file limit (as many
//! systems set 1024), it raises it to the hard limit (issue 11, many partitions).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runnel_tests::{broker_binary, free_loopback_ip};

/// The soft "Max open files" of process `pid`.
fn soft_open_files(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("an open-files line");
    line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).expect("a number")
}

#[tokio::test]
async fn a_broker_raises_its_soft_open_file_limit_to_the_hard_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = free_loopback_ip();
    // prlimit (util-linux) sets the limits, then runs the broker in the same process.
    let mut child = Command::new("prlimit")
        .arg("--nofile=256:4096")
        .arg(broker_binary())
        .env_clear()
        .env("RUNNEL_HOME", dir.path())
        .env("RUNNEL_LISTEN", ip.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run prlimit (util-linux)");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("http://{ip}:9252/status")).send().await.is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(child.try_wait().expect("wait").is_none(), "the broker exited");
        assert!(Instant::now() < deadline, "the broker did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let soft = soft_open_files(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(soft, 4096, "the soft limit is raised to the hard one");
}
