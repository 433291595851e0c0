//! Is the member behind the watch stream still there? The hub's check of a stream that has
//! gone quiet while it should not have.
//!
//! A member that hangs (SIGSTOP, a stuck disk, a frozen VM) or whose connection goes dark
//! sends nothing, and a quiet stream is normal for a watch on keys nobody writes. So
//! silence alone proves nothing; the balancer's probes find such a member, but only at
//! their next round (up to a probe interval plus a probe timeout). The check is quicker
//! where there is a reason to doubt: the stream stays behind the revision floor (the
//! client has seen a newer revision on another call, so there is something to deliver),
//! the leader has changed, or a call on the stream's member has stalled while it leads.
//! Then the member is asked for progress. Any message (the reply, an event) shows it alive;
//! silence for the answer time means it hung, and the hub moves the stream. A member
//! answers a progress request from its own store, with no raft round trip, so the answer
//! time is short. A wrong guess costs a stream move, which loses nothing: the watches
//! resume from where they were.

use std::time::{Duration, Instant};

/// How long the stream may stay behind the floor before its member is asked for
/// progress: events reach a watch a little after their write is acknowledged. Also how
/// often the hub compares the stream with the floor while watches are open.
pub(super) const QUIET: Duration = Duration::from_millis(25);

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    /// Keeping up, or not yet known not to: look again by then, if anything is pending.
    Fine(Option<Instant>),
    /// Ask the member for progress now (the outbox takes a progress request), then look
    /// again by then.
    Ask(Instant),
    /// Asked for progress, and silent past the answer time.
    Silent,
}

/// A check under way: the stream is behind `target` since `since`, or doubted; `asked`
/// once a progress request went out.
#[derive(Debug)]
struct Check {
    target: i64,
    since: Instant,
    asked: Option<Instant>,
    /// Started by a new leader or a doubt of the balancer: ask at once.
    at_once: bool,
    /// Started by a doubt of the balancer.
    doubt: bool,
}

/// The check's view of the current stream.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// The highest revision the stream has shown, in any header.
    seen: i64,
    /// When the stream last sent anything.
    heard: Option<Instant>,
    check: Option<Check>,
    /// When the stream was last found keeping up.
    kept_up: Option<Instant>,
    /// The balancer's leader epoch at the last look.
    epoch: u64,
    /// The member answered a check asked during the balancer's current doubt.
    doubt_settled: bool,
}

impl Liveness {
    /// A new stream: nothing heard yet.
    pub(super) fn reset(&mut self) {
        *self = Liveness {
            epoch: self.epoch,
            ..Liveness::default()
        };
    }

    /// The stream sent something with this header revision.
    pub(super) fn heard(&mut self, revision: i64, now: Instant) {
        self.seen = self.seen.max(revision);
        self.heard = Some(now);
    }

