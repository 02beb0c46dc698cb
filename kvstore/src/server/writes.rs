//! The write queue: one task executes the single-key writes of every connection, so a burst of
//! writes from many clients costs one append.
//!
//! A connection hands each run of single-key requests to the queue and awaits the results. The
//! queue task takes every job waiting at that moment, executes them all, in arrival order, as
//! one write group (each request still its own transaction with its own version), appends the
//! group with one system call, and hands each job its results. This is what Redis does once
//! per pass of its event loop, and what a Raft leader does with the proposals that arrive
//! while it is busy: under load, the cost of the append is shared by everyone waiting.
//!
//! If the append fails, nothing of the group was applied, and every job of it gets the error.
//! The queue is bounded (`jobs_max`): when it is full, connections wait to submit.
//!
//! The hand-off to the queue task costs a little latency on every write, so the queue is used
//! only where it pays: under `--fsync always`, where a write's reply waits for an fsync anyway
//! and larger groups mean fewer, fuller fsyncs. There, measured side by side on the 2-core
//! machine (`redis-benchmark -t set -c 50`), it gave 18% more writes/s; under `interval` and
//! `never` the same hand-off cost about 10% of unpipelined SET throughput, so there each
//! connection runs its own group inline ([`Mode::Inline`]).

use std::any::Any;

use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, GroupDb};
use crate::storage::StorageError;

/// Jobs executed in one write group at most; the rest wait for the next one.
pub const GROUP_JOBS_MAX: usize = 256;

type Work = Box<dyn for<'g, 'e> FnOnce(&GroupDb<'g, 'e>) -> Box<dyn Any + Send> + Send>;

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Box<dyn Any + Send>, String>>,
}

/// How writes reach the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One task groups the writes of every connection (best when replies wait for an fsync).
    Shared,
    /// Each connection appends its own runs (best when replies do not wait).
    Inline,
}

/// A handle to the write queue. Cloning is cheap; the task ends when every handle is gone.
#[derive(Clone)]
pub struct WriteQueue {
    /// `None` in [`Mode::Inline`].
    jobs: Option<mpsc::Sender<Job>>,
    db: Db,
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue")
            .field("shared", &self.jobs.is_some())
            .finish()
    }
}

impl WriteQueue {
    /// Starts the queue (and, in [`Mode::Shared`], its task) on the current runtime.
    pub fn start(db: Db, mode: Mode, jobs_max: usize) -> WriteQueue {
        let jobs = (mode == Mode::Shared).then(|| {
            let (jobs, queue) = mpsc::channel(jobs_max.max(1));
            tokio::spawn(drain(db.clone(), queue));
            jobs
        });
        WriteQueue { jobs, db }
    }

    /// Runs `work` inside a write group and returns what it returned, once the group's append
    /// has succeeded; or the append's error, in which case none of `work`'s writes happened.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl for<'g, 'e> FnOnce(&GroupDb<'g, 'e>) -> T + Send + 'static,
    ) -> Result<T, String> {
        let Some(jobs) = &self.jobs else {
            let mut value = None;
            let appended = self.db.engine().write_group(|group| {
                value = Some(work(&GroupDb::new(group)));
            });
            return match appended {
                Ok(_) => Ok(value.expect("the group ran its work before appending")),
                Err(error) => Err(failed(&error)),
            };
        };
        let (reply, result) = oneshot::channel();
        let work: Work = Box::new(move |store| Box::new(work(store)));
        let stopped = || "the write queue has stopped (the server is shutting down)".to_string();
        jobs.send(Job { work, reply })
            .await
            .map_err(|_| stopped())?;
        let value = result.await.map_err(|_| stopped())??;
        Ok(*value
            .downcast::<T>()
            .expect("a job's result has the type its caller asked for"))
    }
}

async fn drain(db: Db, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        // Let every connection that is ready to run submit its writes before this group is cut:
        // the runtime would otherwise run this task as soon as the first job woke it, and every
        // group would hold one job. (Redis flushes its log once per event-loop pass for the
        // same reason.)
        tokio::task::yield_now().await;
        let mut jobs = vec![first];
        while jobs.len() < GROUP_JOBS_MAX {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (works, replies): (Vec<Work>, Vec<_>) =
            jobs.into_iter().map(|j| (j.work, j.reply)).unzip();
        let mut results = Vec::with_capacity(works.len());
        let appended = db.engine().write_group(|group| {
            let store = GroupDb::new(group);
            results.extend(works.into_iter().map(|work| work(&store)));
        });
        match appended {
            Ok(_) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                tracing::warn!(%error, jobs = replies.len(), "write group failed; nothing applied");
                for reply in replies {
                    let _ = reply.send(Err(failed(&error)));
                }
            }
        }
    }
}

fn failed(error: &StorageError) -> String {
    format!("storage error; nothing was applied: {error}")
}
