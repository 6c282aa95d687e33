//! mailsim: a deterministic discrete-event simulator of a Postfix mail queue.
//!
//! Data flows one way: [`scenario`] → the Postfix model ([`postfix`]) and the world it talks
//! to ([`world`]) on the [`engine`] → observations → [`output`] files → [`plot`]s.

pub mod bench;
pub mod engine;
pub mod error;
pub mod fidelity;
pub mod guard;
pub mod observe;
pub mod output;
pub mod plot;
pub mod postfix;
pub mod run;
pub mod scenario;
pub mod sweep;
pub mod text;
pub mod world;
