//! The metrics recorder buffers every histogram observation until a scrape
//! or an upkeep drains it; the server's upkeep task must drain it with
//! nobody scraping (issue 15, tenth pass: before it, each request's duration
//! stayed in memory for good). A test binary of its own, so that the
//! allocator's count of live bytes is this test's alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::watch;

/// Bytes allocated and not yet freed, process-wide.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed to `System` unchanged; the counter is only
// bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[tokio::test]
async fn upkeep_frees_buffered_observations_and_keeps_their_counts() {
    const N: u64 = 200_000;
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01])
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    let histogram =
        metrics::with_local_recorder(&recorder, || metrics::histogram!("aspen_test_seconds"));

    let base = live();
    for _ in 0..N {
        histogram.record(0.005);
    }
    let buffered = live() - base;
    // 8 bytes a sample at least: the test would prove nothing below that.
    assert!(
        buffered >= 8 * N as isize,
        "{N} samples buffered in {buffered} bytes"
    );

    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(aspen::ops::metrics_upkeep(
        handle.clone(),
        Duration::from_millis(20),
        shutdown,
    ));
    // The buffer's blocks are freed once no reader can hold them (epoch
    // reclamation), which later recordings, as traffic would, move along.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut extra = 0;
    loop {
        let held = live() - base;
        if held < buffered / 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upkeep left {held} of {buffered} bytes buffered"
        );
        histogram.record(0.0005);
        extra += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("upkeep stops on shutdown")
        .unwrap();

    // Drained into the buckets, not dropped.
    let text = handle.render();
    let count = format!("aspen_test_seconds_count {}", N + extra);
    assert!(text.contains(&count), "no `{count}` in:\n{text}");
    assert!(
        text.contains(&format!(
            "aspen_test_seconds_bucket{{le=\"0.01\"}} {}",
            N + extra
        )),
        "{text}"
    );
}
