//! The servers a client knows, which one it talks to, and how long it waits after failures.
//!
//! A client talks to one server at a time. A failure moves it to the next one in the list
//! (so retries rotate over every known server); a `NotLeader` hint moves it straight to
//! the leader; a heartbeat reply replaces the list with the region's current one, so the
//! client follows membership changes.

use crate::rpc::ServerAddr;
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

#[derive(Clone, Debug)]
pub(crate) struct ServerList {
    servers: Vec<ServerAddr>,
    current: usize,
    servers_max: usize,
}

impl ServerList {
    /// `servers` must be non-empty; duplicates are dropped and the list cut at `servers_max`.
    pub fn new(servers: &[ServerAddr], servers_max: usize) -> ServerList {
        let mut list = ServerList { servers: Vec::new(), current: 0, servers_max };
        list.replace(servers);
        list
    }

    pub fn current(&self) -> &ServerAddr {
        &self.servers[self.current]
    }

    pub fn all(&self) -> &[ServerAddr] {
        &self.servers
    }

    /// `server` failed: if it is the one in use, move to the next.
    pub fn failed(&mut self, server: &str) {
        if self.current() == server {
            self.current = (self.current + 1) % self.servers.len();
        }
    }

    /// Use `server` from now on, learning it if it is new and there is room.
    /// Returns false when it is unknown and the list is full.
    pub fn prefer(&mut self, server: &str) -> bool {
        if let Some(position) = self.servers.iter().position(|s| s == server) {
            self.current = position;
            return true;
        }
        if self.servers.len() >= self.servers_max {
            return false;
        }
        self.servers.push(server.to_owned());
        self.current = self.servers.len() - 1;
        true
    }

    /// Adopts the region's server list, keeping the server in use if it is still listed.
    /// An empty list is ignored. Returns whether the list changed.
    pub fn replace(&mut self, servers: &[ServerAddr]) -> bool {
        let mut adopted: Vec<ServerAddr> = Vec::new();
        for server in servers {
            if adopted.len() < self.servers_max && !adopted.contains(server) {
                adopted.push(server.clone());
            }
        }
        if adopted.is_empty() || adopted == self.servers {
            return false;
        }
        let in_use = self.servers.get(self.current).cloned();
        self.current = in_use.and_then(|s| adopted.iter().position(|a| *a == s)).unwrap_or(0);
        self.servers = adopted;
        true
    }
}

/// Exponential backoff with equal jitter: after `failures` consecutive failures, wait
/// between half and all of `base_ms · 2^(failures-1)`, capped at `max_ms`.
pub(crate) fn backoff_ms(failures: u32, base_ms: u64, max_ms: u64, rng: &mut ChaCha8Rng) -> u64 {
    let doublings = failures.saturating_sub(1).min(20);
    let ceiling_ms = base_ms.saturating_mul(1 << doublings).min(max_ms).max(1);
    let half_ms = ceiling_ms / 2;
    half_ms + rng.next_u64() % (ceiling_ms - half_ms + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn list(names: &[&str]) -> Vec<ServerAddr> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn failures_rotate_and_hints_redirect() {
        let mut servers = ServerList::new(&list(&["a", "b", "c"]), 4);
        servers.failed("a");
        assert_eq!(servers.current(), "b");
        servers.failed("a");
        assert_eq!(servers.current(), "b", "a stale failure does not move the client");
        assert!(servers.prefer("d"));
        assert_eq!(servers.current(), "d");
        assert!(!servers.prefer("e"), "the list is bounded");
        assert!(servers.replace(&list(&["c", "d", "d"])));
        assert_eq!((servers.all().len(), servers.current().as_str()), (2, "d"));
        assert!(!servers.replace(&[]));
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for failures in 1..40 {
            let ceiling = (1000u64 << (failures - 1).min(20)).min(30_000);
            let wait = backoff_ms(failures, 1000, 30_000, &mut rng);
            assert!(wait >= ceiling / 2 && wait <= ceiling, "{failures}: {wait}");
        }
    }
}
