//! Criterion measurement of the calling thread's CPU time (Linux
//! `/proc/thread-self/schedstat`, first field: ns on CPU), shared by the benches that report CPU
//! time rather than wall time (`benches/issuer.rs`, `benches/outbound.rs`): on a machine shared
//! with other jobs, CPU time moves far less than wall time.

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, first field: ns on
/// CPU).
pub(crate) struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    // The kernel brings a running thread's `sum_exec_runtime` up to date only at a tick or a
    // pass through the scheduler: yield first so the value read is current (sched_yield
    // updates the runtime of the caller), else short samples read 0.
    std::thread::yield_now();
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux only; the benches take `*_BENCH_CLOCK=wall` for wall time)");
    stat.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat: ns on CPU")
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds of CPU, scaled like criterion's durations.
pub(crate) struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns cpu")
        } else if ns < 1e6 {
            (1e-3, "µs cpu")
        } else {
            (1e-6, "ms cpu")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }
    fn scale_throughputs(&self, _: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *t {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
            Throughput::Bits(n) => n,
        } as f64;
        for v in values {
            *v = n * 1e9 / *v;
        }
        "/s cpu"
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}
