//! A small persistent thread pool for splitting a kernel's work across cores.
//!
//! Workers live for the process and keep their thread-local state (the GEMM's packing
//! buffers) between calls. A model runs one parallel kernel after another, each often only
//! tens of microseconds long, so the hand-off must cost far less than that: a worker that has
//! just finished spins (for up to [`SPIN`]) waiting for the next task before it parks, and
//! the caller spins waiting for the workers to finish. Waking a parked thread on this VM
//! took tens of microseconds per kernel, which is what kept MobileNetV2 from gaining more
//! than 1.2× from a second thread. ONNX Runtime's and OpenMP's pools spin the same way.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The most tasks per thread kernels cut their work into for [`parallel_tasks`]: enough to
/// even out a slowed core, few enough that each task stays well above the hand-off's cost.
pub const TASKS_PER_THREAD: usize = 4;

/// How long a worker waits for the next task spinning before it parks.
const SPIN: Duration = Duration::from_micros(300);

/// A borrowed job handed to a worker: the task body, the counter every participating thread
/// claims task indices from, and the number of tasks. The caller of [`parallel_tasks`] waits
/// for every worker to report back before returning, so the borrows outlive every use.
#[derive(Clone, Copy)]
struct Task(*const (dyn Fn(usize) + Sync), *const AtomicUsize, usize);

impl Task {
    /// Claim and run tasks until none are left.
    ///
    /// # Safety
    /// The pointees are alive (see [`Task`]).
    unsafe fn run(self) {
        let Task(f, next, tasks) = self;
        loop {
            // SAFETY: the caller's.
            let i = unsafe { (*next).fetch_add(1, Ordering::Relaxed) };
            if i >= tasks {
                break;
            }
            // SAFETY: the caller's.
            unsafe { (*f)(i) };
        }
    }
}

/// One worker's mailbox: the caller writes `task`, then publishes it by storing a new
/// generation in `posted`; the worker runs it and stores the same generation in `done`.
struct Slot {
    task: UnsafeCell<Option<Task>>,
    posted: AtomicU64,
    done: AtomicU64,
    panicked: AtomicBool,
}

// SAFETY: `task` is written only by the caller holding the pool's lock, before it publishes
// the generation (release), and read by the worker only after it observes that generation
// (acquire) and before it reports done; the caller does not touch it again until then. The
// task's pointee is `Sync`.
unsafe impl Sync for Slot {}
unsafe impl Send for Slot {}

struct Worker {
    slot: Arc<Slot>,
    thread: Thread,
}

struct Pool {
    workers: Vec<Worker>,
    generation: u64,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool { workers: Vec::new(), generation: 0 }))
}

/// A worker: wait for each new generation (spinning, then parked), run its task, report.
fn work(slot: Arc<Slot>) {
    let mut seen = 0;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let posted = slot.posted.load(Ordering::Acquire);
            if posted != seen {
                seen = posted;
                break;
            }
            spins = spins.wrapping_add(1);
            if spins % 256 != 0 || start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                // `parallel_for` unparks after posting; a wake-up that raced ahead of this
                // park leaves its token, so the park returns at once.
                std::thread::park();
            }
        }
        // SAFETY: the caller wrote the task before publishing `seen` (see `Slot`).
        if let Some(task) = unsafe { *slot.task.get() } {
            // SAFETY: `parallel_tasks` keeps the task's pointees alive until this worker
            // reports done.
            if catch_unwind(AssertUnwindSafe(|| unsafe { task.run() })).is_err() {
                slot.panicked.store(true, Ordering::Relaxed);
            }
        }
        slot.done.store(seen, Ordering::Release);
    }
}

/// Values the tasks of one parallel call share that the compiler cannot prove `Sync`: the
/// kernels' raw pointers to their operands. Whoever makes one promises what the types do
/// not say: the tasks only read through the shared pointers, except for disjoint parts of
/// the outputs each task writes, and everything pointed to outlives the call.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(T);

// SAFETY: what `Shared::new`'s caller promises (see the type).
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    /// # Safety
    /// As the type says: tasks write only disjoint parts of what `value` points to, and read
    /// the rest; it all outlives the parallel call.
    pub(crate) unsafe fn new(value: T) -> Self {
        Shared(value)
    }

    /// The shared values. (A method, so that closures capture the whole wrapper, which is
    /// `Sync`, rather than its field.)
    pub(crate) fn get(&self) -> T {
        self.0
    }
}

