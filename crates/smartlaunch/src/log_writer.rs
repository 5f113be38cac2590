//! The request log's writer: log lines are appended to a shared buffer, and a thread of its own
//! writes the buffer to stdout every [`FLUSH_EVERY`] (sooner when it holds [`WAKE_AT`] bytes).
//!
//! Why not `tracing_appender::non_blocking`: its thread waits on a channel, so every line woke
//! it (a futex wake on the request's thread, a context switch, a `write` per burst).  On the
//! `Patient/{id}` read loop that thread and its channel took 14% of the server's time
//! (`perf`, issue 10).  Here a line costs a lock and a copy; the thread sleeps on a timer and
//! nobody wakes it unless the buffer fills.
//!
//! Lines are whole: the `fmt` layer formats an event and writes it with one `write_all`, which
//! appends it under the lock.  Past [`MAX_BUFFERED`] bytes not yet written (stdout blocked),
//! lines are dropped and counted, so a stuck terminal never stalls a request or grows memory
//! without bound; the count is written when stdout moves again.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(25);
/// A buffer this full wakes the thread at once.
const WAKE_AT: usize = 256 * 1024;
/// Lines past this many unwritten bytes are dropped (and counted).
const MAX_BUFFERED: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `MakeWriter` of the log subscriber.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes what is buffered and stops the thread when dropped (at the end of `main`).
pub struct FlushOnDrop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer to `out` and the guard that flushes it.
pub fn batched(out: impl Write + Send + 'static) -> (BatchedWriter, FlushOnDrop) {
    let shared = Arc::new(Shared::default());
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || write_loop(&for_thread, out)).ok();
    (BatchedWriter { shared: shared.clone() }, FlushOnDrop { shared, thread })
}

fn write_loop(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::new();
    loop {
        let (closed, dropped) = {
            let mut buffer = shared.lock();
            if buffer.bytes.len() < WAKE_AT && !buffer.closed {
                buffer = shared.wake.wait_timeout(buffer, FLUSH_EVERY).unwrap_or_else(|p| p.into_inner()).0;
            }
            std::mem::swap(&mut buffer.bytes, &mut spare);
            (buffer.closed, std::mem::take(&mut buffer.dropped))
        };
        if !spare.is_empty() || dropped > 0 {
            let _ = out.write_all(&spare);
            if dropped > 0 {
                let _ = writeln!(out, "(the log dropped {dropped} lines while stdout was blocked)");
            }
            let _ = out.flush();
            spare.clear();
        }
        if closed {
            return;
        }
    }
}

/// One event's writer: appends under the lock.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.shared.lock();
        if buffer.bytes.len() + line.len() > MAX_BUFFERED {
            buffer.dropped += 1;
        } else {
            buffer.bytes.extend_from_slice(line);
            if buffer.bytes.len() >= WAKE_AT {
                self.shared.wake.notify_one();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter { shared: &self.shared }
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read after the writer is gone.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_the_guard_flushes_the_rest() {
        let sink = Sink::default();
        let (writer, guard) = batched(sink.clone());
        std::thread::scope(|s| {
            for t in 0..4 {
                let writer = writer.clone();
                s.spawn(move || {
                    for n in 0..2000 {
                        writer
                            .make_writer()
                            .write_all(format!("thread {t} line {n} {}\n", "x".repeat(n % 300)).as_bytes())
                            .unwrap();
                    }
                });
            }
        });
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|rest| {
                    let (n, xs) = rest.split_once(' ').unwrap();
                    let n: usize = n.parse().unwrap();
                    assert_eq!(xs.len(), n % 300, "a line was cut or mixed with another");
                    n
                })
                .collect();
            assert_eq!(mine, (0..2000).collect::<Vec<_>>(), "each thread's lines in order");
        }
    }

    #[test]
    fn a_line_waits_at_most_about_one_period() {
        let sink = Sink::default();
        let (writer, _guard) = batched(sink.clone());
        writer.make_writer().write_all(b"hello\n").unwrap();
        std::thread::sleep(FLUSH_EVERY * 8);
        assert_eq!(&*sink.0.lock().unwrap(), b"hello\n");
    }

    #[test]
    fn past_the_bound_lines_are_dropped_and_counted_not_buffered() {
        /// Stdout that blocks until the test lets it go.
        struct Blocked(Arc<Mutex<()>>, Sink);
        impl Write for Blocked {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let _held = self.0.lock().unwrap();
                self.1.write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let sink = Sink::default();
        let (writer, guard) = batched(Blocked(gate.clone(), sink.clone()));
        let line = vec![b'x'; 1023].into_iter().chain([b'\n']).collect::<Vec<u8>>();
        // Enough that the thread takes one buffer and blocks on it, and the next one overflows.
        for _ in 0..(3 * MAX_BUFFERED / line.len()) {
            writer.make_writer().write_all(&line).unwrap();
        }
        assert!(writer.shared.lock().bytes.len() <= MAX_BUFFERED);
        drop(held);
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("(the log dropped "), "the drops are reported");
        assert!(text.lines().filter(|l| l.starts_with('x')).all(|l| l.len() == 1023), "kept lines are whole");
    }
}
