//! The sync engine's decisions, without I/O: what to do next with each relay, and when to try
//! again. A driver (`daftar-sync-driver`) feeds it what happened — a round was asked for, local
//! changes were written, a relay announced a new head, a push or pull finished or failed — and
//! carries out the [`Step`] it returns. Time and randomness come in as arguments, so every
//! decision is reproducible in a unit test.
//!
//! Per relay the engine walks `Push → Pull → Idle`: push every local change the relay has not
//! acknowledged, then pull everything after the stored cursor, page by page. Changes go to every
//! relay and come from any, so losing one relay loses nothing. A relay that cannot be reached is
//! retried with exponential backoff and jitter; one that refuses this device for good (revoked,
//! not a member) is left alone until the user acts. Nothing here is lost by a crash: the outbox
//! and the cursors live in the store, and a fresh engine starts by pushing and pulling again.

/// Tunable limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Changes per push and envelopes per pull request.
    pub batch: u32,
    /// The first retry delay after a failure, in milliseconds; doubled per further failure.
    pub backoff_base_ms: i64,
    /// The longest retry delay, in milliseconds.
    pub backoff_max_ms: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options { batch: 500, backoff_base_ms: 500, backoff_max_ms: 60_000 }
    }
}

/// Why a request to a relay failed, as far as the engine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not reached, timed out, overloaded or rate limited: try again later.
    Transient(String),
    /// The relay refuses this device (revoked, not a member): trying again cannot help.
    Refused(String),
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send up to `limit` of the oldest local changes relay `relay` has not acknowledged, then
    /// report [`Engine::pushed`].
    Push { relay: usize, limit: u32 },
    /// Fetch up to `limit` envelopes after `after` from relay `relay`, apply them, then report
    /// [`Engine::pulled`].
    Pull { relay: usize, after: i64, limit: u32 },
    /// Open the live subscription to relay `relay`, then report [`Engine::subscribed`] or
    /// [`Engine::subscription_lost`].
    Subscribe { relay: usize },
    /// Nothing to do until an input arrives, or until the time given (a retry is due then).
    Wait { until: Option<i64> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Push,
    Pull,
    /// Failed; a new push-and-pull is due at `retry_at`.
    Backoff {
        retry_at: i64,
    },
    /// Refused for good.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    /// Not wanted (one-shot rounds).
    Off,
    Wanted,
    Open,
    RetryAt(i64),
}

/// What people see of one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayState {
    /// Reached at the last attempt.
    pub online: bool,
    /// Pushing or pulling right now.
    pub syncing: bool,
    /// The last envelope pulled.
    pub cursor: i64,
    /// The newest sequence number the relay announced.
    pub head: i64,
    /// Failures in a row.
    pub failures: u32,
    /// When the next attempt is due after a failure.
    pub retry_at: Option<i64>,
    /// The last completed round, in milliseconds since the epoch.
    pub last_sync: Option<i64>,
    pub last_error: Option<String>,
    /// The relay refuses this device for good.
    pub refused: bool,
}

#[derive(Debug, Clone)]
struct Relay {
    phase: Phase,
    cursor: i64,
    head: i64,
    failures: u32,
    last_sync: Option<i64>,
    last_error: Option<String>,
    subscription: Subscription,
    sub_failures: u32,
}

impl Relay {
    /// The relay refuses this device for good: no more rounds, retries or subscription.
    fn refuse(&mut self, message: String) {
        self.phase = Phase::Refused;
        self.subscription = Subscription::Off;
        self.last_error = Some(message);
    }
}

/// The decisions for every relay of one device.
#[derive(Debug, Clone)]
pub struct Engine {
    options: Options,
    relays: Vec<Relay>,
}

