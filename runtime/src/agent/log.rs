//! The agent's log: what an operator reads to follow an agent. One line per event, in
//! Nomad's layout (`    <UTC time, ms> [LEVEL] <subsystem>: <message>: key=value ...`),
//! on standard output, at `log_level` and above.
//!
//! The machines report what happened as values (client events, gossip events) or as
//! state the loop can look at (the server's leader loop and known leader); the node loop
//! hands them to [`LogObserver`] after every input, so nothing here touches a machine.

use drover_core::client::ClientEvent;
use drover_core::gossip::MemberEvent;
use drover_core::server::Server;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Nomad's log levels, least severe first; `Off` writes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

impl LogLevel {
    /// Parses `trace`, `debug`, `info`, `warn`, `error` or `off`, in any case.
    pub fn parse(text: &str) -> Result<LogLevel, String> {
        let level = match text.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "off" => LogLevel::Off,
            _ => {
                return Err(format!(
                    "{text:?} is not a log level; expected trace, debug, info, warn, error or off"
                ));
            }
        };
        Ok(level)
    }

    /// The bracketed tag, padded so messages line up (`[INFO]  `, `[ERROR] `).
    fn tag(self) -> &'static str {
        match self {
            LogLevel::Trace => "[TRACE] ",
            LogLevel::Debug => "[DEBUG] ",
            LogLevel::Info => "[INFO]  ",
            LogLevel::Warn => "[WARN]  ",
            LogLevel::Error => "[ERROR] ",
            LogLevel::Off => "",
        }
    }
}

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// Where the agent's log lines go, and from which level. Cheap to clone: clones share
/// the sink, and a line is written whole under its lock.
#[derive(Clone)]
pub struct AgentLog {
    level: LogLevel,
    sink: Option<Sink>,
}

impl fmt::Debug for AgentLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentLog").field("level", &self.level).finish_non_exhaustive()
    }
}

impl AgentLog {
    /// Lines at `level` and above go to the process's standard output.
    pub fn stdout(level: LogLevel) -> AgentLog {
        AgentLog::to_writer(level, std::io::stdout())
    }

    pub fn to_writer(level: LogLevel, writer: impl Write + Send + 'static) -> AgentLog {
        let sink: Box<dyn Write + Send> = Box::new(writer);
        AgentLog { level, sink: Some(Arc::new(Mutex::new(sink))) }
    }

    /// Writes nothing.
    pub fn off() -> AgentLog {
        AgentLog { level: LogLevel::Off, sink: None }
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        self.sink.is_some() && level != LogLevel::Off && level >= self.level
    }

    /// Writes one line stamped with the wall clock, if `level` is enabled. A write that
    /// fails (stdout closed) is dropped: the log must never stop the agent.
    pub fn write(&self, level: LogLevel, subsystem: &str, message: fmt::Arguments<'_>) {
        let Some(sink) = self.sink.as_ref().filter(|_| self.enabled(level)) else { return };
        let line = format!("    {} {}{subsystem}: {message}\n", timestamp(), level.tag());
        if let Ok(mut sink) = sink.lock() {
            let _ = sink.write_all(line.as_bytes());
            let _ = sink.flush();
        }
    }
}

/// The wall clock as `2026-11-26T07:50:00.123Z`.
fn timestamp() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

/// Turns what the machines report into log lines. It remembers what it last saw of the
/// server, so a change is logged once.
#[derive(Debug)]
pub struct LogObserver {
    log: AgentLog,
    leader_loop_term: Option<u64>,
    /// The Raft id of the leader this server follows.
    leader_id: Option<u64>,
}

impl LogObserver {
    pub fn new(log: AgentLog) -> LogObserver {
        LogObserver { log, leader_loop_term: None, leader_id: None }
    }

    pub fn log(&self) -> &AgentLog {
        &self.log
    }

    /// Logs a change of the leader this server follows and of its own leadership. It
    /// runs after every input, so it compares ids and looks up an address only on a change.
    pub fn server(&mut self, server: &Server) {
        let leader_id = server.raft().leader();
        if leader_id != self.leader_id {
            self.leader_id = leader_id;
            let term = server.raft().term();
            match leader_id {
                Some(id) => {
                    let addr = server.leader_addr().unwrap_or_default();
                    self.log.write(
                        LogLevel::Info,
                        "nomad.raft",
                        format_args!("leader elected: id={id} address={addr} term={term}"),
                    )
                }
                None => self.log.write(
                    LogLevel::Warn,
                    "nomad.raft",
                    format_args!("no known leader: term={term}"),
                ),
            }
        }
        let term = server.leader_loop_term();
        if term != self.leader_loop_term {
            match term {
                Some(term) => self.log.write(
                    LogLevel::Info,
                    "nomad",
                    format_args!("cluster leadership acquired: term={term}"),
                ),
                None => {
                    self.log.write(LogLevel::Info, "nomad", format_args!("cluster leadership lost"))
                }
            }
            self.leader_loop_term = term;
        }
    }

    /// Logs a server joining or failing in the gossip pool.
    pub fn member(&self, event: &MemberEvent) {
        let (level, what, member) = match event {
            MemberEvent::Up(member) => (LogLevel::Info, "member joined", member),
            MemberEvent::Down(member) => (LogLevel::Warn, "member failed", member),
        };
        self.log.write(
            level,
            "nomad.gossip",
            format_args!(
                "{what}: name={} region={} addr={} generation={}",
                member.name, member.region, member.gossip_addr, member.generation
            ),
        );
    }

