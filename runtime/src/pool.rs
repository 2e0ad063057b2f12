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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The most tasks per thread kernels cut their work into for [`parallel_tasks`]: enough to
/// even out a slowed core, few enough that each task stays well above the hand-off's cost.
pub const TASKS_PER_THREAD: usize = 4;

/// How long a worker waits for the next task spinning before it parks.
const SPIN: Duration = Duration::from_micros(300);

/// One thread's share of a call's tasks, packed as `front << 32 | back`: its owner takes
/// tasks from the front, and a thread whose own share is empty takes them from the back.
/// Aligned to its own cache lines, since the owner updates it once per task.
#[repr(align(128))]
struct Share(AtomicU64);

impl Share {
    fn new(lo: usize, hi: usize) -> Share {
        Share(AtomicU64::new(((lo as u64) << 32) | hi as u64))
    }

    /// Take the first task left, by advancing the front; `None` when none is left.
    fn take_front(&self) -> Option<usize> {
        self.take(|front, back| (front, (front + 1) << 32 | back))
    }

    /// Take the last task left, by retreating the back; `None` when none is left.
    fn take_back(&self) -> Option<usize> {
        self.take(|front, back| (back - 1, front << 32 | (back - 1)))
    }

    fn take(&self, step: impl Fn(u64, u64) -> (u64, u64)) -> Option<usize> {
        let mut v = self.0.load(Ordering::Relaxed);
        loop {
            let (front, back) = (v >> 32, v & u64::from(u32::MAX));
            if front >= back {
                return None;
            }
            let (task, next) = step(front, back);
            match self.0.compare_exchange_weak(v, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(task as usize),
                Err(now) => v = now,
            }
        }
    }
}

/// A borrowed job handed to a worker: the task body and every participating thread's share
/// of the tasks. The caller of [`parallel_tasks`] waits for every worker to report back
/// before returning, so the borrows outlive every use.
#[derive(Clone, Copy)]
struct Task(*const (dyn Fn(usize, usize) + Sync), *const [Share]);

impl Task {
    /// Run thread `me`'s own share of the tasks in order, then take what is left of the
    /// others' shares from their backs until no task is left.
    ///
    /// # Safety
    /// The pointees are alive (see [`Task`]); `me` indexes the shares.
    unsafe fn run(self, me: usize) {
        let Task(f, shares) = self;
        // SAFETY: the caller's.
        let (f, shares) = unsafe { (&*f, &*shares) };
        while let Some(i) = shares[me].take_front() {
            f(i, me);
        }
        for other in (1..shares.len()).map(|d| (me + d) % shares.len()) {
            while let Some(i) = shares[other].take_back() {
                f(i, me);
            }
        }
    }
}