impl Engine {
    /// An engine for relays whose stored pull cursors are `cursors` (in the driver's order).
    pub fn new(options: Options, cursors: impl IntoIterator<Item = i64>) -> Engine {
        let relays = cursors
            .into_iter()
            .map(|cursor| Relay {
                phase: Phase::Idle,
                cursor,
                head: cursor,
                failures: 0,
                last_sync: None,
                last_error: None,
                subscription: Subscription::Off,
                sub_failures: 0,
            })
            .collect();
        Engine { options, relays }
    }

    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// A full round with every relay that has not refused this device: push, then pull.
    /// A relay in backoff is tried again at once (the user asked).
    pub fn request_round(&mut self) {
        for relay in &mut self.relays {
            if relay.phase != Phase::Refused {
                relay.phase = Phase::Push;
            }
        }
    }

    /// Keep a live subscription to every relay (for `sync --watch` and the app).
    pub fn go_live(&mut self) {
        for relay in &mut self.relays {
            if relay.phase != Phase::Refused && relay.subscription == Subscription::Off {
                relay.subscription = Subscription::Wanted;
            }
        }
    }

    /// Local changes were written: idle relays push them now; a relay in backoff gets them at
    /// its retry.
    pub fn local_changes(&mut self) {
        for relay in &mut self.relays {
            if relay.phase == Phase::Idle {
                relay.phase = Phase::Push;
            }
        }
    }

    /// Relay `relay` announced that its log reaches `head`.
    pub fn announced(&mut self, relay: usize, head: i64) {
        let r = &mut self.relays[relay];
        r.head = r.head.max(head);
        if r.phase == Phase::Idle && r.head > r.cursor {
            r.phase = Phase::Pull;
        }
    }

    /// A push to `relay` was acknowledged; `more` says whether the outbox still holds changes
    /// for it (a full batch went out).
    pub fn pushed(&mut self, relay: usize, more: bool) {
        let r = &mut self.relays[relay];
        r.failures = 0;
        r.last_error = None;
        if !more && r.phase == Phase::Push {
            r.phase = Phase::Pull;
        }
    }

    /// A pull from `relay` was applied up to `through`; `more` says whether the page was full.
    pub fn pulled(&mut self, relay: usize, through: i64, more: bool, now: i64) {
        let r = &mut self.relays[relay];
        r.cursor = r.cursor.max(through);
        r.head = r.head.max(r.cursor);
        r.failures = 0;
        r.last_error = None;
        if !more && r.phase == Phase::Pull {
            r.phase = Phase::Idle;
            r.last_sync = Some(now);
        }
    }

    /// A push or pull to `relay` failed. `random` is any random number, for jitter.
    pub fn failed(&mut self, relay: usize, failure: Failure, now: i64, random: u64) {
        let options = self.options;
        let r = &mut self.relays[relay];
        match failure {
            Failure::Refused(message) => r.refuse(message),
            Failure::Transient(message) => {
                r.failures += 1;
                r.phase = Phase::Backoff { retry_at: now + backoff(options, r.failures, random) };
                r.last_error = Some(message);
            }
        }
    }

    /// The live subscription to `relay` is open.
    pub fn subscribed(&mut self, relay: usize) {
        let r = &mut self.relays[relay];
        r.subscription = Subscription::Open;
        r.sub_failures = 0;
        // Whatever was announced while it was closed is unknown: look.
        if r.phase == Phase::Idle {
            r.phase = Phase::Push;
        }
    }

    /// The live subscription to `relay` could not be opened or was lost.
    pub fn subscription_lost(&mut self, relay: usize, failure: Failure, now: i64, random: u64) {
        let options = self.options;
        let r = &mut self.relays[relay];
        match failure {
            Failure::Refused(message) => r.refuse(message),
            Failure::Transient(_) if r.subscription == Subscription::Off => {}
            Failure::Transient(message) => {
                r.sub_failures += 1;
                r.subscription = Subscription::RetryAt(now + backoff(options, r.sub_failures, random));
                r.last_error = Some(message);
            }
        }
    }

