//! libFuzzer over `scenario::parse`: any bytes give a scenario or one clean error naming the
//! file, never a panic. Valid scenarios are played for a few thousand events, so whatever the
//! validator lets through must also be safe for the model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailsim::guard::Limits;
use mailsim::observe::NullObserver;
use mailsim::output::queues::QueueSeries;
use mailsim::run::simulate_with;
use mailsim::scenario;

/// Events played of each valid input: enough to reach the model's first decisions.
const PLAYED_EVENTS: u64 = 5_000;

fuzz_target!(|data: &[u8]| {
    // The CLI reads scenarios as UTF-8 and reports other bytes as its own error.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match scenario::parse(text, "fuzz.toml") {
        Ok(sc) => {
            // The estimate must not overflow; a scenario that asks for gigabytes is refused by
            // the CLI before it starts, so it is not played here either.
            if mailsim::guard::estimate(&sc).bytes > (256u64 << 20) as f64 {
                return;
            }
            let limits = Limits {
                max_events: Some(PLAYED_EVENTS),
            };
            let mut series = QueueSeries::default();
            // An error here (the event limit) is an answer, not a crash.
            let _ = simulate_with(
                &sc,
                sc.seed,
                &mut NullObserver,
                &mut series,
                &limits,
                |_| {},
            );
        }
        Err(e) => assert!(
            e.to_string().contains("fuzz.toml"),
            "error without the file: {e}"
        ),
    }
});
