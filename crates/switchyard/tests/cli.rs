//! The `switchyard` binary itself: `--version`, `check` on good and bad configs, and `serve`
//! answering a chat request end to end.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use switchyard_fakes::{FakeUpstream, Reply, Script, Step};

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

/// Starts `switchyard serve` on `cfg` and a free port (plus `args`), logging at `warn`, and
/// waits until it listens; the child is killed when the returned guard drops.
async fn serve(cfg: &TempConfig, args: &[&str]) -> (Killed, String) {
    serve_logging(cfg, args, "warn", std::process::Stdio::null()).await
}

/// [`serve`] with the log level `log` and its stderr (the log) going to `stderr`.
async fn serve_logging(cfg: &TempConfig, args: &[&str], log: &str, stderr: std::process::Stdio) -> (Killed, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = tokio::process::Command::new(BIN)
        .args(["serve", "--config", cfg.path(), "--listen", &listen])
        .args(args)
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_LISTEN")
        .env("SWITCHYARD_LOG", log)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawning switchyard serve");
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        assert!(child.0.try_wait().unwrap().is_none(), "switchyard serve exited early");
        assert!(Instant::now() < deadline, "switchyard serve did not listen on {listen}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, listen)
}

#[tokio::test]
async fn serve_answers_a_chat_request_end_to_end() {
    let up = FakeUpstream::start(Script::new()).await;
    let cfg = TempConfig::new(&format!("{}\n[models.chat]\ntargets = [\"a/model-a\"]\n", openai_provider("a", &up.base_url(), KEY_A)));
    let (mut child, listen) = serve(&cfg, &[]).await;
    let pid = child.0.id().expect("a running child");

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

/// A call's log line is written after its answer's last bytes (see `ingress::after_write`):
/// each call still gets exactly one, with its outcome and attempts, on both APIs, streamed or
/// not, and with several server threads.
#[tokio::test]
async fn serve_logs_one_line_per_call_once_the_answer_is_written() {
    use tokio::io::AsyncBufReadExt as _;
    let up = FakeUpstream::start(Script::new()).await;
    let cfg = TempConfig::new(&format!("{}\n[models.chat]\ntargets = [\"a/model-a\"]\n", openai_provider("a", &up.base_url(), KEY_A)));
    let (mut child, listen) = serve_logging(&cfg, &["--threads", "2"], "info", std::process::Stdio::piped()).await;
    let mut lines = tokio::io::BufReader::new(child.0.stderr.take().expect("piped stderr")).lines();
    let gw = TestGateway::at(listen.parse().unwrap());

    let mut ids = Vec::new();
    for i in 0..6 {
        let id = format!("log-{i}");
        let r = gw.chat_with_headers(&chat_body("chat"), &[("x-request-id", id.as_str())]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        ids.push((id, "stream=false"));
    }
    let r = gw.chat_with_headers(&stream_body("chat"), &[("x-request-id", "log-stream")]).await;
    assert_eq!(r.status, StatusCode::OK);
    ids.push(("log-stream".into(), "stream=true"));
    let body = serde_json::json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let req = gw.post_request("/v1/messages", serde_json::to_vec(&body).unwrap().into(), &[("x-request-id", "log-messages"), ("content-type", "application/json")]);
    let r = gw.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["type"], "message");
    ids.push(("log-messages".into(), "stream=false"));
    let body = serde_json::json!({"model": "chat", "max_tokens": 16, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let req = gw.post_request("/v1/messages", serde_json::to_vec(&body).unwrap().into(), &[("x-request-id", "log-messages-stream"), ("content-type", "application/json")]);
    let r = gw.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("event: message_stop"), "{}", r.text());
    ids.push(("log-messages-stream".into(), "stream=true"));

    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line()).await.expect("every call logged within 10 s").unwrap().expect("the log goes on");
        if line.contains("switchyard::request") {
            seen.push(line);
        }
    }
    for (id, stream) in &ids {
        let mine: Vec<&String> = seen.iter().filter(|l| l.contains(&format!("request_id={id} "))).collect();
        assert_eq!(mine.len(), 1, "one line for {id}: {seen:#?}");
        assert!(mine[0].contains(stream) && mine[0].contains("status=200") && mine[0].contains("outcome=\"ok\""), "{}", mine[0]);
        assert!(mine[0].contains("attempts=a/model-a: ok"), "the attempts are in the line: {}", mine[0]);
    }
}

/// The resident memory of process `pid` in KiB.
#[cfg(target_os = "linux")]
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

/// A burst of long streams: their buffers are freed only when they end, long after their
/// requests arrived, and the gateway must still hand that memory back once it is idle (it used
/// to trim one second after the last request *arrived*, while the streams were still open, and
/// then not again for a minute).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_goes_back_after_a_burst_of_long_streams() {
    const STREAMS: usize = 200;
    let words = (0..20).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
    let step = Step::Ok { reply: Reply::Fixed(words), chunks: 20, chunk_delay: Duration::from_millis(100) };
    let up = FakeUpstream::start(Script::new().default_step(step)).await;
    // Each upstream connection closes after its answer, so that what stays resident afterwards
    // is not the (legitimately) pooled upstream connections.
    up.set_response_headers(&[("connection", "close")]);
    let cfg = TempConfig::new(&format!("{}\n[models.chat]\ntargets = [\"a/model-a\"]\n", openai_provider("a", &up.base_url(), KEY_A)));
    let (child, listen) = serve(&cfg, &["--threads", "2"]).await;
    let pid = child.0.id().expect("a running child");
    let gw = std::sync::Arc::new(TestGateway::at(listen.parse().unwrap()));
    assert_eq!(gw.chat(&stream_body("chat")).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = rss_kib(pid);

    // The streams last 2 s each and all start within the first few hundred milliseconds.
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.chat(&stream_body("chat")).await })
        })
        .collect();
    let mut peak = idle;
    let sampling = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(rss_kib(pid));
        }
    };
    let all = futures_util::future::join_all(streams);
    let results = tokio::select! {
        r = all => r,
        _ = sampling => unreachable!(),
    };
    for r in results {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.text().contains("[DONE]"), "{}", r.text());
    }
    assert!(peak >= idle + 4 * 1024, "{STREAMS} open streams should take memory: idle {idle} KiB, peak {peak} KiB");
    // The callers leave: their connections close.
    drop(gw);
    // Idle again: within a second or two the trimmer hands the freed pages back.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let after = rss_kib(pid);
    eprintln!("RSS: idle {idle} KiB, peak {peak} KiB, 3 s after the streams {after} KiB");
    assert!(
        after <= idle + (peak - idle) / 2,
        "RSS stayed up after the streams ended: idle {idle} KiB, peak {peak} KiB, 3 s after {after} KiB"
    );
}
