//! A small persistent thread pool for splitting a kernel's work across cores.
//!
//! Workers live for the process and keep their thread-local state (the GEMM's packing
//! buffers) between calls, so a parallel call costs two channel messages per worker rather
//! than thread creation and fresh buffers.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

/// A borrowed task body sent to workers. The caller of [`parallel_for`] waits for every
/// worker to report back before returning, so the borrow outlives every use.
struct Task(*const (dyn Fn(usize) + Sync), usize);
// SAFETY: the pointee is `Sync` and outlives its use (see `Task`).
unsafe impl Send for Task {}

struct Pool {
    workers: Vec<Sender<Task>>,
    done: Receiver<()>,
    done_tx: Sender<()>,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (done_tx, done) = channel();
        Mutex::new(Pool { workers: Vec::new(), done, done_tx })
    })
}

/// Run `f(0)`, …, `f(tasks − 1)`, task 0 on the calling thread and the others on pool
/// workers, and return when all are done. Tasks must not call `parallel_for` themselves.
pub fn parallel_for(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if tasks <= 1 {
        if tasks == 1 {
            f(0);
        }
        return;
    }
    // One parallel call at a time: concurrent callers (several threads each running a
    // model) take turns rather than oversubscribing the cores.
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    while p.workers.len() < tasks - 1 {
        let (tx, rx) = channel::<Task>();
        let done = p.done_tx.clone();
        let spawned = std::thread::Builder::new().name(format!("nnc-worker-{}", p.workers.len())).spawn(move || {
            for Task(f, i) in rx {
                // SAFETY: `parallel_for` keeps `f` alive until this worker reports done.
                unsafe { (*f)(i) };
                let _ = done.send(());
            }
        });
        if spawned.is_err() {
            // No more threads to be had: run everything here, in order.
            drop(p);
            (0..tasks).for_each(f);
            return;
        }
        p.workers.push(tx);
    }
    let ptr: *const (dyn Fn(usize) + Sync) = f;
    // SAFETY: erase the borrow's lifetime for the channel; we wait below for every worker to
    // finish with it before `f`'s borrow ends.
    let ptr: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(ptr) };
    for i in 1..tasks {
        p.workers[i - 1].send(Task(ptr, i)).expect("workers live for the process");
    }
    f(0);
    for _ in 1..tasks {
        p.done.recv().expect("workers live for the process");
    }
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
}
