//! The `switchyard` binary itself: `--version`, `check` on good and bad configs, and `serve`
//! answering a chat request end to end.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use switchyard_fakes::{FakeUpstream, Script};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A config file in a fresh temporary directory, removed on drop.
struct TempConfig {
    dir: PathBuf,
    path: PathBuf,
}

impl TempConfig {
    fn new(toml: &str) -> TempConfig {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("switchyard-cli-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchyard.toml");
        std::fs::write(&path, toml).unwrap();
        TempConfig { dir, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the binary with a clean Switchyard environment.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_LISTEN")
        .env_remove("SWITCHYARD_LOG_FORMAT")
        .env_remove("SWITCHYARD_TEST_UNSET_KEY")
        .output()
        .expect("running the switchyard binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const VALID: &str = r#"
[providers.primary]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-secret-test-key-123456789"

[providers.primary.health]
enabled = true
interval = "10s"
unhealthy_after = 3

[providers.local]
kind = "mock"

[models.chat]
targets = ["primary/gpt-4o-mini", "local/mock-1"]

[models.chat.retry]
attempts_per_target = 3
"#;

#[test]
fn version_prints_the_crate_version() {
    let o = run(&["--version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("switchyard {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_prints_the_routing_table_without_secrets() {
    let cfg = TempConfig::new(VALID);
    let o = run(&["check", "--config", cfg.path()]);
    let out = stdout(&o);
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    assert!(out.contains(cfg.path()) && out.contains("valid"), "{out}");
    for expected in ["primary", "local", "chat", "primary/gpt-4o-mini", "local/mock-1", "3 per target", "api_key=<redacted>",
                     "health: models probe every 10s (timeout 5s), unhealthy after 3, healthy after 1"] {
        assert!(out.contains(expected), "`{expected}` missing from:\n{out}");
    }
    assert!(!out.contains(KEY_A) && !stderr(&o).contains(KEY_A), "the api key was printed:\n{out}");
}

/// Runs `check` on `toml`; asserts it fails and returns stderr.
fn check_fails(toml: &str) -> (TempConfig, String) {
    let cfg = TempConfig::new(toml);
    let o = run(&["check", "--config", cfg.path()]);
    assert!(!o.status.success(), "an invalid config passed `check`:\n{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains(cfg.path()), "the message does not name the file:\n{err}");
    assert!(err.contains("fix:"), "no `fix:` line:\n{err}");
    assert!(!err.contains(KEY_A), "the api key was printed:\n{err}");
    (cfg, err)
}

#[test]
fn check_rejects_an_undefined_provider_naming_the_key() {
    let (_cfg, err) = check_fails(&VALID.replace("\"primary/gpt-4o-mini\"", "\"missing/gpt-4o-mini\""));
    assert!(err.contains("models.chat.targets[0]"), "{err}");
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn check_rejects_an_unknown_key_naming_it() {
    let (_cfg, err) = check_fails(&format!("{VALID}\n[retry]\natempts_per_target = 2\n"));
    assert!(err.contains("retry.atempts_per_target"), "{err}");
}

#[test]
fn check_names_an_unset_environment_variable() {
    let (_cfg, err) = check_fails(&VALID.replace("sk-secret-test-key-123456789", "${SWITCHYARD_TEST_UNSET_KEY}"));
    assert!(err.contains("SWITCHYARD_TEST_UNSET_KEY"), "{err}");
    assert!(err.contains("providers.primary.api_key"), "{err}");
}

/// Kills the child by its PID when the test ends, even on a panic.
struct Killed(tokio::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn serve_answers_a_chat_request_end_to_end() {
    let up = FakeUpstream::start(Script::new()).await;
    let cfg = TempConfig::new(&format!("{}\n[models.chat]\ntargets = [\"a/model-a\"]\n", openai_provider("a", &up.base_url(), KEY_A)));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = tokio::process::Command::new(BIN)
        .args(["serve", "--config", cfg.path(), "--listen", &listen])
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_LISTEN")
        .env("SWITCHYARD_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning switchyard serve");
    let mut child = Killed(child);
    let pid = child.0.id().expect("a running child");

    // Wait until it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        assert!(child.0.try_wait().unwrap().is_none(), "switchyard serve exited early");
        assert!(Instant::now() < deadline, "switchyard serve did not listen on {listen}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let gw = TestGateway::at(listen.parse().unwrap());
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "a");
    assert_eq!(r.json()["model"], "chat");
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from the fake upstream.");
    assert_eq!(up.requests(), 1);

    // Stop it by its PID.
    child.0.start_kill().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.0.wait()).await.expect("the child exits").unwrap();
    assert!(!status.success(), "killed, pid {pid}");
}
