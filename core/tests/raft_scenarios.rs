//! Interaction tests for `core::raft`, in the style of etcd's `testdata/*.txt`.
//!
//! Each file under `tests/raft/` is a script of commands, each followed by `----` and the
//! output it produced: the messages delivered, the roles taken, the entries applied. The
//! test replays the script and compares the whole file. After a deliberate change, run
//! `REWRITE=1 cargo test -p drover-core --test raft_scenarios` and commit the diff only if
//! you understand every line of it.
//!
//! Commands (node ids are numbers; `now` starts at 0 and moves only with `tick`/`campaign`):
//! - `add-nodes N [pre_vote=false] [batch=N] [snapshot=N] [trailing=N] [chunk=N]`: voters
//!   1..=N (`trailing` is `snapshot_trailing_entries`)
//! - `add-blank ID`: a server with no membership, waiting to be added
//! - `campaign ID`: fire node ID's election timeout now
//! - `tick MS [verbose]`: advance time 1 ms at a time, firing deadlines (in node order)
//!   and delivering messages at once; messages are printed only with `verbose`
//! - `stabilize`: write, deliver and apply until nothing moves
//! - `deliver [from=ID] [to=ID]`: deliver the matching queued messages once
//! - `drop [from=ID] [to=ID]`: discard the matching queued messages
//! - `isolate ID` / `heal`: cut a node off from everyone (messages dropped) / undo cuts
//! - `crash ID` / `restart ID`: lose the process (durable writes survive) / restore it
//! - `propose ID DATA`, `change ID add-learner|promote|remove ID`, `transfer ID TARGET`,
//!   `read ID READ`, `snapshot ID`: the node's API
//! - `status`: one line per node
//! - `log ID`: the node's log in memory (snapshot, first and last entry) and on its disk

#[path = "script/mod.rs"]
mod script;

use drover_core::raft::{
    ConfChange, Config, Entry, Envelope, Membership, NodeId, Payload, Raft, ReadOutcome, Restored,
    Role,
};
use drover_core::time::Millis;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The durable state of one node: every write is synced as soon as it is issued.
struct Node {
    raft: Option<Raft>,
    config: Config,
    /// What the node's disk holds: every write is synced as soon as it is issued.
    disk: Restored,
    applied: u64,
    shown: (Role, u64),
}

#[derive(Default)]
struct Env {
    nodes: BTreeMap<NodeId, Node>,
    queue: VecDeque<Envelope>,
    isolated: BTreeSet<NodeId>,
    now: Millis,
    out: String,
    /// While set, delivered messages are not printed (during `tick`).
    quiet: bool,
}

