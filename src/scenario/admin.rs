//! `[[admin]]` entries: commands an administrator types, on the run's timeline. They are
//! parsed here exactly as the shell would pass them to `postqueue`, `postsuper`, `postconf`
//! and `postfix` (postqueue(1), postsuper(1), postconf(1), postfix(1)); their effect is in
//! `postfix/admin.rs` (spec §2.1–2.2).

use crate::engine::time::Time;

/// Queue directories a `postsuper` command may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QueueSet {
    pub maildrop: bool,
    pub incoming: bool,
    pub active: bool,
    pub deferred: bool,
    pub hold: bool,
}

impl QueueSet {
    /// postsuper's default: hold, incoming, active and deferred (not maildrop).
    pub const DEFAULT: QueueSet = QueueSet {
        maildrop: false,
        incoming: true,
        active: true,
        deferred: true,
        hold: true,
    };
}

/// Which queue files a `postsuper` or `postqueue -i` command applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    /// One queue file, by the queue ID mailq and mail.log show (10 hex digits); the value
    /// is the file's number behind it.
    QueueId(u64),
    /// Every queue file of one message, by its `message_id` in deliveries.csv (the
    /// message's first file, its content-filter second pass, a requeued copy).
    Message(u64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum AdminCommand {
    /// `postqueue -f`, `sendmail -q`, `postfix flush`: triggers F, A, D, I to qmgr.
    Flush,
    /// `postqueue -s site`: the flush service's fast-flush log for one destination.
    FlushSite { destination: usize },
    /// `postqueue -i id`.
    FlushId(Selection),
    /// `postsuper -d`.
    Delete(Selection, QueueSet),
    /// `postsuper -h`.
    Hold(Selection, QueueSet),
    /// `postsuper -H`: releases only from the hold queue, and only if that is one of the
    /// queues named (postsuper.c: release_one, super()).
    Release(Selection, QueueSet),
    /// `postsuper -r`.
    Requeue(Selection, QueueSet),
    /// `postsuper -e`; with `release`, `postsuper -f` (expire and release from hold).
    Expire {
        selection: Selection,
        queues: QueueSet,
        release: bool,
    },
    /// `postconf -e 'name = value' …`: takes effect at the next reload or start.
    Postconf(Vec<(String, String)>),
    /// `postfix reload`: a new qmgr (and new agents) with the configuration as of now.
    /// `config` indexes [`super::Scenario::reconfigurations`].
    Reload { config: usize },
    /// `postfix stop`.
    Stop,
    /// `postfix start`.
    Start { config: usize },
}

/// One entry of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminAction {
    pub at: Time,
    pub command: AdminCommand,
    /// As written, for logs and plots.
    pub text: String,
}

/// The accepted forms, for error messages.
pub const ACCEPTED: &str = "postqueue -f | postqueue -s DOMAIN | postqueue -i ID | \
postsuper -d|-h|-H|-r|-e|-f ALL|ID [hold|incoming|active|deferred|maildrop …] | \
postconf -e 'name = value' … | postfix reload|stop|start|flush | sendmail -q";

/// Splits a command line like a POSIX shell would for these simple commands: whitespace
/// separates words, single or double quotes group them.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// What a command asks for, before names are resolved against the scenario.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    Flush,
    FlushSite(String),
    FlushId(Selection),
    Postsuper(char, Selection, QueueSet),
    Postconf(Vec<(String, String)>),
    Reload,
    Stop,
    Start,
}

/// Parses one command line.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let words = split_words(text)?;
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        [] => Err(format!("empty command; accepted: {ACCEPTED}")),
        ["postqueue", "-f"] | ["sendmail", "-q"] | ["postfix", "flush"] => Ok(Parsed::Flush),
        ["postqueue", "-s", site] => Ok(Parsed::FlushSite(site.to_ascii_lowercase())),
        ["postqueue", "-i", id] => Ok(Parsed::FlushId(parse_id(id)?)),
        ["postqueue", rest @ ..] => Err(format!(
            "`postqueue {}`: accepted are postqueue -f, postqueue -s DOMAIN, postqueue -i ID (-p and -j only print)",
            rest.join(" ")
        )),
        ["postsuper", option, id, queues @ ..] => {
            let op = match *option {
                "-d" | "-h" | "-H" | "-r" | "-e" | "-f" => option.chars().nth(1).unwrap_or('d'),
                other => {
                    return Err(format!(
                        "`postsuper {other}`: accepted options are -d (delete), -h (hold), -H (release from hold), -r (requeue), -e (expire), -f (expire and release)"
                    ));
                }
            };
            let selection = match *id {
                "ALL" => Selection::All,
                "all" => {
                    return Err(
                        "postsuper takes `ALL` in capitals (Postfix reads `all` as a queue ID)"
                            .into(),
                    );
                }
                id => parse_id(id)?,
            };
            let set = if queues.is_empty() {
                QueueSet::DEFAULT
            } else {
                let mut set = QueueSet::default();
                for q in queues {
                    match *q {
                        "hold" => set.hold = true,
                        "incoming" => set.incoming = true,
                        "active" => set.active = true,
                        "deferred" => set.deferred = true,
                        "maildrop" => set.maildrop = true,
                        other => {
                            return Err(format!(
                                "`{other}` is not a queue name (accepted: hold, incoming, active, deferred, maildrop)"
                            ));
                        }
                    }
                }
                set
            };
            Ok(Parsed::Postsuper(op, selection, set))
        }
        ["postsuper", ..] => Err(format!(
            "postsuper needs an option and ALL or a queue ID, e.g. `postsuper -d ALL deferred`; accepted: {ACCEPTED}"
        )),
        ["postconf", "-e", settings @ ..] if !settings.is_empty() => {
            let mut pairs = Vec::new();
            for s in settings {
                let Some((name, value)) = s.split_once('=') else {
                    return Err(format!(
                        "`{s}` is not `name = value` (quote it: postconf -e 'queue_run_delay = 60s')"
                    ));
                };
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!("`{s}` has no parameter name"));
                }
                pairs.push((name.to_string(), value.trim().to_string()));
            }
            Ok(Parsed::Postconf(pairs))
        }
        ["postconf", ..] => {
            Err("only `postconf -e 'name = value' …` changes settings (quote each setting)".into())
        }
        ["postfix", "reload"] => Ok(Parsed::Reload),
        ["postfix", "stop"] => Ok(Parsed::Stop),
        ["postfix", "start"] => Ok(Parsed::Start),
        ["postfix", other, ..] => Err(format!(
            "`postfix {other}`: accepted are postfix reload, stop, start, flush"
        )),
        [program, ..] => Err(format!(
            "`{program}` is not a command mailsim plays; accepted: {ACCEPTED}"
        )),
    }
}

