//! A disk-sync probe run beside a latency measurement: a thread writes 8 KB to a file and syncs it
//! (`fdatasync`) every 10 ms, as a database's commit does, and keeps each sync's duration. A
//! latency tail that coincides with slow syncs here is the disk's, not the server's: on the
//! machines of session 13 syncs of 58–90 ms now and then held up PostgreSQL's commits exactly
//! when the delivery latency tail appeared.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Duration>>,
}

/// Syncs slower than this are counted apart.
const SLOW: Duration = Duration::from_millis(20);

impl Probe {
    /// Starts probing with a file in the temporary directory (on these machines the same disk as
    /// the databases); `SWBENCH_DISK_PROBE=0` turns the probe off.
    pub fn start() -> Option<Probe> {
        if std::env::var("SWBENCH_DISK_PROBE").is_ok_and(|v| v == "0") {
            return None;
        }
        let path = std::env::temp_dir().join(format!("swbench-probe-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let block = [7u8; 8192];
            let mut syncs = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                if file.write_at(&block, 0).and_then(|_| file.sync_data()).is_err() {
                    break;
                }
                syncs.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = std::fs::remove_file(&path);
            syncs
        });
        Some(Probe { stop, thread })
    }

    /// Stops the probe: the slowest sync and how many were slow, in milliseconds.
    pub fn finish_figures(self) -> (f64, usize) {
        let syncs = self.stop_and_sort();
        (ms(syncs.last()), slow(&syncs))
    }

    fn stop_and_sort(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        let mut syncs = self.thread.join().unwrap_or_default();
        syncs.sort();
        syncs
    }

    /// Stops the probe; a line ending such as `…: 980, p50 0.4 ms, max 89.8 ms, 2 over 20 ms`.
    pub fn finish(self) -> String {
        let syncs = self.stop_and_sort();
        format!(
            "disk syncs meanwhile (8 KB + fdatasync every 10 ms): {}, p50 {:.1} ms, max {:.1} ms, {} over {} ms",
            syncs.len(),
            ms(syncs.get(syncs.len() / 2)),
            ms(syncs.last()),
            slow(&syncs),
            SLOW.as_millis()
        )
    }
}

fn ms(d: Option<&Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn slow(syncs: &[Duration]) -> usize {
    syncs.iter().filter(|d| **d > SLOW).count()
}
