//! [`ThreadPassRunner`]: scheduling passes on a pool of worker threads, the agent's runner.
//!
//! The host submits a pass and goes on with its loop; a worker thread runs it and queues
//! its result. The host collects results after each of its inputs, and at once when the
//! caller wakes it: every finished pass calls the wake function the caller gave, which
//! typically posts an event to the channel the host's loop waits on; the loop then calls
//! [`ServerHost::handle_passes_ready`](super::ServerHost::handle_passes_ready).
//!
//! The queue of passes not yet started is bounded: a pass past the bound is refused and
//! comes back at once as a failed result, which the server turns into a nack (the broker
//! hands the evaluation out again after its nack delay). A pass that panics comes back as
//! a failed result too, and its thread takes the next pass. Dropping the runner joins
//! every thread: passes still queued are dropped unrun, the ones running finish first.

use super::{PassFailure, PassResult, PassRunner};
use drover_core::scheduler::ScheduleOutput;
use drover_core::server::{PassId, SchedulePass};
use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Passes waiting for a thread before more are refused. A server hands out at most one
/// pass per scheduler worker, so this is only reached by a runner shared by many servers
/// or a pool far smaller than its workers.
pub const PASS_QUEUE_LEN_MAX_DEFAULT: usize = 64;

/// What a pass runs: `SchedulePass::run` in production; tests plug their own.
pub type PassFn = Arc<dyn Fn(&SchedulePass) -> ScheduleOutput + Send + Sync>;
/// Called on a worker thread after each result is queued; it must return quickly.
pub type WakeFn = Arc<dyn Fn() + Send + Sync>;

/// The size of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassPoolConfig {
    pub threads: usize,
    pub queue_len_max: usize,
}

impl PassPoolConfig {
    /// One thread per core but one, left to the host's loop (Raft, the applier, the
    /// state machine); at least one.
    pub fn for_this_machine() -> PassPoolConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PassPoolConfig {
            threads: cores.saturating_sub(1).max(1),
            queue_len_max: PASS_QUEUE_LEN_MAX_DEFAULT,
        }
    }
}

/// What a pool did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Passes that ran to an output.
    pub finished: u64,
    pub panicked: u64,
    /// Passes refused because the queue was full.
    pub refused: u64,
    /// Time spent running passes, summed over the threads.
    pub busy: Duration,
}

/// Why a pool did not start.
#[derive(Debug)]
pub enum PassPoolError {
    /// A pool needs at least one thread and room for one queued pass.
    Empty(PassPoolConfig),
    Spawn(std::io::Error),
}

impl fmt::Display for PassPoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassPoolError::Empty(config) => write!(
                f,
                "a pass pool needs at least one thread and one queue slot (got {} threads, \
                 {} slots)",
                config.threads, config.queue_len_max
            ),
            PassPoolError::Spawn(error) => write!(f, "cannot start a pass thread: {error}"),
        }
    }
}

impl std::error::Error for PassPoolError {}

/// What the caller's side and the threads share.
struct Shared {
    run: PassFn,
    wake: Option<WakeFn>,
    results: Mutex<VecDeque<(PassId, PassResult)>>,
    stats: Mutex<PassStats>,
    /// Set on drop: queued passes are no longer worth running.
    closing: AtomicBool,
}

impl Shared {
    fn deliver(&self, pass_id: PassId, result: PassResult) {
        lock(&self.results).push_back((pass_id, result));
        if let Some(wake) = &self.wake {
            wake();
        }
    }
}

