//! A setting the broker cannot work with stops it at start (exit 2, the variable named),
//! instead of a broker that answers 200 on `/status` with a dead background task.

use std::process::Command;
use std::time::{Duration, Instant};

use runnel_tests::{broker_binary, free_loopback_ip};

#[test]
fn settings_the_broker_cannot_work_with_stop_it_at_start_with_their_name() {
    let cases = [
        ("RUNNEL_AUTO_COMMIT_INTERVAL_MS", "0"),
        ("RUNNEL_RETENTION_CHECK_MS", "0"),
        ("RUNNEL_SEGMENT_BYTES", "1"),
        ("RUNNEL_MAX_REQUEST_SIZE", "30000000"),
        ("RUNNEL_GROUP_RETENTION", "1m"),
    ];
    for (variable, value) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(broker_binary())
            .env_clear()
            .env("RUNNEL_HOME", dir.path())
            .env("RUNNEL_LISTEN", free_loopback_ip().to_string())
            .env(variable, value)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start runnel-broker");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{variable}={value}: the broker started instead of refusing the setting");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr =
            child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
        assert_eq!(status.code(), Some(2), "{variable}={value}: {stderr}");
        assert!(stderr.contains(variable), "{variable}={value}: the message names the variable: {stderr}");
    }
}
