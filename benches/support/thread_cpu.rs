//! Criterion measurement of the calling thread's CPU time (Linux
//! `/proc/thread-self/schedstat`, first field: ns on CPU), shared by the benches that report CPU
//! time rather than wall time (`benches/issuer.rs`, `benches/outbound.rs`): on a machine shared
//! with other jobs, CPU time moves far less than wall time.

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, first field: ns on
/// CPU).
pub(crate) struct ThreadCpu;

pub(crate) fn thread_cpu_ns() -> u64 {
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

/// How long criterion warms up and measures each function, and how many samples it takes.
pub(crate) struct Timing {
    pub(crate) warm_up: std::time::Duration,
    pub(crate) measurement: std::time::Duration,
    pub(crate) samples: usize,
}

/// A bench's `main`: `benches` with thread CPU time, or with wall time when the environment
/// variable `clock_var` is `wall` (for a quiet machine); command-line arguments override
/// `timing`, as criterion's own `main` lets them.
pub(crate) fn run(
    clock_var: &str,
    timing: Timing,
    wall: fn(&mut criterion::Criterion<criterion::measurement::WallTime>),
    cpu: fn(&mut criterion::Criterion<ThreadCpu>),
) {
    fn go<M: Measurement>(m: M, timing: &Timing, benches: fn(&mut criterion::Criterion<M>)) {
        let mut c = criterion::Criterion::default()
            .with_measurement(m)
            .warm_up_time(timing.warm_up)
            .measurement_time(timing.measurement)
            .sample_size(timing.samples)
            .configure_from_args();
        benches(&mut c);
        c.final_summary();
    }
    if std::env::var(clock_var).as_deref() == Ok("wall") {
        go(criterion::measurement::WallTime, &timing, wall);
    } else {
        go(ThreadCpu, &timing, cpu);
    }
}
