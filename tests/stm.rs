//! The STM against real etcd: every isolation level keeps its promise under contention,
//! and a commit of unknown outcome is resolved by the STM, whether it was applied, never
//! sent, or applied seconds later.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{all_healthy, client, cluster};
use etcd_blocking::concurrency::{CommitFault, Isolation, Stm, StmTxn};
use etcd_blocking::{Client, Error, GetOptions, Kv};

/// The number at `key` (0 if it does not exist).
fn number(tx: &mut StmTxn<'_>, key: &str) -> Result<u64, Error> {
    Ok(tx.get(key)?.map_or(0, |v| {
        String::from_utf8_lossy(&v).parse().expect("a number")
    }))
}

/// One increment of `key`, as the STM runs it.
fn increment(stm: &Stm, key: &str) -> Result<u64, Error> {
    stm.run(|tx| {
        let n = number(tx, key)?;
        tx.put(key, (n + 1).to_string());
        Ok(n + 1)
    })
}

fn read(kv: &Kv, key: &str) -> u64 {
    kv.get_one(key).expect("get").map_or(0, |kv| {
        kv.value_str().expect("text").parse().expect("a number")
    })
}

#[test]
fn contending_increments_all_count_at_every_serializable_level() {
    let cluster = cluster(1);
    let clients: Vec<Client> = (0..2).map(|_| client(&cluster)).collect();
    const THREADS: usize = 4;
    const EACH: u64 = 25;
    for isolation in [
        Isolation::SerializableSnapshot,
        Isolation::Serializable,
        Isolation::RepeatableReads,
    ] {
        let key = format!("counter/{isolation:?}");
        let stms: Vec<Stm> = clients
            .iter()
            .map(|c| Stm::new(c).isolation(isolation))
            .collect();
        thread::scope(|s| {
            for t in 0..THREADS {
                let (stm, key) = (&stms[t % 2], key.as_str());
                s.spawn(move || {
                    for _ in 0..EACH {
                        increment(stm, key).expect("increment");
                    }
                });
            }
        });
        assert_eq!(
            read(&clients[0].kv(), &key),
            THREADS as u64 * EACH,
            "{isolation:?}: every increment counted once"
        );
        let conflicts: u64 = stms.iter().map(|s| s.stats().conflicts).sum();
        assert!(conflicts > 0, "{isolation:?}: the threads never contended");
    }
}

#[test]
fn the_levels_differ_where_the_go_client_says() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    // A write to a key written but not read since the snapshot: a conflict for the
    // serializable snapshot only.
    for (isolation, runs) in [
        (Isolation::SerializableSnapshot, 2),
        (Isolation::Serializable, 1),
    ] {
        let stm = Stm::new(&client).isolation(isolation);
        let mut ran = 0;
        stm.run(|tx| {
            ran += 1;
            tx.get("skew/read")?;
            if ran == 1 {
                kv.put("skew/written", "by another").expect("put");
            }
            tx.put("skew/written", format!("{isolation:?}"));
            Ok::<_, Error>(())
        })
        .expect("run");
        assert_eq!(ran, runs, "{isolation:?}");
    }
    // A key changed between two reads of one run: the snapshot levels read it as it was
    // at the first read (and the commit then conflicts); repeatable reads read it new.
    for (isolation, second, runs) in [
        (Isolation::Serializable, "old", 2),
        (Isolation::RepeatableReads, "new", 1),
    ] {
        kv.put("reads/b", "old").expect("put");
        let stm = Stm::new(&client).isolation(isolation);
        let mut seen = Vec::new();
        stm.run(|tx| {
            tx.get("reads/a")?;
            if seen.is_empty() {
                kv.put("reads/b", "new").expect("put");
            }
            let b = tx.get("reads/b")?.expect("b");
            seen.push(String::from_utf8(b).expect("text"));
            tx.put("reads/c", "written");
            Ok::<_, Error>(())
        })
        .expect("run");
        assert_eq!(seen[0], second, "{isolation:?}: {seen:?}");
        assert_eq!(seen.len(), runs, "{isolation:?}: {seen:?}");
    }
    // Read committed checks nothing: a write over a change made since the read.
    let stm = Stm::new(&client).isolation(Isolation::ReadCommitted);
    let mut ran = 0;
    stm.run(|tx| {
        ran += 1;
        let n = number(tx, "rc")?;
        kv.put("rc", "100").expect("put");
        tx.put("rc", (n + 1).to_string());
        Ok::<_, Error>(())
    })
    .expect("run");
    assert_eq!((ran, read(&kv, "rc")), (1, 1));
    // An error of the closure ends the run, with nothing written.
    let failed: Result<(), Error> = Stm::new(&client).run(|tx| {
        tx.put("never", "written");
        Err(Error::InvalidArgument {
            argument: "test",
            reason: "the closure failed".to_owned(),
        })
    });
    assert!(matches!(failed, Err(Error::InvalidArgument { .. })));
    assert!(kv.get_one("never").expect("get").is_none());
    // A zero timeout: one attempt, and a conflict is a typed error.
    let stm = Stm::new(&client).timeout(Duration::ZERO);
    let mut ran = 0;
    let gave_up = stm.run(|tx| {
        ran += 1;
        let n = number(tx, "zero")?;
        kv.put("zero", "7").expect("put");
        tx.put("zero", (n + 1).to_string());
        Ok::<_, Error>(())
    });
    assert!(
        matches!(gave_up, Err(Error::WaitTimeout { .. })),
        "{gave_up:?}"
    );
    assert_eq!((ran, read(&kv, "zero")), (1, 7));
}

