//! A pool of workers over a shared job queue, where a job may panic — and no job is lost.
//!
//! ```text
//! pool (one_for_one)
//! ├── worker-0 ┐
//! ├── worker-1 ├── each: take a job from the queue, run it, send the outcome
//! └── worker-2 ┘
//! ```
//!
//! The recipe the docs recommend for work that must not be lost across a crash:
//!
//! 1. A worker (restartable, `Fn`) keeps the job it is running in an **in-flight slot**
//!    that outlives its incarnation (captured by the worker's function, not local to
//!    one call).
//! 2. When it starts again, [`Context::previous_exit`] says whether the last incarnation
//!    crashed; if so, the job left in the slot is the one that crashed it. It is
//!    reported as failed — not retried, since a job that panics once will likely panic
//!    again and crash-loop the worker into its supervisor's intensity limit.
//! 3. Jobs are taken with [`Context::recv`], which wakes on the stop signal, so a
//!    shutdown never waits for the queue.
//!
//! Run it with `cargo run --example job_pool`: 200 jobs, every 17th panics; it checks that
//! each job is accounted for, exactly once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::channel::{unbounded, Receiver, Sender};
use steadfast::{ChildSpec, Context, Strategy, Supervisor};

const JOBS: u32 = 200;
const WORKERS: usize = 3;

/// What happened to a job.
#[derive(Debug)]
enum Outcome {
    Done { job: u32, result: u64 },
    Failed { job: u32, why: String },
}

/// The work itself: every 17th job panics (a bug in the job, not in the worker).
fn run_job(job: u32) -> u64 {
    if job % 17 == 0 {
        panic!("job {job} hit a bug");
    }
    u64::from(job) * u64::from(job)
}

/// A restartable worker with its in-flight slot.
fn worker(id: usize, jobs: Receiver<u32>, outcomes: Sender<Outcome>) -> ChildSpec {
    let in_flight: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
    ChildSpec::worker(format!("worker-{id}"), move |ctx: &Context| {
        // A crashed incarnation left its job behind: report it, once.
        if let Some(why) = ctx.previous_exit().filter(|r| r.is_abnormal()) {
            if let Some(job) = in_flight.lock().unwrap().take() {
                let _ = outcomes.send(Outcome::Failed {
                    job,
                    why: why.to_string(),
                });
            }
        }
        loop {
            let job = ctx.recv(&jobs)?; // wakes on shutdown: `?` makes it a clean stop
            *in_flight.lock().unwrap() = Some(job);
            let result = run_job(job);
            *in_flight.lock().unwrap() = None;
            let _ = outcomes.send(Outcome::Done { job, result });
        }
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (job_tx, jobs) = unbounded();
    let (outcome_tx, outcomes) = unbounded();
    let pool = Supervisor::builder()
        .strategy(Strategy::OneForOne)
        // Each poisoned job costs one restart; allow them, but still catch a worker that
        // crashes on everything.
        .intensity(50, Duration::from_secs(1))
        .children((0..WORKERS).map(|id| worker(id, jobs.clone(), outcome_tx.clone())))
        .start()?;
    for job in 0..JOBS {
        job_tx.send(job)?;
    }

    let (mut done, mut failed) = (0, Vec::new());
    let mut seen = HashSet::new();
    for _ in 0..JOBS {
        let outcome = outcomes.recv_timeout(Duration::from_secs(30))?;
        let job = match &outcome {
            Outcome::Done { job, result } => {
                assert_eq!(*result, u64::from(*job) * u64::from(*job));
                done += 1;
                *job
            }
            Outcome::Failed { job, why } => {
                failed.push(format!("job {job}: {why}"));
                *job
            }
        };
        assert!(seen.insert(job), "job {job} reported twice");
    }
    pool.shutdown()?;
    println!("{done} jobs done, {} failed, 0 lost:", failed.len());
    for line in &failed {
        println!("  {line}");
    }
    assert_eq!(seen.len() as u32, JOBS);
    Ok(())
}