    /// The next thing to do at time `now`.
    pub fn next(&mut self, now: i64) -> Step {
        let batch = self.options.batch;
        for (index, r) in self.relays.iter_mut().enumerate() {
            if let Phase::Backoff { retry_at } = r.phase
                && retry_at <= now
            {
                r.phase = Phase::Push;
            }
            match r.phase {
                Phase::Push => return Step::Push { relay: index, limit: batch },
                Phase::Pull => return Step::Pull { relay: index, after: r.cursor, limit: batch },
                _ => {}
            }
        }
        for (index, r) in self.relays.iter_mut().enumerate() {
            match r.subscription {
                Subscription::Wanted => return Step::Subscribe { relay: index },
                Subscription::RetryAt(at) if at <= now => {
                    r.subscription = Subscription::Wanted;
                    return Step::Subscribe { relay: index };
                }
                _ => {}
            }
        }
        let until = self
            .relays
            .iter()
            .flat_map(|r| {
                let retry = match r.phase {
                    Phase::Backoff { retry_at } => Some(retry_at),
                    _ => None,
                };
                let resubscribe = match r.subscription {
                    Subscription::RetryAt(at) => Some(at),
                    _ => None,
                };
                retry.into_iter().chain(resubscribe)
            })
            .min();
        Step::Wait { until }
    }

    /// Whether every relay has finished what was asked of it (idle, waiting to retry or
    /// refused): the end of a one-shot round.
    pub fn settled(&self) -> bool {
        self.relays.iter().all(|r| !matches!(r.phase, Phase::Push | Phase::Pull))
    }

    pub fn state(&self, relay: usize) -> RelayState {
        let r = &self.relays[relay];
        RelayState {
            online: r.failures == 0 && r.phase != Phase::Refused && r.last_error.is_none(),
            syncing: matches!(r.phase, Phase::Push | Phase::Pull),
            cursor: r.cursor,
            head: r.head,
            failures: r.failures,
            retry_at: match r.phase {
                Phase::Backoff { retry_at } => Some(retry_at),
                _ => None,
            },
            last_sync: r.last_sync,
            last_error: r.last_error.clone(),
            refused: r.phase == Phase::Refused,
        }
    }
}