fn arg<'a>(args: &'a [&'a str], key: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn number(text: &str) -> u64 {
    text.parse().unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

impl Env {
    fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    fn raft(&mut self, id: NodeId) -> &mut Raft {
        self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()).expect("node is up")
    }

    fn run(&mut self, command: &str) -> String {
        self.out.clear();
        let words: Vec<&str> = command.split_whitespace().collect();
        let (name, args) = words.split_first().expect("a command");
        let id = || number(args[0]);
        match *name {
            "add-nodes" => self.add_nodes(number(args[0]), &args[1..]),
            "add-blank" => self.add_node(id(), Membership::default(), &args[1..]),
            "campaign" => {
                let raft = self.raft(id());
                let deadline = raft.poll_timeout().expect("a follower has an election deadline");
                self.now = self.now.max(deadline);
                let now = self.now;
                self.raft(id()).handle_timeout(now);
                self.ready(id());
            }
            "tick" => self.tick(number(args[0]), args.get(1) == Some(&"verbose")),
            "stabilize" => self.stabilize(),
            "deliver" => self.deliver(arg(args, "from"), arg(args, "to")),
            "drop" => self.drop_messages(arg(args, "from"), arg(args, "to")),
            "isolate" => {
                self.isolated.insert(id());
            }
            "heal" => self.isolated.clear(),
            "crash" => self.crash(id()),
            "restart" => self.restart(id()),
            "propose" => {
                let now = self.now;
                let result = self.raft(id()).propose(now, args[1].as_bytes().to_vec());
                self.result(result.map(|i| format!("index={i}")));
                self.ready(id());
            }
            "change" => self.change(id(), args[1], number(args[2])),
            "transfer" => {
                let now = self.now;
                let result = self.raft(id()).transfer_leadership(now, number(args[1]));
                self.result(result.map(|()| String::new()));
                self.ready(id());
            }
            "read" => {
                let now = self.now;
                self.raft(id()).read(now, number(args[1]));
                self.ready(id());
            }
            "snapshot" => {
                let now = self.now;
                let raft = self.raft(id());
                let applied = raft.applied_index();
                raft.handle_snapshot_taken(now, applied, format!("state@{applied}").into_bytes());
                self.line(format!("n{} snapshot at {applied}", id()));
                self.ready(id());
            }
            "status" => self.status(),
            "log" => self.log(id()),
            other => panic!("unknown command {other:?}"),
        }
        if self.out.is_empty() {
            self.out.push_str("ok\n");
        }
        std::mem::take(&mut self.out)
    }

    fn result<E: std::fmt::Display>(&mut self, result: Result<String, E>) {
        match result {
            Ok(text) if text.is_empty() => self.line("ok"),
            Ok(text) => self.line(format!("ok {text}")),
            Err(error) => self.line(format!("error: {error}")),
        }
    }

    fn add_nodes(&mut self, count: u64, options: &[&str]) {
        let membership = Membership::with_voters(1..=count);
        for id in 1..=count {
            self.add_node(id, membership.clone(), options);
        }
    }

    fn add_node(&mut self, id: NodeId, membership: Membership, options: &[&str]) {
        let mut config = Config::new(id, id);
        config.election_timeout_ms = 100;
        config.heartbeat_interval_ms = 20;
        if let Some(value) = arg(options, "pre_vote") {
            config.pre_vote = value == "true";
        }
        if let Some(value) = arg(options, "batch") {
            config.append_entries_max = number(value) as usize;
        }
        if let Some(value) = arg(options, "snapshot") {
            config.snapshot_threshold_entries = number(value);
        }
        if let Some(value) = arg(options, "trailing") {
            config.snapshot_trailing_entries = number(value);
        }
        if let Some(value) = arg(options, "chunk") {
            config.snapshot_chunk_bytes_max = number(value) as usize;
        }
        let raft = Raft::new(self.now, config.clone(), membership);
        let node = Node {
            raft: Some(raft),
            config,
            disk: Restored::default(),
            applied: 0,
            shown: (Role::Follower, 0),
        };
        self.nodes.insert(id, node);
        self.ready(id);
    }

    /// Carries out a node's outputs in the documented order; writes are durable at once.
    fn ready(&mut self, id: NodeId) -> bool {
        let now = self.now;
        let mut lines = Vec::new();
        let mut moved = false;
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(raft) = node.raft.as_mut() else { return false };
        loop {
            let mut progressed = false;
            while let Some(persist) = raft.poll_persist() {
                node.disk.apply(&persist).expect("raft writes what its log can follow");
                raft.handle_durable(now, persist.id);
                progressed = true;
            }
            while let Some(envelope) = raft.poll_message() {
                self.queue.push_back(envelope);
                progressed = true;
            }
            if let Some(snapshot) = raft.poll_snapshot() {
                let meta = &snapshot.meta;
                lines.push(format!("n{id} install snapshot {}/{}", meta.term, meta.index));
                node.applied = meta.index;
                progressed = true;
            }
            while let Some(entries) = raft.poll_committed() {
                let first = entries.first().map_or(0, |e| e.index);
                let last = entries.last().map_or(0, |e| e.index);
                let shown: Vec<String> = entries.iter().map(describe_entry).collect();
                lines.push(format!("n{id} apply {first}..{last}: {}", shown.join(" ")));
                node.applied = last;
                progressed = true;
            }
            while let Some(result) = raft.poll_read() {
                match result.outcome {
                    ReadOutcome::Ready(index) => {
                        lines.push(format!("n{id} read r{} ready index={index}", result.id))
                    }
                    ReadOutcome::Failed => lines.push(format!("n{id} read r{} failed", result.id)),
                }
                progressed = true;
            }
            if let Some(index) = raft.snapshot_due() {
                raft.handle_snapshot_taken(now, index, format!("state@{index}").into_bytes());
                lines.push(format!("n{id} snapshot at {index}"));
                progressed = true;
            }
            moved |= progressed;
            if !progressed {
                break;
            }
        }
        let shown = (raft.role(), raft.term());
        if shown != node.shown {
            node.shown = shown;
            lines.push(format!("n{id} is {:?} in term {}", shown.0, shown.1));
        }
        for line in lines {
            self.line(line);
        }
        moved
    }

    fn deliver_one(&mut self, envelope: Envelope) {
        let (from, to) = (envelope.from, envelope.to);
        let cut = self.isolated.contains(&from) || self.isolated.contains(&to);
        let up = self.nodes.get(&to).is_some_and(|n| n.raft.is_some());
        let fate = if cut {
            " [dropped: isolated]"
        } else if !up {
            " [dropped: down]"
        } else {
            ""
        };
        if !self.quiet {
            self.line(format!("n{from}->n{to} {}{fate}", envelope.message));
        }
        if cut || !up {
            return;
        }
        let now = self.now;
        self.raft(to).handle_message(now, envelope);
        self.ready(to);
    }

    fn matches(envelope: &Envelope, from: Option<&str>, to: Option<&str>) -> bool {
        from.is_none_or(|f| envelope.from == number(f))
            && to.is_none_or(|t| envelope.to == number(t))
    }

    fn deliver(&mut self, from: Option<&str>, to: Option<&str>) {
        let queued: Vec<Envelope> = self.queue.drain(..).collect();
        let (chosen, rest): (Vec<_>, Vec<_>) =
            queued.into_iter().partition(|e| Env::matches(e, from, to));
        self.queue.extend(rest);
        for envelope in chosen {
            self.deliver_one(envelope);
        }
    }

    fn drop_messages(&mut self, from: Option<&str>, to: Option<&str>) {
        let queued: Vec<Envelope> = self.queue.drain(..).collect();
        for envelope in queued {
            if Env::matches(&envelope, from, to) {
                self.line(format!(
                    "n{}->n{} {} [dropped]",
                    envelope.from, envelope.to, envelope.message
                ));
            } else {
                self.queue.push_back(envelope);
            }
        }
    }

    fn stabilize(&mut self) {
        for _ in 0..10_000 {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            let mut moved = false;
            for id in ids {
                moved |= self.ready(id);
            }
            if self.queue.is_empty() && !moved {
                return;
            }
            while let Some(envelope) = self.queue.pop_front() {
                self.deliver_one(envelope);
            }
        }
        panic!("stabilize did not settle");
    }

    /// Advances time in steps of one millisecond, firing deadlines as they fall due and
    /// delivering messages at once; only role changes, applies and reads are printed unless
    /// `verbose`.
    fn tick(&mut self, ms: u64, verbose: bool) {
        self.quiet = !verbose;
        let end = self.now + Millis(ms);
        while self.now < end {
            self.now = self.now + Millis(1);
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                let now = self.now;
                let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
                    continue;
                };
                if raft.poll_timeout().is_some_and(|d| d <= now) {
                    raft.handle_timeout(now);
                    self.ready(id);
                }
            }
            self.stabilize();
        }
        self.quiet = false;
    }

    fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        node.raft = None;
        self.queue.retain(|e| e.from != id);
        self.line(format!("n{id} crashed"));
    }

    fn restart(&mut self, id: NodeId) {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("node");
        let restored = node.disk.clone();
        let raft = Raft::restore(now, node.config.clone(), restored);
        node.applied = raft.applied_index();
        node.shown = (raft.role(), raft.term());
        node.raft = Some(raft);
        self.line(format!("n{id} restarted"));
        self.ready(id);
    }

    fn change(&mut self, id: NodeId, kind: &str, target: NodeId) {
        let change = match kind {
            "add-learner" => ConfChange::AddLearner(target),
            "promote" => ConfChange::Promote(target),
            "remove" => ConfChange::Remove(target),
            other => panic!("unknown change {other:?}"),
        };
        let now = self.now;
        let result = self.raft(id).propose_change(now, change);
        self.result(result.map(|i| format!("index={i}")));
        self.ready(id);
    }

    fn log(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let disk = &node.disk;
        let span = |first: Option<&Entry>, last: Option<&Entry>| match (first, last) {
            (Some(first), Some(last)) => format!("{}..{}", first.index, last.index),
            _ => "none".to_string(),
        };
        let on_disk = span(disk.entries.first(), disk.entries.last());
        let meta = &disk.snapshot.meta;
        let mut line =
            format!("n{id} disk snapshot={}/{} entries={on_disk}", meta.term, meta.index);
        if let Some(raft) = &node.raft {
            let (first, last) = (raft.first_index(), raft.last_index());
            let memory = span(raft.entry(first), raft.entry(last));
            let meta = raft.snapshot_meta();
            line = format!(
                "n{id} memory snapshot={}/{} entries={memory}\n{line}",
                meta.term, meta.index
            );
        }
        self.line(line);
    }

    fn status(&mut self) {
        let mut lines = Vec::new();
        for (id, node) in &self.nodes {
            let Some(raft) = &node.raft else {
                lines.push(format!("n{id} down"));
                continue;
            };
            let membership = raft.membership();
            lines.push(format!(
                "n{id} {:?} term={} leader={} commit={} last={} applied={} snapshot={} voters={:?} learners={:?}",
                raft.role(),
                raft.term(),
                raft.leader().map_or("-".to_string(), |l| format!("n{l}")),
                raft.commit_index(),
                raft.last_index(),
                node.applied,
                raft.snapshot_meta().index,
                membership.voters,
                membership.learners,
            ));
        }
        for line in lines {
            self.line(line);
        }
    }
}

