//! A client that goes away: the upstream request is cancelled, the provider is not blamed, and
//! a half-open probe slot is given back. One that stops reading, or idles, is cut off after the
//! server's timeouts.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use switchyard_fakes::{FakeUpstream, Reply, Script, Step};

/// Long enough that only the client's own timeouts end a hanging call.
const PATIENT: &str = "[models.chat.retry]\nattempts_per_target = 1\n[models.chat.timeouts]\nfirst_byte = \"5s\"\n";

// LiteLLM #13774: a client disconnect must cancel the upstream request.
#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let a = FakeUpstream::start(Script::new().default_step(Step::Hang)).await;
    let gw = start(&one_target(&a, PATIENT)).await;

    gw.send_and_abandon(&chat_body("chat"), Duration::from_millis(200)).await;

    assert_eq!(a.requests(), 1);
    eventually("the upstream request to be cancelled", Duration::from_secs(1), || a.cancelled() == 1).await;
}

// LiteLLM #13774, streaming: dropping a stream mid-way must cancel the upstream stream.
#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_stream() {
    let a = FakeUpstream::start(Script::new().default_step(Step::StallAfter { after: 2 })).await;
    let gw = start(&one_target(&a, PATIENT)).await;

    let resp = gw.open(&stream_body("chat")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let events = read_events(&mut body, 3).await;
    assert_eq!(streamed_text(&chunks(&events)), "Hello from ");
    drop(body);

    eventually("the upstream stream to be cancelled", Duration::from_secs(1), || a.cancelled() == 1).await;
}

// LiteLLM #13774, streaming: a slow but healthy stream is cancelled too, not read to its end.
#[tokio::test]
async fn client_disconnect_during_a_slow_stream_cancels_it() {
    let slow = Step::Ok { reply: Reply::Fixed("w ".repeat(40)), chunks: 40, chunk_delay: Duration::from_millis(50) };
    let a = FakeUpstream::start(Script::new().default_step(slow)).await;
    let gw = start(&one_target(&a, PATIENT)).await;

    let resp = gw.open(&stream_body("chat")).await;
    let mut body = resp.into_body();
    read_events(&mut body, 3).await;
    drop(body);

    eventually("the slow upstream stream to be cancelled", Duration::from_secs(1), || a.cancelled() == 1).await;
    assert_eq!(a.completed(), 0, "the stream was not read to its end");
}

// A client that gives up is not the provider's fault: it must not open the breaker.
#[tokio::test]
async fn client_aborts_do_not_count_as_provider_failures() {
    let a = FakeUpstream::start(Script::new().default_step(Step::Hang)).await;
    let extra = format!("{PATIENT}[models.chat.breaker]\nfailures = 2\ncooldown = \"30s\"\n");
    let gw = start(&one_target(&a, &extra)).await;

    for n in 1..=3 {
        gw.send_and_abandon(&chat_body("chat"), Duration::from_millis(150)).await;
        eventually("the cancellation to reach the upstream", Duration::from_secs(1), || a.cancelled() == n).await;
    }

    assert_eq!(gw.get("/ready").await.status, StatusCode::OK);
    a.set_default(Step::ok());
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "the breaker opened on client aborts: {}", r.text());
    assert_eq!(r.attempts(), 1);
    assert_eq!(a.requests(), 4);
}

// GoModel PR #480: a half-open probe whose client goes away must release its probe slot.
#[tokio::test]
async fn half_open_probe_slot_is_released_when_the_client_cancels() {
    let a = FakeUpstream::start(Script::new().then(Step::status(500)).then(Step::Hang)).await;
    let extra = format!("{PATIENT}[models.chat.breaker]\nfailures = 1\ncooldown = \"300ms\"\n");
    let gw = start(&one_target(&a, &extra)).await;

    // Open the breaker.
    assert_eq!(gw.chat(&chat_body("chat")).await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gw.chat(&chat_body("chat")).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.requests(), 1);

    // After the cooldown a probe goes out, hangs, and its client gives up.
    tokio::time::sleep(Duration::from_millis(350)).await;
    gw.send_and_abandon(&chat_body("chat"), Duration::from_millis(200)).await;
    assert_eq!(a.requests(), 2, "the probe was sent");
    eventually("the probe to be cancelled upstream", Duration::from_secs(1), || a.cancelled() == 1).await;

    // The slot is free again: the next request probes (and closes the breaker).
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "the breaker stayed stuck half-open: {}", r.text());
    assert_eq!(r.attempts(), 1);
    assert_eq!(a.requests(), 3);
}

// A caller that stops reading a stream (a hung client) must not hold its upstream stream
// forever: after `server.client_timeout` its connection is closed and the upstream cancelled.
#[tokio::test]
async fn a_caller_that_stops_reading_a_stream_is_cut_off_and_the_upstream_cancelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // ~9 MB of events sent as fast as they are taken: more than the socket buffers hold.
    let fast = Step::Ok { reply: Reply::Fixed("w ".repeat(50_000)), chunks: 50_000, chunk_delay: Duration::ZERO };
    let a = FakeUpstream::start(Script::new().default_step(fast)).await;
    let gw = start(&format!("[server]\nclient_timeout = \"300ms\"\n{}", one_target(&a, PATIENT))).await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(gw.addr).await.unwrap();
    let body = stream_body("chat").to_string();
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
    tcp.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
    let mut got = vec![0; 1024];
    let n = tcp.read(&mut got).await.unwrap();
    got.truncate(n);
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&got));

    // Not read for a while, then read to the end: the connection was closed mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let end = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
    assert!(end.is_ok(), "the connection stayed open");
    assert!(!String::from_utf8_lossy(&got).contains("[DONE]"), "the whole stream arrived");
    eventually("the upstream stream to be cancelled", Duration::from_secs(2), || a.cancelled() == 1).await;
    assert_eq!(a.completed(), 0);
}

// An idle keep-alive connection is closed after `server.idle_timeout`.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = FakeUpstream::start(Script::new()).await;
    let gw = start(&format!("[server]\nidle_timeout = \"300ms\"\n{}", one_target(&a, ""))).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut got = vec![0; 4096];
    let n = tcp.read(&mut got).await.unwrap();
    assert!(got[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    let idle = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut got)).await;
    assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "still open after 5 s: {end:?}");
    assert!(idle.elapsed() >= Duration::from_millis(250), "closed after {:?}", idle.elapsed());
}
