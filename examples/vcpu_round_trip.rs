//! How long a cache line takes to travel from one core to another and back: two threads
//! bounce one atomic counter and the median over five bursts is printed in nanoseconds.
//!
//! On a shared VM this says where the host runs the vCPUs, which two-thread timings depend
//! on (BENCHMARKS.md, 2026-12-06 evening): on the 2-vCPU AMD EPYC VM of BENCHMARKS.md, 65–95
//! ns when they share a core complex and 300–360 ns when they do not. The threads are pinned
//! to the first two CPUs the process may run on (unpinned, the OS at times ran both on one
//! and the bursts read 240–310 ns within a complex).
//! `benches/compare_onnxruntime.py` runs this around every multi-thread comparison.
//!
//! Run: `cargo run --release --example vcpu_round_trip`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Round trips per burst, unless the burst's time runs out first.
const TRIPS: u64 = 100_000;
/// The most one burst may take: if the OS runs both threads on one core, each trip waits for
/// a time slice, and the burst ends early rather than hanging.
const BURST: Duration = Duration::from_millis(200);

/// A value on cache lines of its own, so that nothing else the threads touch (the main
/// thread's stack) travels with it.
#[repr(align(128))]
struct Line<T>(T);

/// Wait until `flag` holds `value` (true) or `stop` is set (false), letting the other thread
/// have the core now and then in case both run on one.
fn wait_for(flag: &AtomicU64, value: u64, stop: &AtomicBool) -> bool {
    let mut spins = 0u32;
    while flag.load(Ordering::Acquire) != value {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) {
            std::thread::yield_now();
        }
    }
    true
}

/// Keep the calling thread on `cpu` (best effort: where pinning fails, the OS places it).
fn pin(cpu: usize) {
    // SAFETY: `set` is a plain bit mask, fully initialized before it is passed by pointer
    // with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The first two CPUs this process may run on.
fn two_cpus() -> Option<[usize; 2]> {
    // SAFETY: as in `pin`; the kernel fills `set`.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)?
    };
    // SAFETY: reads the mask the kernel filled.
    let mut cpus = (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) });
    Some([cpus.next()?, cpus.next()?])
}

/// Nanoseconds per round trip over one burst, between threads on `cpus`.
fn burst(cpus: [usize; 2]) -> f64 {
    let (flag, stop) = (Box::new(Line(AtomicU64::new(0))), Box::new(Line(AtomicBool::new(false))));
    let (flag, stop) = (&flag.0, &stop.0);
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(cpus[1]);
            // Answer every odd value with the next even one until the main thread stops.
            let mut want = 1;
            while wait_for(flag, want, stop) {
                flag.store(want + 1, Ordering::Release);
                want += 2;
            }
        });
        pin(cpus[0]);
        let start = Instant::now();
        let mut trips = 0;
        // (The clock is read once per 1024 trips: reading it costs about as much as a trip.)
        while trips < TRIPS && (!trips.is_multiple_of(1024) || start.elapsed() < BURST) {
            flag.store(2 * trips + 1, Ordering::Release);
            wait_for(flag, 2 * trips + 2, stop);
            trips += 1;
        }
        let ns = start.elapsed().as_nanos() as f64 / trips.max(1) as f64;
        stop.store(true, Ordering::Relaxed);
        ns
    })
}

fn main() {
    let Some(cpus) = two_cpus() else {
        eprintln!("vcpu_round_trip: this process may run on fewer than two CPUs");
        std::process::exit(1);
    };
    let mut bursts: Vec<f64> = (0..5).map(|_| burst(cpus)).collect();
    bursts.sort_by(f64::total_cmp);
    println!("{:.0}", bursts[bursts.len() / 2]);
}