    /// Logs what the client reported.
    pub fn client(&self, event: &ClientEvent) {
        let log = &self.log;
        match event {
            ClientEvent::Registered { server } => log.write(
                LogLevel::Info,
                "client",
                format_args!("node registration complete: server={server}"),
            ),
            ClientEvent::Disconnected { server } => log.write(
                LogLevel::Error,
                "client",
                format_args!("error heartbeating, retrying: server={server}"),
            ),
            ClientEvent::Reconnected { server } => log.write(
                LogLevel::Info,
                "client",
                format_args!("heartbeating again, resyncing allocations: server={server}"),
            ),
            ClientEvent::ServersChanged { servers } => log.write(
                LogLevel::Debug,
                "client",
                format_args!("servers changed: servers=[{}]", servers.join(" ")),
            ),
            ClientEvent::AllocAdded { alloc_id } => log.write(
                LogLevel::Debug,
                "client",
                format_args!("allocation added: alloc_id={alloc_id}"),
            ),
            ClientEvent::AllocRefused { alloc_id, reason } => log.write(
                LogLevel::Error,
                "client",
                format_args!("allocation refused: alloc_id={alloc_id} reason=\"{reason}\""),
            ),
            ClientEvent::AllocRemoved { alloc_id } => log.write(
                LogLevel::Debug,
                "client",
                format_args!("allocation removed: alloc_id={alloc_id}"),
            ),
            ClientEvent::AllocStatus { alloc_id, status, description } => log.write(
                LogLevel::Debug,
                "client.alloc_runner",
                format_args!(
                    "status: alloc_id={alloc_id} status={} description=\"{description}\"",
                    status.as_str()
                ),
            ),
            ClientEvent::AllocHealth { alloc_id, healthy } => log.write(
                LogLevel::Info,
                "client.alloc_runner",
                format_args!("deployment health: alloc_id={alloc_id} healthy={healthy}"),
            ),
            ClientEvent::Task { task, event } => log.write(
                LogLevel::Info,
                "client.alloc_runner.task_runner",
                format_args!(
                    "Task event: alloc_id={} task={} type={} msg=\"{}\" failed={}",
                    task.alloc_id,
                    task.task,
                    event.event_type,
                    event.display_message,
                    event.fails_task
                ),
            ),
            ClientEvent::WatchRenewed { watch_index, allocs_index } => log.write(
                LogLevel::Warn,
                "client",
                format_args!(
                    "allocation watch answer lost, asking again: index={watch_index} \
                     servers_index={allocs_index}"
                ),
            ),
            ClientEvent::ReplyIgnored { request_id } => log.write(
                LogLevel::Trace,
                "client",
                format_args!("reply ignored: request_id={request_id}"),
            ),
            ClientEvent::DriverEventIgnored { task, attempt } => log.write(
                LogLevel::Debug,
                "client.driver",
                format_args!(
                    "driver report ignored: alloc_id={} task={} attempt={attempt}",
                    task.alloc_id, task.task
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// The lines written, each without its timestamp.
        fn lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().expect("not poisoned").clone()).unwrap();
            text.lines().map(|l| l.trim_start().split_once(' ').unwrap().1.to_owned()).collect()
        }
    }

    fn check(level: LogLevel, events: &[ClientEvent], expected: &[&str]) {
        let captured = Captured::default();
        let observer = LogObserver::new(AgentLog::to_writer(level, captured.clone()));
        for event in events {
            observer.client(event);
        }
        assert_eq!(captured.lines(), expected);
    }

    #[test]
    fn levels_parse_in_any_case_and_refuse_the_unknown() {
        assert_eq!(LogLevel::parse("INFO"), Ok(LogLevel::Info));
        assert_eq!(LogLevel::parse("warn"), Ok(LogLevel::Warn));
        assert_eq!(LogLevel::parse("Off"), Ok(LogLevel::Off));
        let error = LogLevel::parse("verbose").unwrap_err();
        assert!(error.contains("\"verbose\""), "{error}");
    }

    #[test]
    fn lines_below_the_level_are_not_written() {
        let events = [
            ClientEvent::Registered { server: "10.0.0.1:4647".into() },
            ClientEvent::AllocAdded { alloc_id: "a1".into() },
            ClientEvent::Disconnected { server: "10.0.0.1:4647".into() },
            ClientEvent::WatchRenewed { watch_index: 7, allocs_index: 9 },
        ];
        check(
            LogLevel::Info,
            &events,
            &[
                "[INFO]  client: node registration complete: server=10.0.0.1:4647",
                "[ERROR] client: error heartbeating, retrying: server=10.0.0.1:4647",
                "[WARN]  client: allocation watch answer lost, asking again: index=7 \
                 servers_index=9",
            ],
        );
        check(
            LogLevel::Warn,
            &events,
            &[
                "[ERROR] client: error heartbeating, retrying: server=10.0.0.1:4647",
                "[WARN]  client: allocation watch answer lost, asking again: index=7 \
                 servers_index=9",
            ],
        );
        check(LogLevel::Off, &events, &[]);
    }

    #[test]
    fn a_line_starts_with_the_utc_time_to_the_millisecond() {
        let captured = Captured::default();
        let log = AgentLog::to_writer(LogLevel::Info, captured.clone());
        log.write(LogLevel::Info, "nomad", format_args!("cluster leadership acquired: term=2"));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let (stamp, rest) = text.trim_start().split_once(' ').unwrap();
        assert!(text.starts_with("    "), "{text:?}");
        assert_eq!(rest, "[INFO]  nomad: cluster leadership acquired: term=2\n");
        assert_eq!(stamp.len(), "2026-11-26T07:50:00.123Z".len(), "{stamp}");
        assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
    }
}