/// One worker's mailbox: the caller writes `task`, then publishes it by storing a new
/// generation in `posted`; the worker runs it and stores the same generation in `done`.
struct Slot {
    /// This worker's index among a call's threads (the caller is 0).
    me: usize,
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
            if !spins.is_multiple_of(256) || start.elapsed() < SPIN {
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
            if catch_unwind(AssertUnwindSafe(|| unsafe { task.run(slot.me) })).is_err() {
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
/// pool workers; thread `t` runs task `t` unless another finished first and took it), and
/// return when all are done. Tasks must not call the pool themselves.
pub fn parallel_for(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    parallel_tasks(tasks, tasks, f)
}

/// Run `f(0)`, …, `f(tasks − 1)` on up to `threads` threads (the calling thread and pool
/// workers), and return when all are done. Thread `t` of `T` owns the tasks from
/// `tasks·t/T` to `tasks·(t+1)/T` and runs them in order; a thread that has finished its own
/// takes the others' remaining tasks from the back. Cutting work into more tasks than threads
/// (up to [`TASKS_PER_THREAD`] each) balances it when one core runs slower than the other, as
/// when another process takes part of it: ResNet-18 on two threads with a third of one core
/// taken ran 18.0 ms split evenly, 16.5 ms in tasks taken as threads finished.
///
/// Owned shares keep each thread on the same part of the data kernel after kernel (most
/// kernels number their tasks in the order of the rows they write), so a thread mostly reads what
/// it wrote itself. That matters most when two cores share no cache: this VM's host at times
/// puts its two vCPUs in different core complexes (a cache line's round trip between them
/// 330 ns rather than 60), and there ResNet-18 on two threads took 16.4–17.1 ms with one
/// task counter for all threads, which handed each thread different rows in every kernel,
/// and 15.2–15.8 ms with owned shares (11.6–11.8 → 11.3–11.5 ms when the vCPUs share a
/// complex). Which thread runs a task never changes what it computes. Tasks must not call
/// the pool themselves.
pub fn parallel_tasks(threads: usize, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    parallel_tasks_on(threads, tasks, &|task, _| f(task))
}

/// [`parallel_tasks`], telling each task which of the call's threads runs it (`0..threads`;
/// the caller is 0). No two tasks run on one thread at once, so a task may use buffers of
/// its thread's own (kernels keep those thread-local, as the GEMM's packing buffers and
/// the Winograd matrices are).
fn parallel_tasks_on(threads: usize, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    let threads = threads.min(tasks);
    // (No kernel makes more tasks than a share can count.)
    if threads <= 1 || tasks > u32::MAX as usize {
        (0..tasks).for_each(|task| f(task, 0));
        return;
    }
    // One parallel call at a time: concurrent callers (several threads each running a
    // model) take turns rather than oversubscribing the cores.
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    while p.workers.len() < threads - 1 {
        let slot = Arc::new(Slot { me: p.workers.len() + 1, task: UnsafeCell::new(None), posted: AtomicU64::new(0), done: AtomicU64::new(0), panicked: AtomicBool::new(false) });
        let theirs = Arc::clone(&slot);
        let spawned = std::thread::Builder::new().name(format!("nnc-worker-{}", p.workers.len())).spawn(move || work(theirs));
        match spawned {
            Ok(handle) => p.workers.push(Worker { slot, thread: handle.thread().clone() }),
            Err(_) => {
                // No more threads to be had: run everything here, in order.
                drop(p);
                (0..tasks).for_each(|task| f(task, 0));
                return;
            }
        }
    }
    p.generation += 1;
    let generation = p.generation;
    let ptr: *const (dyn Fn(usize, usize) + Sync) = f;
    // SAFETY: erase the borrow's lifetime for the workers; we wait below for every worker to
    // finish with it before `f`'s borrow ends.
    let ptr: *const (dyn Fn(usize, usize) + Sync + 'static) = unsafe { std::mem::transmute(ptr) };
    let shares: Vec<Share> = (0..threads).map(|t| Share::new(tasks * t / threads, tasks * (t + 1) / threads)).collect();
    let task = Task(ptr, &shares[..]);
    for w in &p.workers[..threads - 1] {
        // SAFETY: the worker is idle (it reported the previous generation done) and reads
        // the task only after the store below (see `Slot`).
        unsafe { *w.slot.task.get() = Some(task) };
        w.slot.posted.store(generation, Ordering::Release);
        w.thread.unpark();
    }
    // SAFETY: `f` and `shares` live until the workers report done below.
    let mine = catch_unwind(AssertUnwindSafe(|| unsafe { task.run(0) }));
    let mut panicked = false;
    for w in &p.workers[..threads - 1] {
        let mut spins = 0u32;
        while w.slot.done.load(Ordering::Acquire) != generation {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
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
    fn shares_give_each_task_once_from_either_end() {
        let share = Share::new(2, 6);
        assert_eq!([share.take_front(), share.take_back(), share.take_front(), share.take_back()], [Some(2), Some(5), Some(3), Some(4)]);
        assert_eq!((share.take_front(), share.take_back()), (None, None));
    }

    #[test]
    fn tasks_learn_their_thread_and_no_thread_runs_two_at_once() {
        for (threads, tasks) in [(2, 9), (3, 3), (3, 17), (4, 2)] {
            let busy: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            parallel_tasks_on(threads, tasks, &|task, me| {
                assert!(me < threads.min(tasks));
                assert_eq!(busy[me].fetch_add(1, Ordering::SeqCst), 0, "thread {me} runs two tasks at once");
                hits[task].fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
                busy[me].fetch_sub(1, Ordering::SeqCst);
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
