//! A log writer for the request path: formatted lines are appended to a shared in-memory
//! buffer (a short lock, no syscall, no thread wake-up) and a background thread writes the
//! buffer out every `interval`. A bounded buffer: if the output stalls, lines are dropped and
//! counted rather than stalling requests or growing memory.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

struct Shared {
    buf: Mutex<Vec<u8>>,
    limit: usize,
    dropped: AtomicU64,
    stop: AtomicBool,
    wake: Condvar,
}

/// A cheap, cloneable handle that implements [`Write`] (and `MakeWriter` for tracing).
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Flushes what is buffered and stops the writer thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts the background thread writing to `out` every `interval`, holding at most `limit`
    /// bytes in memory.
    pub fn new<W: Write + Send + 'static>(mut out: W, interval: Duration, limit: usize) -> (BatchWriter, FlushGuard) {
        let shared = Arc::new(Shared {
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            limit,
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
        });
        let bg = shared.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 * 1024);
                loop {
                    let stopping = {
                        let guard = bg.buf.lock().unwrap_or_else(|p| p.into_inner());
                        let (mut guard, _) = bg
                            .wake
                            .wait_timeout_while(guard, interval, |_| !bg.stop.load(Ordering::Relaxed))
                            .unwrap_or_else(|p| p.into_inner());
                        std::mem::swap(&mut *guard, &mut spare);
                        bg.stop.load(Ordering::Relaxed)
                    };
                    let dropped = bg.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        let _ = writeln!(spare, "switchyard: {dropped} log lines dropped: the log output could not keep up");
                    }
                    if !spare.is_empty() {
                        let _ = out.write_all(&spare);
                        let _ = out.flush();
                        spare.clear();
                    }
                    if stopping {
                        return;
                    }
                }
            })
            .expect("spawning the log writer thread");
        (BatchWriter { shared: shared.clone() }, FlushGuard { shared, thread: Some(thread) })
    }
}

impl Write for BatchWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut buf = self.shared.buf.lock().unwrap_or_else(|p| p.into_inner());
        if buf.len() + data.len() > self.shared.limit {
            drop(buf);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;
    fn make_writer(&'a self) -> BatchWriter {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_batches_and_flushed_on_drop() {
        let sink = Sink::default();
        let (mut w, guard) = BatchWriter::new(sink.clone(), Duration::from_secs(3600), 1 << 20);
        w.write_all(b"one\n").unwrap();
        w.write_all(b"two\n").unwrap();
        assert!(sink.0.lock().unwrap().is_empty(), "nothing written before the interval");
        drop(guard);
        assert_eq!(&sink.0.lock().unwrap()[..], b"one\ntwo\n");
    }

    #[test]
    fn a_full_buffer_drops_lines_and_says_so() {
        let sink = Sink::default();
        let (mut w, guard) = BatchWriter::new(sink.clone(), Duration::from_secs(3600), 8);
        w.write_all(b"1234567\n").unwrap();
        w.write_all(b"overflow\n").unwrap();
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(out.starts_with("1234567\n"), "{out}");
        assert!(out.contains("1 log lines dropped"), "{out}");
        assert!(!out.contains("overflow"));
    }

    #[test]
    fn the_interval_flushes_without_a_drop() {
        let sink = Sink::default();
        let (mut w, _guard) = BatchWriter::new(sink.clone(), Duration::from_millis(20), 1 << 20);
        w.write_all(b"tick\n").unwrap();
        for _ in 0..100 {
            if !sink.0.lock().unwrap().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("not flushed within a second");
    }
}