/// A queue ID as mailq and mail.log show it (10 hex digits), or else a message_id of
/// deliveries.csv (a decimal number; ten digits that also spell a queue ID are the queue
/// ID).
fn parse_id(id: &str) -> Result<Selection, String> {
    if let Some(n) = crate::observe::parse_queue_id(id) {
        return Ok(Selection::QueueId(n));
    }
    if id.len() == 10 && !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{id}` is not a queue ID of this run (mailsim's are 10 hex digits, as mailq and mail.log show them)"
        ));
    }
    match id.parse::<u64>() {
        Ok(n) if !id.starts_with('+') => Ok(Selection::Message(n)),
        _ => Err(format!(
            "`{id}` is not ALL, a queue ID (10 hex digits, as mailq and mail.log show them) or a message_id of deliveries.csv"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_typed() {
        assert_eq!(parse("postqueue -f"), Ok(Parsed::Flush));
        assert_eq!(parse("  sendmail   -q "), Ok(Parsed::Flush));
        assert_eq!(
            parse("postqueue -s Example.COM"),
            Ok(Parsed::FlushSite("example.com".into()))
        );
        assert_eq!(
            parse("postsuper -d ALL deferred"),
            Ok(Parsed::Postsuper(
                'd',
                Selection::All,
                QueueSet {
                    deferred: true,
                    ..QueueSet::default()
                }
            ))
        );
        assert_eq!(
            parse("postsuper -H 17"),
            Ok(Parsed::Postsuper(
                'H',
                Selection::Message(17),
                QueueSet::DEFAULT
            ))
        );
        assert_eq!(
            parse("postconf -e 'queue_run_delay = 60s' \"minimal_backoff_time=60s\""),
            Ok(Parsed::Postconf(vec![
                ("queue_run_delay".into(), "60s".into()),
                ("minimal_backoff_time".into(), "60s".into())
            ]))
        );
        assert_eq!(parse("postfix reload"), Ok(Parsed::Reload));
    }

    #[test]
    fn queue_ids_as_shown_and_message_ids_both_select_files() {
        let qid = crate::observe::queue_id(2);
        assert_eq!(
            parse(&format!("postsuper -d {qid}")),
            Ok(Parsed::Postsuper(
                'd',
                Selection::QueueId(2),
                QueueSet::DEFAULT
            ))
        );
        assert_eq!(
            parse(&format!("postqueue -i {}", qid.to_ascii_lowercase())),
            Ok(Parsed::FlushId(Selection::QueueId(2)))
        );
        // Another first digit than the run's own for that file: no queue ID of this run.
        let first = u8::from_str_radix(&qid[..1], 16).expect("hex");
        let other = format!("{:X}{}", (first + 1) % 16, &qid[1..]);
        assert!(
            parse(&format!("postsuper -d {other}")).is_err_and(|e| e.contains("not a queue ID"))
        );
        assert!(parse("postsuper -d 12x").is_err_and(|e| e.contains("message_id")));
    }

    #[test]
    fn mistakes_say_what_is_accepted() {
        assert!(parse("postsuper -x ALL").is_err_and(|e| e.contains("-d (delete)")));
        assert!(parse("postsuper -d all").is_err_and(|e| e.contains("capitals")));
        assert!(parse("postsuper -d ALL deffered").is_err_and(|e| e.contains("queue name")));
        assert!(parse("postconf -e queue_run_delay").is_err_and(|e| e.contains("name = value")));
        assert!(parse("postconf -e 'a = b").is_err_and(|e| e.contains("unterminated")));
        assert!(parse("postfix restart").is_err_and(|e| e.contains("reload, stop")));
        assert!(parse("postmap hash:x").is_err_and(|e| e.contains("not a command")));
    }
}