/// The fences under `prefix`, as (value) text.
fn fences(kv: &Kv, prefix: &str) -> Vec<String> {
    common::values(
        &kv.get_with(prefix, GetOptions::new().prefix())
            .expect("get"),
    )
}

#[test]
fn an_unknown_outcome_is_resolved_applied_or_not_and_never_applied_twice() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let stm = Stm::new(&client).fence_prefix("fences/");
    // One increment with `fault` on its first commit: its value and how often it ran.
    let increment_with = |fault: CommitFault| {
        stm.inject([fault]);
        let mut ran = 0;
        let value = stm
            .run(|tx| {
                ran += 1;
                let n = number(tx, "c")?;
                tx.put("c", (n + 1).to_string());
                Ok::<_, Error>(n + 1)
            })
            .expect("run");
        (value, ran, read(&kv, "c"))
    };
    // Applied, and the answer lost: the STM finds its fence and returns the closure's
    // value, without running it again.
    assert_eq!(increment_with(CommitFault::AnswerLost), (1, 1, 1));
    assert_eq!(stm.stats().resolved_committed, 1);
    assert_eq!(fences(&kv, "fences/"), ["committed"]);
    // Never sent: the STM fences the commit off for good and runs the closure again.
    assert_eq!(increment_with(CommitFault::NotSent), (2, 2, 2));
    assert_eq!(stm.stats().resolved_aborted, 1);
    // The first commit's fence was deleted by a later commit; the one fenced off stays,
    // beside the fence of the last commit.
    let mut left = fences(&kv, "fences/");
    left.sort();
    assert_eq!(left, ["aborted", "committed"]);
    // The last clone dropped deletes the fences of commits known applied.
    drop(stm);
    assert_eq!(fences(&kv, "fences/"), ["aborted"]);
}

/// How long the old leader stays paused: long enough for writes forwarded to it to be
/// given up, resolved and followed by newer ones (see tests/unknown.rs).
const HOLD: Duration = Duration::from_secs(3);

