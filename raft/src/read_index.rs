//! Read-index rounds shared by concurrent callers.
//!
//! A read-index costs a round trip to the leader, which then confirms its leadership with a
//! quorum. Callers that ask while a round is in flight must not join it (it may have read the
//! leader's commit index before they arrived), so each waits for the next round, which starts
//! once the current one ends and answers every caller that arrived before it began. However
//! many callers ask at once, a node runs at most one round at a time and each caller waits at
//! most two.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

#[derive(Default)]
pub(crate) struct ReadIndexRounds {
    /// Rounds begun so far: a round numbered above what a caller saw on arrival began after it.
    begun: AtomicU64,
    /// Held while a round runs; holds the number and outcome of the last round that ended.
    last: tokio::sync::Mutex<Option<(u64, std::result::Result<(), String>)>>,
}

impl ReadIndexRounds {
    /// Runs `round` unless a round that began after this call has ended meanwhile, whose
    /// outcome is then shared (an error as `NoQuorum` with the same text).
    pub(crate) async fn shared<F>(&self, round: impl FnOnce() -> F) -> Result<()>
    where
        F: Future<Output = Result<()>>,
    {
        let arrived = self.begun.load(Ordering::SeqCst);
        let mut last = self.last.lock().await;
        if let Some((n, outcome)) = &*last {
            if *n > arrived {
                return outcome.clone().map_err(Error::NoQuorum);
            }
        }
        let n = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = round().await;
        *last = Some((n, outcome.as_ref().map(|_| ()).map_err(|e| e.to_string())));
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn callers_that_arrive_during_a_round_share_the_next_one() {
        let rounds = Arc::new(ReadIndexRounds::default());
        let ran = Arc::new(AtomicU64::new(0));
        let round = |ran: Arc<AtomicU64>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        let first = {
            let (rounds, ran) = (rounds.clone(), ran.clone());
            tokio::spawn(async move { rounds.shared(|| round(ran)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // 100 callers arrive while the first round runs: none may use it, one more serves all.
        let late: Vec<_> = (0..100)
            .map(|_| {
                let (rounds, ran) = (rounds.clone(), ran.clone());
                tokio::spawn(async move { rounds.shared(|| round(ran)).await })
            })
            .collect();
        first.await.unwrap().unwrap();
        for l in late {
            l.await.unwrap().unwrap();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        // A caller arriving after every round ended runs its own.
        rounds.shared(|| round(ran.clone())).await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_round_fails_the_callers_that_shared_it() {
        let rounds = Arc::new(ReadIndexRounds::default());
        let slow_fail = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(Error::NoQuorum("no leader".into()))
        };
        let first = {
            let rounds = rounds.clone();
            tokio::spawn(async move { rounds.shared(slow_fail).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (a, b) = tokio::join!(rounds.shared(slow_fail), rounds.shared(slow_fail));
        assert!(first.await.unwrap().is_err());
        assert!(a.unwrap_err().to_string().contains("no leader"));
        assert!(b.unwrap_err().to_string().contains("no leader"));
    }
}
