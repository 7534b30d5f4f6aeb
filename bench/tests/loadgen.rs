//! loadgen's paired mode against two fake upstreams on loopback: requests alternate between
//! the two URLs, each gets its own `model`, and the output reports the second apart.

use std::process::Command;

use serde_json::Value;
use switchyard_fakes::{FakeUpstream, Script};

fn loadgen(args: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen")).args(args).output().expect("loadgen runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_mode_alternates_between_the_two_urls() {
    let (a, b) = (FakeUpstream::start(Script::new()).await, FakeUpstream::start(Script::new()).await);
    let (url_a, url_b) = (format!("{}/chat/completions", a.base_url()), format!("{}/chat/completions", b.base_url()));
    let (ok, out) = tokio::task::spawn_blocking(move || {
        loadgen(&["--url", &url_a, "--paired-url", &url_b, "--model", "one", "--paired-model", "two", "-n", "40", "--warmup", "0s"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert_eq!((a.requests(), b.requests()), (20, 20), "one request to each URL in turn");
    assert_eq!(out["ok"], 20);
    assert_eq!(out["paired"]["ok"], 20);
    assert!(out["latency_us"]["p50"].as_u64().unwrap() > 0 && out["paired"]["latency_us"]["p50"].as_u64().unwrap() > 0);
    assert_eq!(a.last_request().unwrap().body["model"], "one");
    assert_eq!(b.last_request().unwrap().body["model"], "two");
    // Without --paired-url there is no `paired` section.
    let url_a = format!("{}/chat/completions", a.base_url());
    let (ok, out) = tokio::task::spawn_blocking(move || loadgen(&["--url", &url_a, "-n", "4", "--warmup", "0s"])).await.unwrap();
    assert!(ok && out["paired"].is_null() && out["ok"] == 4, "{out}");
}

// Streamed, the paired URL's time to first chunk is reported apart too: the figure the bench
// compares with nginx's request by request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_streams_report_the_paired_time_to_first_chunk() {
    use std::time::Duration;
    use switchyard_fakes::{Reply, Step};
    let slow = Step::Ok { reply: Reply::Fixed("one two three".into()), chunks: 3, chunk_delay: Duration::from_millis(20) };
    let (a, b) = (FakeUpstream::start(Script::new()).await, FakeUpstream::start(Script::new().default_step(slow)).await);
    let (url_a, url_b) = (format!("{}/chat/completions", a.base_url()), format!("{}/chat/completions", b.base_url()));
    let (ok, out) = tokio::task::spawn_blocking(move || loadgen(&["--url", &url_a, "--paired-url", &url_b, "--stream", "-n", "10", "--warmup", "0s"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    let (ttfc, paired) = (out["stream_stats"]["ttfc_us"]["p50"].as_u64().unwrap(), out["paired"]["ttfc_us"]["p50"].as_u64().unwrap());
    assert!(paired >= 20_000 && ttfc < 20_000, "the paired URL's first chunk comes 20 ms in: {out}");
    assert_eq!(out["paired"]["ttfc_us"]["count"], 5);
}

#[test]
fn paired_mode_refuses_a_fixed_rate() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", "http://127.0.0.1:9/v1/chat/completions", "--paired-url", "http://127.0.0.1:9/x", "--rate", "10", "-d", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("closed loop"));
}