/// One round: writers increment counters of their own through a client of one follower,
/// with read committed (so that only the fence keeps a commit from being applied twice),
/// while the leader is paused; a blind put through the same follower shows whether writes
/// forwarded to the old leader were applied after it came back. Returns whether they were
/// and how many commits were fenced off.
fn late_round(cluster: &etcd_blocking::testing::Cluster, kv: &Kv, n: usize) -> (bool, u64) {
    const WRITERS: usize = 24;
    let leader = cluster.leader().expect("leader");
    let follower = (leader + 1) % 3;
    let via = common::client_of(cluster, follower);
    let stm = Stm::new(&via).isolation(Isolation::ReadCommitted);
    let key = |w: usize| format!("late/{n}/{w}");
    let stop = Arc::new(AtomicBool::new(false));
    // Each writer's first commit goes out just after the leader is paused: it has read
    // its counter, and waits for the pause before its closure returns.
    let paused_now = Arc::new(Barrier::new(WRITERS + 1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stm, stop, key) = (stm.clone(), stop.clone(), key(w));
            let paused_now = paused_now.clone();
            thread::spawn(move || {
                let mut first = true;
                let first_run = stm.run(|tx| {
                    let n = number(tx, &key)?;
                    if std::mem::take(&mut first) {
                        paused_now.wait();
                    }
                    tx.put(key.as_str(), (n + 1).to_string());
                    Ok::<_, Error>(())
                });
                let mut made = match first_run {
                    Ok(()) => 1,
                    Err(e) => {
                        assert!(!e.is_write_outcome_unknown(), "{key}: left unknown: {e}");
                        0
                    }
                };
                while !stop.load(Ordering::Acquire) {
                    match increment(&stm, &key) {
                        Ok(_) => made += 1,
                        Err(e) => assert!(
                            !e.is_write_outcome_unknown(),
                            "{key}: the STM left an outcome unknown: {e}"
                        ),
                    }
                }
                made
            })
        })
        .collect();
    let mut witness = common::LateWitness::new(kv, format!("late/{n}/witness"));
    cluster.pause(leader).expect("pause");
    let paused = Instant::now();
    paused_now.wait();
    // When the blind put was not forwarded to the paused leader, neither were the
    // commits: the round cannot show what it is for, and ends at once.
    if witness.send(cluster, kv, &via) {
        cluster
            .wait_until(Duration::from_secs(20), "a commit fenced off", || {
                paused.elapsed() >= HOLD && stm.stats().resolved_aborted > 0
            })
            .ok();
    }
    cluster.resume(leader).expect("resume");
    let late = witness.wait(cluster, kv);
    // Counting goes on after the old leader is back, so that a late commit applied over
    // the counters would show.
    let resumed: Vec<u64> = (0..WRITERS).map(|w| read(kv, &key(w))).collect();
    cluster
        .wait_until(Duration::from_secs(20), "counting after the resume", || {
            (0..WRITERS).all(|w| read(kv, &key(w)) >= resumed[w] + 5)
        })
        .expect("counting");
    stop.store(true, Ordering::Release);
    for (w, writer) in writers.into_iter().enumerate() {
        let made = writer.join().expect("writer");
        assert_eq!(
            read(kv, &key(w)),
            made,
            "{}: the counter is what its writer committed",
            key(w)
        );
    }
    let fenced = stm.stats().resolved_aborted;
    via.close().expect("close");
    (late, fenced)
}

#[test]
fn a_commit_fenced_off_is_never_applied_though_forwarded_writes_arrive_late() {
    // Each round on a cluster of its own, with slow elections, alone: on a cluster that
    // had been through a round, or with the launcher's fast elections under load, the
    // blind put was often served by a new leader, never forwarded to the paused one, and
    // the round missed what it is for. One in five still misses; it ends at once.
    let mut rounds = Vec::new();
    for n in 0..6 {
        let cluster = common::alone_slow_elections(3);
        let client = client(&cluster);
        all_healthy(&cluster, &client);
        let (late, fenced) = late_round(&cluster, &client.kv(), n);
        eprintln!("round {n}: forwarded writes applied late: {late}; commits fenced off: {fenced}");
        rounds.push((late, fenced));
        if late && fenced > 0 {
            return;
        }
    }
    panic!("no round saw a commit fenced off while forwarded writes arrived late: {rounds:?}");
}

/// A commit that conflicts writes nothing: the store's revision moves by the other
/// client's write and the rerun's commit, not by the conflict (the fence the first
/// commit left waits for the next commit that succeeds, which deletes it).
#[test]
fn a_commit_that_conflicts_writes_nothing() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let stm = Stm::new(&client).fence_prefix("quiet-fences/");
    increment(&stm, "quiet").expect("a first commit, which leaves its fence");
    let revision = |kv: &Kv| kv.get("quiet").expect("get").header().revision();
    let before = revision(&kv);
    let mut runs = 0;
    stm.run(|tx| {
        runs += 1;
        let n = number(tx, "quiet")?;
        if runs == 1 {
            // Another writer moves the key after this run read it: the commit conflicts.
            kv.put("quiet", "100").expect("the other write");
        }
        tx.put("quiet", (n + 1).to_string());
        Ok::<_, Error>(())
    })
    .expect("the STM run");
    assert_eq!(runs, 2, "the first run conflicted, the second committed");
    assert_eq!(read(&kv, "quiet"), 101);
    assert_eq!(
        revision(&kv) - before,
        2,
        "the other write and the second commit, and nothing for the conflict"
    );
    assert_eq!(
        fences(&kv, "quiet-fences/"),
        ["committed"],
        "the first fence is gone"
    );
}