/// Run `f(0)`, …, `f(tasks − 1)`, one task per thread (the calling thread and `tasks − 1`
/// pool workers), and return when all are done. Tasks must not call the pool themselves.
pub fn parallel_for(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    parallel_tasks(tasks, tasks, f)
}

/// Run `f(0)`, …, `f(tasks − 1)` on up to `threads` threads (the calling thread and pool
/// workers), each thread claiming the next unclaimed task until none is left, and return
/// when all are done. Cutting work into more tasks than threads (up to
/// [`TASKS_PER_THREAD`] each) balances it when one core runs slower than the other, as when
/// another process takes part of it: ResNet-18 on two threads with a third of one core taken
/// ran 18.0 ms split evenly, 16.5 ms in claimed tasks. Which thread runs a task never changes
/// what it computes. Tasks must not call the pool themselves.
pub fn parallel_tasks(threads: usize, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = threads.min(tasks);
    if threads <= 1 {
        (0..tasks).for_each(f);
        return;
    }
    // One parallel call at a time: concurrent callers (several threads each running a
    // model) take turns rather than oversubscribing the cores.
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    while p.workers.len() < threads - 1 {
        let slot = Arc::new(Slot { task: UnsafeCell::new(None), posted: AtomicU64::new(0), done: AtomicU64::new(0), panicked: AtomicBool::new(false) });
        let theirs = Arc::clone(&slot);
        let spawned = std::thread::Builder::new().name(format!("nnc-worker-{}", p.workers.len())).spawn(move || work(theirs));
        match spawned {
            Ok(handle) => p.workers.push(Worker { slot, thread: handle.thread().clone() }),
            Err(_) => {
                // No more threads to be had: run everything here, in order.
                drop(p);
                (0..tasks).for_each(f);
                return;
            }
        }
    }
    p.generation += 1;
    let generation = p.generation;
    let ptr: *const (dyn Fn(usize) + Sync) = f;
    // SAFETY: erase the borrow's lifetime for the workers; we wait below for every worker to
    // finish with it before `f`'s borrow ends.
    let ptr: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(ptr) };
    let next = AtomicUsize::new(0);
    let task = Task(ptr, &next, tasks);
    for w in &p.workers[..threads - 1] {
        // SAFETY: the worker is idle (it reported the previous generation done) and reads
        // the task only after the store below (see `Slot`).
        unsafe { *w.slot.task.get() = Some(task) };
        w.slot.posted.store(generation, Ordering::Release);
        w.thread.unpark();
    }
    // SAFETY: `f` and `next` live until the workers report done below.
    let mine = catch_unwind(AssertUnwindSafe(|| unsafe { task.run() }));
    let mut panicked = false;
    for w in &p.workers[..threads - 1] {
        let mut spins = 0u32;
        while w.slot.done.load(Ordering::Acquire) != generation {
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 {
                // A worker the OS descheduled: let it have the core.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        panicked |= w.slot.panicked.swap(false, Ordering::Relaxed);
    }
    drop(p);
    if let Err(payload) = mine {
        std::panic::resume_unwind(payload);
    }
    assert!(!panicked, "a parallel task panicked");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once() {
        let hits: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..3 {
            parallel_for(5, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 3));
    }

    #[test]
    fn more_tasks_than_threads_each_run_once() {
        for (threads, tasks) in [(2, 9), (3, 3), (4, 1), (1, 5), (2, 0)] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            parallel_tasks(threads, tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{threads} threads, {tasks} tasks");
        }
    }

    #[test]
    fn a_panic_in_the_callers_share_reaches_the_caller() {
        let result = std::panic::catch_unwind(|| parallel_tasks(2, 4, &|i| assert_ne!(i, 0, "task 0 fails")));
        assert!(result.is_err());
        // The pool still works afterwards.
        let hits = AtomicUsize::new(0);
        parallel_tasks(2, 4, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn workers_parked_after_spinning_still_take_tasks() {
        let hits = AtomicUsize::new(0);
        for round in 0..3 {
            if round > 0 {
                // Longer than the spin: the workers are parked when the next call comes.
                std::thread::sleep(SPIN * 3);
            }
            parallel_for(3, &|_| {
                hits.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(hits.load(Ordering::Relaxed), 9);
    }
}
