//! The host of one client machine: replies in, driver commands to the driver set, requests
//! out. The drain order is in the parent module's doc.

use super::wire::{WireMessage, decode_wire, encode_wire};
use super::{DriverSet, HostError, Transport};
use drover_core::client::{Client, ClientConfig, ClientEvent, DriverEvent, TaskAction};
use drover_core::rpc::ClientRpc;
use drover_core::time::Millis;

/// What a client host counted instead of failing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Frames that did not decode (bad envelope, checksum, payload, size).
    pub frames_undecodable: u64,
    /// Frames that decoded but are not for a client (peer messages, requests).
    pub frames_unexpected: u64,
    pub sends_failed: u64,
    pub encode_errors: u64,
}

/// One client machine with its transport and driver set.
pub struct ClientHost<T, D> {
    client: Client,
    transport: T,
    drivers: D,
    counters: ClientCounters,
}

impl<T: Transport, D: DriverSet> ClientHost<T, D> {
    /// Starts the client; it registers its node at once.
    pub fn start(
        now: Millis,
        config: ClientConfig,
        transport: T,
        drivers: D,
    ) -> Result<Self, HostError> {
        let client = Client::new(now, config).map_err(HostError::ClientConfig)?;
        let mut host =
            ClientHost { client, transport, drivers, counters: ClientCounters::default() };
        host.drain(now);
        Ok(host)
    }

    // ---------------------------------------------------------------- getters

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn drivers(&self) -> &D {
        &self.drivers
    }

    pub fn drivers_mut(&mut self) -> &mut D {
        &mut self.drivers
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn counters(&self) -> ClientCounters {
        self.counters
    }

    /// When to call [`ClientHost::handle_timeout`] at the latest.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.client.poll_timeout()
    }

    /// The machine's next observable event, for logs and traces.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.client.poll_event()
    }

    // ---------------------------------------------------------------- inputs

    /// A frame from `from`: a server's reply. Bad frames are counted and dropped. The
    /// sender's address is not needed: the client matches replies by request id.
    pub fn handle_frame(&mut self, now: Millis, _from: &str, frame: &[u8]) {
        match decode_wire(frame) {
            Ok(WireMessage::Reply(rpc)) => self.client.handle_reply(now, rpc),
            Ok(
                WireMessage::Peer(_)
                | WireMessage::Request(_)
                | WireMessage::Api(_)
                | WireMessage::ApiAnswer(_),
            ) => {
                self.counters.frames_unexpected += 1;
            }
            Err(_) => self.counters.frames_undecodable += 1,
        }
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        self.client.handle_timeout(now);
        self.drain(now);
    }

    /// A driver's report that arrived after `execute` returned.
    pub fn handle_driver_event(&mut self, now: Millis, event: DriverEvent) {
        self.client.handle_driver_event(now, event);
        self.drain(now);
    }

    /// An operator's action on a task (or on every running task) of an allocation here.
    pub fn handle_task_action(
        &mut self,
        now: Millis,
        alloc_id: &str,
        task: Option<&str>,
        action: &TaskAction,
    ) -> Result<(), String> {
        let result = self.client.handle_task_action(now, alloc_id, task, action);
        self.drain(now);
        result
    }

    // ---------------------------------------------------------------- draining

    /// Drains the machine in the documented order until a round does nothing.
    fn drain(&mut self, now: Millis) {
        loop {
            let mut progressed = false;
            while let Some(command) = self.client.poll_driver_command() {
                self.drivers.execute(command);
                progressed = true;
            }
            while let Some(event) = self.drivers.poll_event() {
                self.client.handle_driver_event(now, event);
                progressed = true;
            }
            while let Some((addr, rpc)) = self.client.poll_send() {
                self.send(now, &addr, rpc);
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Sends a request; one that surely did not leave is reported failed at once.
    fn send(&mut self, now: Millis, to: &str, rpc: ClientRpc) {
        let request_id = rpc.request_id;
        let Ok(frame) = encode_wire(&WireMessage::Request(rpc)) else {
            self.counters.encode_errors += 1;
            self.client.handle_send_failed(now, request_id);
            return;
        };
        if self.transport.send(to, frame).is_err() {
            self.counters.sends_failed += 1;
            self.client.handle_send_failed(now, request_id);
        }
    }
}