fn describe_entry(entry: &Entry) -> String {
    match &entry.payload {
        Payload::Noop => format!("{}/{}:noop", entry.term, entry.index),
        Payload::Command(data) => {
            format!("{}/{}:{}", entry.term, entry.index, String::from_utf8_lossy(data))
        }
        Payload::Membership(m) => {
            format!(
                "{}/{}:voters={:?},learners={:?}",
                entry.term, entry.index, m.voters, m.learners
            )
        }
    }
}

/// Replays one script and compares (or, with REWRITE=1, rewrites) its expected output.
fn check(name: &str) {
    let mut env = Env::default();
    script::check_script("raft", name, |line| env.run(line));
}

#[test]
fn election_and_replication() {
    check("election.txt");
}

#[test]
fn pre_vote_blocks_disruptive_rejoin() {
    check("prevote_rejoin.txt");
}

#[test]
fn figure_8_commit_rule() {
    check("figure8.txt");
}

#[test]
fn snapshot_during_membership_change() {
    check("snapshot_membership.txt");
}

#[test]
fn snapshot_install_drops_conflicting_tail() {
    check("snapshot_conflict.txt");
}

#[test]
fn snapshot_keeps_trailing_entries() {
    check("snapshot_trailing.txt");
}

#[test]
fn leader_removal() {
    check("leader_removal.txt");
}

#[test]
fn leadership_transfer_and_reads() {
    check("transfer_read.txt");
}
