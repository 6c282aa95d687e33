//! Our host's TCP stack as the SMTP client meets it: when an unanswered SYN is sent again,
//! and when the kernel gives up on the connect (Linux `net/ipv4/tcp_timer.c`; ip-sysctl.rst:
//! `tcp_syn_retries`, `tcp_syn_linear_timeouts`).
//!
//! The retransmission timeout starts at 1 s (TCP_TIMEOUT_INIT, RFC 6298 §5). Since Linux 6.5
//! the first `tcp_syn_linear_timeouts` retransmissions keep it at 1 s and it doubles after
//! that (1, 1, 1, 1, 1, 2, 4, … s with the default 4); older kernels double from the start
//! (1, 2, 4, … s); it never exceeds TCP_RTO_MAX (120 s). The kernel gives up at the first
//! timer expiry at least `tcp_model_timeout` after the first SYN — the total of the purely
//! exponential schedule for `tcp_syn_retries` (127 s for 6) — so the linear start only
//! sends more SYNs in the same time (`retransmits_timed_out`, `tcp_model_timeout` in
//! `tcp_timer.c`). Measured on the recording host (kernel 6.18): a blackhole lifted at 1.5, 9,
//! 15 and 25 s connects at 2, 11, 19 and 35 s.
//!
//! A SYN lost in a blackhole is therefore answered by the first retransmission after the
//! blackhole ends, if that comes before `smtp_connect_timeout`.

use crate::engine::time::{SECOND, Time};
use crate::scenario::TcpStack;

/// The instants, after the first SYN, at which a connect sends its SYN again, and when it
/// fails for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynSchedule {
    pub retransmits: Vec<Time>,
    pub gives_up: Time,
}

/// TCP_RTO_MAX.
const RTO_MAX: Time = 120 * SECOND;

impl SynSchedule {
    pub fn new(tcp: &TcpStack) -> Self {
        // tcp_model_timeout: the exponential schedule's total, RTOs capped at TCP_RTO_MAX.
        let mut model = 0;
        let mut rto = SECOND;
        for _ in 0..=tcp.syn_retries {
            model += rto;
            rto = (rto * 2).min(RTO_MAX);
        }
        let mut retransmits = Vec::new();
        let (mut t, mut rto) = (0, SECOND);
        for n in 0.. {
            t += rto;
            if t >= model {
                break;
            }
            retransmits.push(t);
            if n >= tcp.syn_linear_timeouts {
                rto = (rto * 2).min(RTO_MAX);
            }
        }
        SynSchedule {
            retransmits,
            gives_up: t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(tcp: TcpStack) -> (Vec<i64>, i64) {
        let s = SynSchedule::new(&tcp);
        (
            s.retransmits.iter().map(|t| t / SECOND).collect(),
            s.gives_up / SECOND,
        )
    }

    #[test]
    fn linux_6_5_and_later_retry_every_second_first() {
        // RTOs 1, 1, 1, 1, 1, 2, 4, 8, 16, 32, 64: SYNs at 1 … 67 s; the expiry at 131 s is
        // the first past the 127 s model timeout (measured on kernel 6.18, see the header).
        assert_eq!(
            seconds(TcpStack::default()),
            (vec![1, 2, 3, 4, 5, 7, 11, 19, 35, 67], 131)
        );
    }

    #[test]
    fn older_kernels_double_from_the_start() {
        // tcp_syn_retries = 6: SYNs at 0, 1, 3, 7, 15, 31, 63; ETIMEDOUT at 127 s.
        let tcp = TcpStack {
            syn_retries: 6,
            syn_linear_timeouts: 0,
        };
        assert_eq!(seconds(tcp), (vec![1, 3, 7, 15, 31, 63], 127));
        // Past 64 s the RTO stays at TCP_RTO_MAX (120 s): 8 retries resend up to 247 s and
        // give up at 1 + 2 + … + 64 + 120 + 120 = 367 s.
        let tcp = TcpStack {
            syn_retries: 8,
            syn_linear_timeouts: 0,
        };
        let (resent, gives_up) = seconds(tcp);
        assert_eq!(resent, vec![1, 3, 7, 15, 31, 63, 127, 247]);
        assert_eq!(gives_up, 367);
    }
}
