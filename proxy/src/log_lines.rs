//! Where log lines go: appended to one shared buffer in memory, written out in batches by a
//! thread of their own.
//!
//! Why not a queue with a worker woken per line (`tracing_appender::non_blocking`, used
//! before): with one access line per request, waking the worker for nearly every line and
//! its flush after each wake were ~11 % of a node's CPU at 35 000 manifest GETs/s (the
//! worker's own park and wake 8 %, the request threads' unpark 3 %;
//! `bench/RESULTS.md`, "Log lines in batches"). Here a request thread only copies its line
//! into the buffer under a lock; the writer thread sleeps until `FLUSH_EVERY` passed or the
//! buffer holds `FLUSH_AT` bytes, then writes it all with one `write`.
//!
//! Nothing is dropped and order is kept: when the writer cannot keep up (the buffer holds
//! `MAX_PENDING` bytes, a stalled stderr), the thread logging writes the buffer out itself,
//! holding the same output lock the writer holds for its writes, so lines never overtake
//! each other and memory stays bounded. Dropping the `Flusher` writes what is left, waiting
//! at most `LAST_WRITE` for it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long a line may wait in memory before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A buffer this full is written at once rather than at the next tick.
const FLUSH_AT: usize = 64 * 1024;
/// A buffer this full makes the logging thread write it itself (backpressure).
const MAX_PENDING: usize = 4 * 1024 * 1024;

type Out = Box<dyn Write + Send>;

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Held while a batch is taken and written, so batches go out in the order taken.
    out: Mutex<Out>,
    wake: Condvar,
    closed: AtomicBool,
}

impl Shared {
    /// Takes whatever is pending and writes it, in order with every other batch.
    fn write_out(&self) {
        let mut out = self.out.lock();
        // The next lines go into a buffer of the usual size, not one regrown from nothing
        // under the lock.
        let batch = std::mem::replace(&mut *self.pending.lock(), Vec::with_capacity(FLUSH_AT));
        if batch.is_empty() {
            return;
        }
        // A log that cannot be written has nowhere to say so; the lines are lost, as
        // they would be with any writer.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
    }
}

/// The `MakeWriter` handed to the log layer.
#[derive(Clone)]
pub struct Lines {
    shared: Arc<Shared>,
}

/// Ends the writer thread and writes the last lines when dropped, waiting at most
/// `LAST_WRITE` for them: a stalled stderr (a stuck collector's pipe) must not keep the
/// process from ending.
pub struct Flusher {
    shared: Arc<Shared>,
    done: std::sync::mpsc::Receiver<()>,
}

/// How long ending the log waits for the last lines to be written.
const LAST_WRITE: Duration = Duration::from_secs(1);

/// Lines to `out`, written by a thread named `name`.
pub fn lines(out: impl Write + Send + 'static, name: &str) -> std::io::Result<(Lines, Flusher)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Vec::with_capacity(FLUSH_AT)),
        out: Mutex::new(Box::new(out)),
        wake: Condvar::new(),
        closed: AtomicBool::new(false),
    });
    let worker = shared.clone();
    let (finished, done) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || loop {
            {
                let mut pending = worker.pending.lock();
                if pending.len() < FLUSH_AT && !worker.closed.load(Ordering::Acquire) {
                    worker.wake.wait_for(&mut pending, FLUSH_EVERY);
                }
            }
            worker.write_out();
            if worker.closed.load(Ordering::Acquire) {
                // What was added after the last batch was taken is written by this same
                // thread, so a stalled stderr stalls only it.
                worker.write_out();
                let _ = finished.send(());
                return;
            }
        })?;
    Ok((
        Lines {
            shared: shared.clone(),
        },
        Flusher { shared, done },
    ))
}

impl Drop for Flusher {
    fn drop(&mut self) {
        {
            // Under the lock the writer waits on, so the wake cannot fall between its
            // check of `closed` and its wait.
            let _pending = self.shared.pending.lock();
            self.shared.closed.store(true, Ordering::Release);
            self.shared.wake.notify_one();
        }
        let _ = self.done.recv_timeout(LAST_WRITE);
    }
}

/// One event's writer: the log layer formats a whole line, then writes it here.
pub struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let len = {
            let mut pending = self.0.pending.lock();
            pending.extend_from_slice(bytes);
            pending.len()
        };
        if len >= MAX_PENDING {
            self.0.write_out();
        } else if len >= FLUSH_AT && len - bytes.len() < FLUSH_AT {
            self.0.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` into memory the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(lines: &Lines, text: &str) {
        use tracing_subscriber::fmt::MakeWriter;
        lines.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_go_out_in_order_within_a_tick_and_all_of_them_at_the_end() {
        let sink = Sink::default();
        let (lines, flusher) = lines(sink.clone(), "test-log").unwrap();
        line(&lines, "one\n");
        line(&lines, "two\n");
        let deadline = std::time::Instant::now() + FLUSH_EVERY * 20;
        while sink.0.lock().is_empty() {
            assert!(std::time::Instant::now() < deadline, "nothing written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.0.lock().as_slice(), b"one\ntwo\n");
        line(&lines, "three\n");
        drop(flusher);
        assert_eq!(sink.0.lock().as_slice(), b"one\ntwo\nthree\n");
    }

    /// A `Write` that never returns, as a stderr whose reader stopped reading.
    struct Stalled;

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_does_not_keep_the_log_from_ending() {
        let (lines, flusher) = lines(Stalled, "test-log").unwrap();
        line(&lines, "stuck\n");
        std::thread::sleep(FLUSH_EVERY * 3);
        let started = std::time::Instant::now();
        drop(flusher);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ending waited {:?} for an output that never returns",
            started.elapsed()
        );
    }

    #[test]
    fn many_threads_lose_no_line_and_keep_each_threads_order() {
        let sink = Sink::default();
        let (lines, flusher) = lines(sink.clone(), "test-log").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    // Past MAX_PENDING in all, so the backpressure path runs too.
                    for i in 0..40_000 {
                        line(&lines, &format!("{t} {i:08} {}\n", "x".repeat(40)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(flusher);
        let text = String::from_utf8(sink.0.lock().clone()).unwrap();
        let mut next = [0u32; 4];
        for l in text.lines() {
            let mut parts = l.split(' ');
            let t: usize = parts.next().unwrap().parse().unwrap();
            let i: u32 = parts.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "thread {t}'s lines out of order or lost");
            next[t] += 1;
        }
        assert_eq!(next, [40_000; 4]);
    }
}