    /// One look: `floor` is the highest revision the client has seen, `epoch` the
    /// balancer's leader epoch, `doubts` whether the balancer doubts the stream's member
    /// (it leads and a call on it stalled), `answer` how long the member may take to
    /// answer.
    pub(super) fn look(
        &mut self,
        floor: i64,
        epoch: u64,
        doubts: bool,
        answer: Duration,
        now: Instant,
    ) -> Pace {
        let new_leader = std::mem::replace(&mut self.epoch, epoch) != epoch;
        if !doubts {
            self.doubt_settled = false;
        }
        if let Some(check) = &self.check {
            let answered = check
                .asked
                .is_some_and(|at| self.heard.is_some_and(|heard| heard >= at));
            if answered && check.doubt {
                self.doubt_settled = true;
            }
            // Asked because a call on it stalled while it led, silent since, and now the
            // others have elected another leader: it hung, or is cut off.
            if new_leader && check.doubt && check.asked.is_some() && !answered {
                return Pace::Silent;
            }
            if answered || (check.asked.is_none() && self.seen >= check.target) {
                self.check = None;
                self.kept_up = Some(now);
            }
        }
        let doubt = doubts && !self.doubt_settled;
        let check = match &mut self.check {
            Some(check) => check,
            None if floor > self.seen || new_leader || doubt => self.check.insert(Check {
                target: floor,
                // Behind since the last look that found it keeping up, at the latest.
                since: self.kept_up.unwrap_or(now),
                asked: None,
                at_once: new_leader || doubt,
                doubt,
            }),
            None => {
                self.kept_up = Some(now);
                return Pace::Fine(Some(now + QUIET));
            }
        };
        if check.asked.is_none() {
            // A check waiting out the quiet time turns urgent.
            check.at_once |= new_leader || doubt;
            check.doubt |= doubt;
        }
        // A member a call has already stalled on gets the quiet time to answer, not the
        // full answer time: a live member answers a progress request in a millisecond.
        let answer = if check.doubt {
            answer.min(QUIET)
        } else {
            answer
        };
        match check.asked {
            None if check.at_once || now >= check.since + QUIET => {
                check.asked = Some(now);
                Pace::Ask(now + answer)
            }
            None => Pace::Fine(Some(check.since + QUIET)),
            Some(at) if now >= at + answer => Pace::Silent,
            Some(at) => Pace::Fine(Some(at + answer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_stream_that_keeps_up_is_never_asked() {
        let t0 = Instant::now();
        let mut live = Liveness::default();
        live.look(0, 1, false, ANSWER, t0);
        for i in 1..100 {
            let now = t0 + ms(i * 10);
            live.heard(i as i64, now);
            assert_eq!(
                live.look(i as i64, 1, false, ANSWER, now),
                Pace::Fine(Some(now + QUIET))
            );
        }
    }

    #[test]
    fn a_stream_behind_the_floor_is_asked_after_the_quiet_time_and_given_up_when_silent() {
        let t0 = Instant::now();
        let mut live = Liveness::default();
        live.look(0, 1, false, ANSWER, t0);
        live.heard(5, t0);
        assert_eq!(
            live.look(5, 1, false, ANSWER, t0),
            Pace::Fine(Some(t0 + QUIET))
        );
        // The floor moves; the event is on its way.
        let t1 = t0 + ms(5);
        assert_eq!(
            live.look(6, 1, false, ANSWER, t1),
            Pace::Fine(Some(t0 + QUIET))
        );
        let t2 = t0 + QUIET;
        assert_eq!(live.look(7, 1, false, ANSWER, t2), Pace::Ask(t2 + ANSWER));
        assert_eq!(
            live.look(7, 1, false, ANSWER, t2 + ms(50)),
            Pace::Fine(Some(t2 + ANSWER))
        );
        assert_eq!(live.look(7, 1, false, ANSWER, t2 + ANSWER), Pace::Silent);
    }

    #[test]
    fn any_message_after_the_request_shows_the_member_alive() {
        let t0 = Instant::now();
        let mut live = Liveness::default();
        live.look(0, 1, false, ANSWER, t0);
        live.heard(5, t0);
        live.look(5, 1, false, ANSWER, t0);
        let asked = t0 + ms(30);
        assert_eq!(
            live.look(9, 1, false, ANSWER, asked),
            Pace::Ask(asked + ANSWER)
        );
        // A lagging member answers with an older revision: alive, and asked again later.
        live.heard(7, asked + ms(1));
        let later = asked + ms(2);
        assert_eq!(
            live.look(9, 1, false, ANSWER, later),
            Pace::Fine(Some(later + QUIET))
        );
        assert_eq!(
            live.look(9, 1, false, ANSWER, later + QUIET),
            Pace::Ask(later + QUIET + ANSWER)
        );
    }

    #[test]
    fn a_new_leader_or_a_doubt_asks_at_once_and_a_doubt_only_once() {
        let t0 = Instant::now();
        let mut live = Liveness::default();
        live.look(0, 1, false, ANSWER, t0);
        live.heard(5, t0);
        live.look(5, 1, false, ANSWER, t0);
        // The leader moved: ask now, though nothing is behind.
        let t1 = t0 + ms(1);
        assert_eq!(live.look(5, 2, false, ANSWER, t1), Pace::Ask(t1 + ANSWER));
        live.heard(5, t1);
        // The balancer doubts the member: ask now, with the quiet time to answer; once
        // answered, not again in this doubt.
        let t3 = t1 + ms(2);
        assert_eq!(live.look(5, 2, true, ANSWER, t3), Pace::Ask(t3 + QUIET));
        live.heard(5, t3);
        for i in 1..10 {
            let now = t3 + ms(i);
            assert_eq!(
                live.look(5, 2, true, ANSWER, now),
                Pace::Fine(Some(now + QUIET))
            );
        }
        // Asked in a doubt and still silent when another leader is elected: given up.
        let t5 = t3 + ms(30);
        assert_eq!(
            live.look(5, 2, false, ANSWER, t5),
            Pace::Fine(Some(t5 + QUIET))
        );
        assert_eq!(live.look(5, 2, true, ANSWER, t5), Pace::Ask(t5 + QUIET));
        assert_eq!(live.look(5, 3, true, ANSWER, t5 + ms(10)), Pace::Silent);
        // A new doubt asks again.
        let t4 = t3 + ms(50);
        live.reset();
        live.look(5, 3, false, ANSWER, t4);
        assert_eq!(live.look(5, 3, true, ANSWER, t4), Pace::Ask(t4 + QUIET));
    }

    #[test]
    fn a_new_stream_starts_unheard_but_keeps_the_epoch() {
        let t0 = Instant::now();
        let mut live = Liveness::default();
        live.look(0, 3, false, ANSWER, t0);
        live.heard(9, t0);
        live.reset();
        // Nothing seen on the new stream yet, and no leader change to report.
        assert_eq!(
            live.look(0, 3, false, ANSWER, t0),
            Pace::Fine(Some(t0 + QUIET))
        );
        assert_eq!(
            live.look(9, 3, false, ANSWER, t0),
            Pace::Fine(Some(t0 + QUIET))
        );
    }
}