/// Runs passes on a pool of threads; see the module documentation.
pub struct ThreadPassRunner {
    /// `None` once dropping: the threads see the queue disconnected and leave.
    queue: Option<SyncSender<SchedulePass>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ThreadPassRunner {
    /// Runs `SchedulePass::run`; results wait for the host's next input.
    pub fn new(config: PassPoolConfig) -> Result<ThreadPassRunner, PassPoolError> {
        ThreadPassRunner::start(config, Arc::new(SchedulePass::run), None)
    }

    /// Runs `SchedulePass::run` and calls `wake` after each result.
    pub fn with_wake(
        config: PassPoolConfig,
        wake: WakeFn,
    ) -> Result<ThreadPassRunner, PassPoolError> {
        ThreadPassRunner::start(config, Arc::new(SchedulePass::run), Some(wake))
    }

    /// Runs `run` for each pass, calling `wake` (if any) after each result.
    pub fn start(
        config: PassPoolConfig,
        run: PassFn,
        wake: Option<WakeFn>,
    ) -> Result<ThreadPassRunner, PassPoolError> {
        if config.threads == 0 || config.queue_len_max == 0 {
            return Err(PassPoolError::Empty(config));
        }
        let shared = Arc::new(Shared {
            run,
            wake,
            results: Mutex::new(VecDeque::new()),
            stats: Mutex::new(PassStats::default()),
            closing: AtomicBool::new(false),
        });
        let (sender, receiver) = sync_channel(config.queue_len_max);
        let receiver = Arc::new(Mutex::new(receiver));
        // Built before the first spawn, so a failed spawn drops it and joins the others.
        let mut runner = ThreadPassRunner { queue: Some(sender), shared, threads: Vec::new() };
        for i in 0..config.threads {
            let (receiver, shared) = (Arc::clone(&receiver), Arc::clone(&runner.shared));
            let thread = std::thread::Builder::new()
                .name(format!("drover-pass-{i}"))
                .spawn(move || work(&receiver, &shared))
                .map_err(PassPoolError::Spawn)?;
            runner.threads.push(thread);
        }
        Ok(runner)
    }

    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    pub fn stats(&self) -> PassStats {
        *lock(&self.shared.stats)
    }

    fn refuse(&self, pass_id: PassId, reason: String) {
        lock(&self.shared.stats).refused += 1;
        lock(&self.shared.results).push_back((pass_id, Err(PassFailure { reason })));
    }
}

impl PassRunner for ThreadPassRunner {
    fn submit(&mut self, pass: SchedulePass) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(pass) {
            Ok(()) => {}
            Err(TrySendError::Full(pass)) => {
                let reason = "the pass queue is full".to_owned();
                self.refuse(pass.pass_id, reason);
            }
            Err(TrySendError::Disconnected(pass)) => {
                self.refuse(pass.pass_id, "the pass threads have stopped".to_owned());
            }
        }
    }

    fn poll_output(&mut self) -> Option<(PassId, PassResult)> {
        lock(&self.shared.results).pop_front()
    }
}

impl Drop for ThreadPassRunner {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.queue = None;
        for thread in self.threads.drain(..) {
            // A thread never panics out of `work`: passes run under `catch_unwind`.
            let _ = thread.join();
        }
    }
}

/// One thread: takes passes until the queue is disconnected.
fn work(queue: &Mutex<Receiver<SchedulePass>>, shared: &Shared) {
    loop {
        // The lock is held while waiting, so idle threads queue on it instead.
        let Ok(pass) = lock(queue).recv() else { return };
        if shared.closing.load(Ordering::Acquire) {
            continue;
        }
        let started = Instant::now();
        let output = catch_unwind(AssertUnwindSafe(|| (shared.run)(&pass)));
        let busy = started.elapsed();
        let mut stats = lock(&shared.stats);
        stats.busy += busy;
        let result = match output {
            Ok(output) => {
                stats.finished += 1;
                Ok(output)
            }
            Err(payload) => {
                stats.panicked += 1;
                let reason = format!("the scheduling pass panicked: {}", panic_text(&*payload));
                Err(PassFailure { reason })
            }
        };
        drop(stats);
        shared.deliver(pass.pass_id, result);
    }
}

/// The message a panic carried, when it is text.
fn panic_text(payload: &(dyn Any + Send)) -> &str {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => text,
        (None, Some(text)) => text,
        (None, None) => "(no message)",
    }
}

/// A lock that survives a thread that panicked while holding it: nothing here is left
/// half-updated by a panic (passes run with no lock held).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
