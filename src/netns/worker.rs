//! The one OS thread that enters namespaces (docs/design.md §5): `setns` moves only the calling thread, so doing
//! it on the async runtime's thread would move every task with it. Jobs run one at a time, each inside a
//! `NetNs` guard that restores the thread's namespace even when the job panics.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{NetNs, NetnsError};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error)]
pub enum NsWorkerError {
    #[error("the namespace worker thread is gone; restart tetherd")]
    Gone,
    #[error("a job on the namespace worker panicked in {}", path.display())]
    Panicked { path: PathBuf },
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// A handle on the worker thread; cheap to clone. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct NsWorker {
    jobs: mpsc::Sender<Job>,
}

impl NsWorker {
    pub fn start() -> std::io::Result<NsWorker> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tetherd-netns".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })?;
        Ok(NsWorker { jobs })
    }

    /// Runs `f` on the worker thread inside the namespace at `path`, and waits (asynchronously) for it.
    pub async fn run_in<T, F>(&self, path: &Path, f: F) -> Result<T, NsWorkerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let owned = path.to_path_buf();
        let job: Job = Box::new(move || {
            let outcome = NetNs::open(&owned).and_then(|ns| {
                ns.run(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
            });
            let _ = tx.send(outcome);
        });
        self.jobs.send(job).map_err(|_| NsWorkerError::Gone)?;
        match rx.await.map_err(|_| NsWorkerError::Gone)? {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_panic)) => Err(NsWorkerError::Panicked {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_and_survives_a_panicking_one() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let worker = NsWorker::start().unwrap();
        rt.block_on(async {
            let own = Path::new("/proc/self/ns/net");
            assert_eq!(worker.run_in(own, || 7).await.unwrap(), 7);
            let err = worker
                .run_in(own, || -> u8 { panic!("job fails") })
                .await
                .unwrap_err();
            assert!(matches!(err, NsWorkerError::Panicked { .. }));
            assert_eq!(worker.run_in(own, || 8).await.unwrap(), 8);
            let err = worker
                .run_in(Path::new("/run/netns/tt-no-such-ns"), || 9)
                .await
                .unwrap_err();
            assert!(matches!(err, NsWorkerError::Netns(_)));
        });
    }
}