/// The delay before attempt `failures + 1`: the base doubled per failure up to the maximum,
/// of which the upper half is random, so devices that lost the relay together do not all come
/// back in the same millisecond.
fn backoff(options: Options, failures: u32, random: u64) -> i64 {
    let exponent = failures.saturating_sub(1).min(30);
    let full = options.backoff_base_ms.saturating_mul(1 << exponent).min(options.backoff_max_ms).max(2);
    let half = full / 2;
    half + (random % (half as u64 + 1)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(relays: usize) -> Engine {
        Engine::new(Options { batch: 10, ..Options::default() }, vec![0; relays])
    }

    #[test]
    fn a_round_pushes_then_pulls_every_relay_then_settles() {
        let mut e = engine(2);
        assert_eq!(e.next(0), Step::Wait { until: None }, "nothing to do before anything is asked");
        e.request_round();
        assert_eq!(e.next(0), Step::Push { relay: 0, limit: 10 });
        e.pushed(0, true);
        assert_eq!(e.next(0), Step::Push { relay: 0, limit: 10 }, "a full batch means more to push");
        e.pushed(0, false);
        assert_eq!(e.next(0), Step::Pull { relay: 0, after: 0, limit: 10 });
        e.pulled(0, 10, true, 5);
        assert_eq!(e.next(0), Step::Pull { relay: 0, after: 10, limit: 10 }, "pulls resume from the cursor");
        e.pulled(0, 12, false, 5);
        assert_eq!(e.next(0), Step::Push { relay: 1, limit: 10 }, "every relay gets the changes");
        e.pushed(1, false);
        e.pulled(1, 3, false, 6);
        assert!(e.settled());
        assert_eq!(e.next(0), Step::Wait { until: None });
        assert_eq!(e.state(0).last_sync, Some(5));
        assert_eq!(e.state(0).cursor, 12);
    }

    #[test]
    fn an_unreachable_relay_does_not_hold_up_the_others_and_is_retried_with_growing_delays() {
        let mut e = engine(2);
        e.request_round();
        assert_eq!(e.next(0), Step::Push { relay: 0, limit: 10 });
        e.failed(0, Failure::Transient("connection refused".into()), 1_000, 0);
        assert_eq!(e.next(1_000), Step::Push { relay: 1, limit: 10 });
        e.pushed(1, false);
        e.pulled(1, 0, false, 1_000);
        assert!(e.settled(), "a one-shot round ends even though relay 0 failed");
        let Step::Wait { until: Some(first) } = e.next(1_000) else { panic!("a retry is scheduled") };
        assert!((1_250..=1_500).contains(&first), "first retry after 250–500 ms, got {first}");
        assert!(!e.state(0).online);
        assert_eq!(e.next(first), Step::Push { relay: 0, limit: 10 }, "due retries push again");
        let mut delays = Vec::new();
        let mut now = first;
        for _ in 0..10 {
            e.failed(0, Failure::Transient("still down".into()), now, u64::MAX);
            let Step::Wait { until: Some(at) } = e.next(now) else { panic!() };
            delays.push(at - now);
            now = at;
            assert_eq!(e.next(now), Step::Push { relay: 0, limit: 10 });
        }
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "delays never shrink: {delays:?}");
        assert!((30_000..=60_000).contains(delays.last().unwrap()), "capped at a minute: {delays:?}");
        e.pushed(0, false);
        e.pulled(0, 0, false, now);
        assert!(e.state(0).online, "one success clears the failure count");
        assert_eq!(e.state(0).failures, 0);
    }

    #[test]
    fn jitter_spreads_retries_over_the_upper_half_of_the_delay() {
        let options = Options::default();
        let delays: Vec<i64> =
            (0..1000u64).map(|r| backoff(options, 3, r.wrapping_mul(0x9E37_79B9_7F4A_7C15))).collect();
        assert!(delays.iter().all(|d| (1_000..=2_000).contains(d)));
        assert!(delays.iter().min() < Some(&1_100) && delays.iter().max() > Some(&1_900), "the spread is used");
    }

    #[test]
    fn a_refused_device_is_left_alone_even_when_changes_wait() {
        let mut e = engine(1);
        e.go_live();
        e.request_round();
        e.failed(0, Failure::Refused("revoked".into()), 0, 0);
        assert_eq!(e.next(10_000_000), Step::Wait { until: None }, "no retries and no subscription");
        assert!(e.state(0).refused);
        e.local_changes();
        assert_eq!(e.next(0), Step::Wait { until: None });
    }

    #[test]
    fn announcements_pull_only_what_is_new() {
        let mut e = Engine::new(Options::default(), [40]);
        e.announced(0, 40);
        assert_eq!(e.next(0), Step::Wait { until: None }, "a head already pulled asks nothing");
        e.announced(0, 41);
        assert_eq!(e.next(0), Step::Pull { relay: 0, after: 40, limit: 500 });
        e.announced(0, 39);
        assert_eq!(e.state(0).head, 41, "an older announcement never moves the head back");
    }

    #[test]
    fn a_live_engine_subscribes_and_resubscribes_after_losing_the_stream() {
        let mut e = engine(1);
        e.go_live();
        assert_eq!(e.next(0), Step::Subscribe { relay: 0 });
        e.subscribed(0);
        assert_eq!(e.next(0), Step::Push { relay: 0, limit: 10 }, "a fresh subscription checks for missed work");
        e.pushed(0, false);
        e.pulled(0, 0, false, 0);
        assert_eq!(e.next(0), Step::Wait { until: None });
        e.subscription_lost(0, Failure::Transient("reset".into()), 100, 0);
        assert_eq!(e.next(100), Step::Wait { until: Some(350) });
        assert_eq!(e.next(350), Step::Subscribe { relay: 0 });
        e.local_changes();
        assert_eq!(e.next(351), Step::Push { relay: 0, limit: 10 }, "local changes go out while resubscribing");
    }
}
