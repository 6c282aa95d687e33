//! Destination concurrency windows and their feedback: `qmgr_queue.c`
//! (`qmgr_queue_unthrottle`, `qmgr_queue_throttle`) of Postfix 3.7, rule for rule
//! (`../shared/postfix-model.md` §5.2, and §12.2 on where SCHEDULER_README differs).
//!
//! Kept free of the rest of qmgr so the arithmetic can be tested on its own: the window is a
//! signed integer whose value also encodes state (> 0 ready, 0 dead, -1 suspended), and the
//! hysteresis accumulators are doubles, as in C.

use crate::scenario::params::Feedback;

pub const DEAD: i32 = 0;
pub const SUSPENDED: i32 = -1;

/// The learned state of one destination queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub window: i32,
    pub success: f64,
    pub failure: f64,
    pub fail_cohorts: f64,
}

/// The transport parameters feedback depends on.
#[derive(Clone, Copy, Debug)]
pub struct FeedbackRules {
    /// 0 = no limit.
    pub limit: i32,
    pub initial: i32,
    pub positive: Feedback,
    pub negative: Feedback,
    /// 0 = never declare a destination dead.
    pub failed_cohort_limit: i32,
}

impl Window {
    pub fn fresh(rules: &FeedbackRules) -> Self {
        Window {
            window: rules.initial,
            success: 0.0,
            failure: 0.0,
            fail_cohorts: 0.0,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.window > 0
    }

    pub fn is_dead(&self) -> bool {
        self.window == DEAD
    }

    /// `qmgr_queue_unthrottle`: a delivery completed without a site failure (positive
    /// feedback), or a dead queue comes back. Returns true if the queue was dead and has
    /// been revived (the caller cancels the revival timer).
    pub fn unthrottle(&mut self, rules: &FeedbackRules, busy: u32) -> bool {
        self.fail_cohorts = 0.0;
        if self.is_dead() {
            // "Back from the almost grave, best concurrency is anyone's guess."
            self.window = if busy > 0 {
                i32::try_from(busy).unwrap_or(i32::MAX)
            } else {
                rules.initial
            };
            self.success = 0.0;
            self.failure = 0.0;
            return true;
        }
        let busy = i32::try_from(busy).unwrap_or(i32::MAX);
        if (rules.limit == 0 || rules.limit > self.window)
            && self.window < busy.saturating_add(rules.initial)
        {
            let feedback = rules.positive.value(self.window);
            self.success += feedback;
            while self.success + feedback / 2.0 >= 1.0 {
                self.window += 1;
                self.success -= 1.0;
                self.failure = 0.0;
            }
            if rules.limit > 0 && self.window > rules.limit {
                self.window = rules.limit;
            }
        }
        false
    }

    /// `qmgr_queue_throttle`: negative feedback after a site failure. Only valid on a ready
    /// queue. Returns true if the queue has just been declared dead.
    pub fn throttle(&mut self, rules: &FeedbackRules) -> bool {
        debug_assert!(self.is_ready());
        self.fail_cohorts += 1.0 / f64::from(self.window);
        if rules.failed_cohort_limit > 0
            && self.fail_cohorts >= f64::from(rules.failed_cohort_limit)
        {
            self.window = DEAD;
            return true;
        }
        let feedback = rules.negative.value(self.window);
        self.failure -= feedback;
        while self.failure - feedback / 2.0 < 0.0 {
            self.window -= 1;
            self.success = 0.0;
            self.failure += 1.0;
        }
        if self.window < 1 {
            self.window = 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::params::parse_feedback;

    fn rules(limit: i32, initial: i32, cohort: i32) -> FeedbackRules {
        FeedbackRules {
            limit,
            initial,
            positive: Feedback::ONE,
            negative: Feedback::ONE,
            failed_cohort_limit: cohort,
        }
    }

    fn failures_until_dead(start: i32, cohort: i32) -> u32 {
        let r = rules(20, start, cohort);
        let mut w = Window::fresh(&r);
        let mut n = 0;
        loop {
            n += 1;
            if w.throttle(&r) {
                return n;
            }
            assert!(n < 1000, "never dead");
        }
    }

    #[test]
    fn consecutive_failures_to_declare_dead_match_the_c_code() {
        // §5.2 worked numbers (default feedback 1, cohort limit 1).
        assert_eq!(failures_until_dead(5, 1), 3);
        assert_eq!(failures_until_dead(10, 1), 7);
        assert_eq!(failures_until_dead(20, 1), 13);
        assert_eq!(failures_until_dead(1, 1), 1);
        assert_eq!(failures_until_dead(2, 1), 2);
        assert_eq!(failures_until_dead(3, 1), 2);
        // …and with cohort limit 10: 10, 11, 11, 12, 17, 26.
        let got: Vec<u32> = [1, 2, 3, 5, 10, 20]
            .iter()
            .map(|&s| failures_until_dead(s, 10))
            .collect();
        assert_eq!(got, vec![10, 11, 11, 12, 17, 26]);
    }

    #[test]
    fn first_failure_after_a_fresh_start_removes_two() {
        let r = rules(20, 5, 1);
        let mut w = Window::fresh(&r);
        assert!(!w.throttle(&r));
        assert_eq!(w.window, 3);
        assert!((w.fail_cohorts - 0.2).abs() < 1e-12);
        assert!(!w.throttle(&r));
        assert_eq!(w.window, 2);
        assert!((w.fail_cohorts - (0.2 + 1.0 / 3.0)).abs() < 1e-12);
        assert!(w.throttle(&r));
        assert!(w.is_dead());
    }

    #[test]
    fn window_grows_from_5_to_20_after_15_successes_under_backlog() {
        let r = rules(20, 5, 1);
        let mut w = Window::fresh(&r);
        for i in 1..=15 {
            // Under backlog every window slot is busy.
            let busy = u32::try_from(w.window).expect("positive");
            w.unthrottle(&r, busy);
            assert_eq!(w.window, 5 + i);
        }
        w.unthrottle(&r, 20);
        assert_eq!(w.window, 20, "capped at the limit");
    }

    #[test]
    fn growth_stops_at_busy_plus_initial() {
        let r = rules(20, 5, 1);
        let mut w = Window::fresh(&r);
        // Only one delivery in flight: the window may not exceed busy + initial = 6.
        for _ in 0..10 {
            w.unthrottle(&r, 1);
        }
        assert_eq!(w.window, 6);
    }

    #[test]
    fn success_resets_cohorts_and_revives_the_dead() {
        let r = rules(20, 5, 1);
        let mut w = Window::fresh(&r);
        w.throttle(&r);
        w.throttle(&r);
        w.unthrottle(&r, 2);
        assert_eq!(w.fail_cohorts, 0.0);
        let mut d = Window::fresh(&r);
        while !d.throttle(&r) {}
        assert!(d.unthrottle(&r, 3));
        assert_eq!(d.window, 3, "revived with the busy count");
        while !d.throttle(&r) {}
        assert!(d.unthrottle(&r, 0));
        assert_eq!(d.window, 5, "revived with the initial concurrency");
    }

    #[test]
    fn per_concurrency_feedback_shrinks_by_one_per_window_failures() {
        let mut r = rules(20, 10, 0);
        r.negative = parse_feedback("1/concurrency").expect("valid");
        let mut w = Window::fresh(&r);
        let mut steps = 0;
        while w.window == 10 {
            w.throttle(&r);
            steps += 1;
        }
        // failure -= 0.1 each time; the first decrement happens as soon as
        // failure - 0.05 < 0, i.e. at the first failure (hysteresis slack).
        assert_eq!(steps, 1);
        assert_eq!(w.window, 9);
        let mut more = 0;
        while w.window == 9 {
            w.throttle(&r);
            more += 1;
        }
        // At window 9 each failure subtracts 1/9 from 0.9; the window drops once
        // 0.9 - k/9 - 1/18 < 0, i.e. at the 8th failure.
        assert_eq!(more, 8);
    }
}
