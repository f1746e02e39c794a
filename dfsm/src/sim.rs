//! A deterministic simulated CPG for tests: virtual synchrony, membership changes, crashes
//! and restarts, interleaved by a seeded PRNG.
//!
//! A deterministic simulated CPG for tests: virtual synchrony with one total
//! order per view, membership changes, partitions and merges, clean leaves,
//! crashes and restarts with new pids. Interleaving between nodes is chosen
//! by a seeded PRNG. Each node runs a [`Dfsm`] and a tiny host loop that
//! mimics the original's service loop (leave on error, rejoin ≥ 5 s later
//! if restartable). One group per simulation.

use std::collections::{BTreeMap, VecDeque};

use crate::app::{Application, EffectHost};
use crate::machine::{Config, Dfsm};
use crate::types::{Action, MemberId, Mode, Outcome};
use crate::wire::BaseHeader;

/// Delay before a node that left (error mode) re-initializes and rejoins.
pub const REJOIN_DELAY: u32 = 5;

/// What a node saw or did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceKind {
    /// The node's host multicast a message (raw header type/subtype).
    Send { msg_type: u16, subtype: u16 },
    /// The node's host failed to multicast (not joined).
    SendFailed,
    /// A message was delivered to the node.
    Deliver {
        from: MemberId,
        msg_type: u16,
        subtype: u16,
    },
    /// A membership change was delivered to the node.
    Confchg { members: Vec<MemberId> },
    /// The node joined the group (after init).
    Join,
    /// The node left the group.
    Leave,
    /// The core changed mode.
    Mode(Mode),
}

/// One trace line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    pub now: u32,
    pub node: MemberId,
    pub kind: TraceKind,
}

#[derive(Debug, Clone)]
enum Event {
    Confchg {
        members: Vec<MemberId>,
        left: Vec<MemberId>,
        joined: Vec<MemberId>,
    },
    Deliver {
        sender: MemberId,
        bytes: Vec<u8>,
    },
}

struct Proc<A: Application> {
    id: MemberId,
    dfsm: Dfsm<A>,
    joined: bool,
    inbox: VecDeque<Event>,
    view: Vec<MemberId>,
    answers: Vec<(u64, Outcome)>,
    rejoin_at: Option<u32>,
    /// Performs the application's effects after each step; without one they stay queued in
    /// the application for the test to take ([`Dfsm::take_effects`]).
    host: Option<Box<dyn EffectHost<A::Effect>>>,
}

/// The simulated cluster (one CPG group, one process per nodeid).
pub struct Sim<A: Application> {
    rng: u64,
    now: u32,
    protocol_version: u32,
    verify_interval: Option<u32>,
    procs: BTreeMap<u32, Proc<A>>,
    component: BTreeMap<u32, u32>,
    trace: Vec<TraceEntry>,
}

impl<A: Application> Sim<A> {
    /// An empty cluster; the clock starts at 1_700_000_000.
    pub fn new(seed: u64, protocol_version: u32, verify_interval: Option<u32>) -> Self {
        Sim {
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            now: 1_700_000_000,
            protocol_version,
            verify_interval,
            procs: BTreeMap::new(),
            component: BTreeMap::new(),
            trace: Vec::new(),
        }
    }

    fn next_rand(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random number below `n` from the simulation's PRNG (n > 0).
    pub fn rand_below(&mut self, n: u64) -> u64 {
        self.next_rand() % n.max(1)
    }

    pub fn now(&self) -> u32 {
        self.now
    }

    /// Start a process (`nodeid`, `pid`) with `app` and join the group.
    /// Replaces a crashed or stopped process of the same node. The application's effects
    /// stay queued in it (take them with [`Dfsm::take_effects`]).
    pub fn start(&mut self, nodeid: u32, pid: u32, app: A) {
        self.start_inner(nodeid, pid, app, None);
    }

    /// [`Sim::start`] with a host that performs the application's effects after each step.
    pub fn start_hosted(&mut self, nodeid: u32, pid: u32, app: A, host: Box<dyn EffectHost<A::Effect>>) {
        self.start_inner(nodeid, pid, app, Some(host));
    }

    fn start_inner(&mut self, nodeid: u32, pid: u32, app: A, host: Option<Box<dyn EffectHost<A::Effect>>>) {
        let id = MemberId::new(nodeid, pid);
        let cfg = Config {
            local: id,
            protocol_version: self.protocol_version,
            verify_interval: self.verify_interval,
        };
        let mut dfsm = Dfsm::new(cfg, app);
        let acts = dfsm.tick(self.now);
        self.procs.insert(
            nodeid,
            Proc {
                id,
                dfsm,
                joined: false,
                inbox: VecDeque::new(),
                view: Vec::new(),
                answers: Vec::new(),
                rejoin_at: None,
                host,
            },
        );
        self.component.entry(nodeid).or_insert(0);
        self.handle(nodeid, acts);
        self.join(nodeid);
    }

    fn join(&mut self, nodeid: u32) {
        let now = self.now;
        let Some(p) = self.procs.get_mut(&nodeid) else {
            return;
        };
        let Some(acts) = p.dfsm.restart(now) else {
            return;
        };
        p.joined = true;
        p.rejoin_at = None;
        let id = p.id;
        self.handle(nodeid, acts);
        self.log(id, TraceKind::Join);
        self.recompute_views();
    }

    /// Clean shutdown of a node's process (leave + finalize); returns its
    /// application (its persistent data).
    pub fn stop(&mut self, nodeid: u32) -> Option<A> {
        let mut p = self.procs.remove(&nodeid)?;
        if p.joined {
            self.log(p.id, TraceKind::Leave);
        }
        let acts = p.dfsm.finalize();
        p.answers.extend(answers_of(&acts));
        self.recompute_views();
        Some(p.dfsm.into_app())
    }

    /// Kill a node's process without leaving (the others see it vanish).
    pub fn crash(&mut self, nodeid: u32) -> Option<A> {
        let p = self.procs.remove(&nodeid)?;
        self.recompute_views();
        Some(p.dfsm.into_app())
    }

    /// Split the cluster: each slice is one component. Nodes not listed
    /// form one more component together.
    pub fn partition(&mut self, groups: &[&[u32]]) {
        for c in self.component.values_mut() {
            *c = u32::MAX;
        }
        for (i, g) in groups.iter().enumerate() {
            for n in *g {
                self.component.insert(*n, i as u32);
            }
        }
        self.recompute_views();
    }

    /// Merge all components.
    pub fn heal(&mut self) {
        for c in self.component.values_mut() {
            *c = 0;
        }
        self.recompute_views();
    }

    /// A local caller on `nodeid` sends an application message; returns
    /// its count.
    pub fn request(&mut self, nodeid: u32, subtype: u16, payload: &[u8], wait: bool) -> u64 {
        let now = self.now;
        let Some(p) = self.procs.get_mut(&nodeid) else {
            return 0;
        };
        let (count, acts) = p.dfsm.send_message(now, subtype, payload, wait);
        self.handle(nodeid, acts);
        count
    }

    /// Feed raw bytes to `nodeid` as if multicast by `sender` (to test
    /// malformed input); it is delivered in order with the node's inbox.
    pub fn inject(&mut self, nodeid: u32, sender: MemberId, bytes: Vec<u8>) {
        if let Some(p) = self.procs.get_mut(&nodeid) {
            p.inbox.push_back(Event::Deliver { sender, bytes });
        }
    }

    /// Multicast raw bytes into `nodeid`'s current view as `sender`.
    pub fn inject_multicast(&mut self, nodeid: u32, sender: MemberId, bytes: Vec<u8>) {
        let view = self
            .procs
            .get(&nodeid)
            .map(|p| p.view.clone())
            .unwrap_or_default();
        for m in view {
            if let Some(p) = self.procs.get_mut(&m.nodeid) {
                if p.id == m {
                    p.inbox.push_back(Event::Deliver {
                        sender,
                        bytes: bytes.clone(),
                    });
                }
            }
        }
    }

    /// Process one pending event at a random node. False if none pending.
    pub fn step(&mut self) -> bool {
        let ready: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| !p.inbox.is_empty())
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            return false;
        }
        let nodeid = ready[self.rand_below(ready.len() as u64) as usize];
        let now = self.now;
        let p = self.procs.get_mut(&nodeid).expect("ready node exists");
        let id = p.id;
        let Some(ev) = p.inbox.pop_front() else {
            return false;
        };
        let (kind, acts) = match ev {
            Event::Confchg {
                members,
                left,
                joined,
            } => {
                let acts = p.dfsm.confchg(now, &members, &left, &joined);
                (TraceKind::Confchg { members }, acts)
            }
            Event::Deliver { sender, bytes } => {
                let (msg_type, subtype) = header_types(&bytes);
                let acts = p.dfsm.deliver(now, sender, &bytes);
                (
                    TraceKind::Deliver {
                        from: sender,
                        msg_type,
                        subtype,
                    },
                    acts,
                )
            }
        };
        self.log(id, kind);
        self.handle(nodeid, acts);
        true
    }

    /// Run until no events are pending and no rejoin is scheduled (time
    /// jumps forward to scheduled rejoins). Returns the steps taken; stops
    /// after `max_steps`.
    pub fn run(&mut self, max_steps: usize) -> usize {
        let mut steps = 0;
        while steps < max_steps {
            if self.step() {
                steps += 1;
                continue;
            }
            let next = self.procs.values().filter_map(|p| p.rejoin_at).min();
            match next {
                Some(t) => {
                    self.advance_to(t.max(self.now));
                }
                None => break,
            }
        }
        steps
    }

    /// Move the clock forward by `secs`, ticking every node each second and
    /// rejoining nodes whose backoff expired (events are not processed).
    pub fn advance(&mut self, secs: u32) {
        let target = self.now.saturating_add(secs);
        self.advance_to(target);
    }

    fn advance_to(&mut self, target: u32) {
        while self.now < target {
            self.now += 1;
            let nodes: Vec<u32> = self.procs.keys().copied().collect();
            for n in nodes {
                let now = self.now;
                let Some(p) = self.procs.get_mut(&n) else {
                    continue;
                };
                let acts = p.dfsm.tick(now);
                let due = p.rejoin_at.is_some_and(|t| t <= now);
                self.handle(n, acts);
                if due {
                    self.join(n);
                }
            }
        }
    }

    pub fn dfsm(&self, nodeid: u32) -> Option<&Dfsm<A>> {
        self.procs.get(&nodeid).map(|p| &p.dfsm)
    }

    pub fn dfsm_mut(&mut self, nodeid: u32) -> Option<&mut Dfsm<A>> {
        self.procs.get_mut(&nodeid).map(|p| &mut p.dfsm)
    }

    pub fn app(&self, nodeid: u32) -> Option<&A> {
        self.dfsm(nodeid).map(|d| d.app())
    }

    pub fn mode(&self, nodeid: u32) -> Option<Mode> {
        self.dfsm(nodeid).map(|d| d.mode())
    }

    /// Answers delivered to local callers on `nodeid` so far.
    pub fn answers(&self, nodeid: u32) -> &[(u64, Outcome)] {
        self.procs
            .get(&nodeid)
            .map(|p| p.answers.as_slice())
            .unwrap_or(&[])
    }

    /// The answer for one count, if any.
    pub fn answer(&self, nodeid: u32, count: u64) -> Option<Outcome> {
        self.answers(nodeid)
            .iter()
            .find(|(c, _)| *c == count)
            .map(|(_, o)| *o)
    }

    /// Nodes with a running process.
    pub fn nodes(&self) -> Vec<u32> {
        self.procs.keys().copied().collect()
    }

    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// Trace of one node (by nodeid, any pid).
    pub fn trace_of(&self, nodeid: u32) -> Vec<&TraceEntry> {
        self.trace
            .iter()
            .filter(|t| t.node.nodeid == nodeid)
            .collect()
    }

    fn log(&mut self, node: MemberId, kind: TraceKind) {
        self.trace.push(TraceEntry {
            now: self.now,
            node,
            kind,
        });
    }

    /// The node's host loop: carry out the core's actions.
    fn handle(&mut self, nodeid: u32, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        // the step's effects first, as the GroupRunner does
        if let Some(p) = self.procs.get_mut(&nodeid) {
            if let Some(host) = p.host.as_mut() {
                let effects = p.dfsm.take_effects();
                if !effects.is_empty() {
                    if let Err(e) = host.perform(effects) {
                        queue.extend(p.dfsm.host_failed(e));
                    }
                }
            }
        }
        while let Some(a) = queue.pop_front() {
            let Some(p) = self.procs.get_mut(&nodeid) else {
                return;
            };
            let id = p.id;
            match a {
                Action::Multicast { bytes, count } => {
                    if !p.joined {
                        let more = p.dfsm.send_failed(count);
                        queue.extend(more);
                        self.log(id, TraceKind::SendFailed);
                        continue;
                    }
                    let (msg_type, subtype) = header_types(&bytes);
                    let view = p.view.clone();
                    self.log(id, TraceKind::Send { msg_type, subtype });
                    for m in view {
                        if let Some(q) = self.procs.get_mut(&m.nodeid) {
                            if q.id == m && q.joined {
                                q.inbox.push_back(Event::Deliver {
                                    sender: id,
                                    bytes: bytes.clone(),
                                });
                            }
                        }
                    }
                }
                Action::MulticastStream(stream) => {
                    let mut msgs: Vec<Action> = std::iter::from_fn(|| stream.next_message()).map(|bytes| Action::Multicast { bytes, count: None }).collect();
                    msgs.reverse();
                    for m in msgs {
                        queue.push_front(m);
                    }
                }
                Action::Answer { count, outcome } => p.answers.push((count, outcome)),
                Action::ModeChanged(m) => self.log(id, TraceKind::Mode(m)),
                Action::Leave => {
                    if p.joined {
                        p.joined = false;
                        p.inbox.clear();
                        p.view.clear();
                        if p.dfsm.restartable() {
                            p.rejoin_at = Some(self.now + REJOIN_DELAY);
                        }
                        self.log(id, TraceKind::Leave);
                        self.recompute_views();
                    }
                }
            }
        }
        // A leave caused by a later error mode (e.g. ERROR after LEAVE)
        // needs no action: the node is already out.
        if let Some(p) = self.procs.get_mut(&nodeid) {
            if !p.dfsm.restartable() {
                p.rejoin_at = None;
            }
        }
    }

    /// Give every joined process whose view changed a confchg event.
    fn recompute_views(&mut self) {
        let mut views: BTreeMap<u32, Vec<MemberId>> = BTreeMap::new();
        for (n, p) in &self.procs {
            if p.joined {
                let c = self.component.get(n).copied().unwrap_or(0);
                views.entry(c).or_default().push(p.id);
            }
        }
        for (n, p) in self.procs.iter_mut() {
            if !p.joined {
                continue;
            }
            let c = self.component.get(n).copied().unwrap_or(0);
            let mut new = views.get(&c).cloned().unwrap_or_default();
            new.sort();
            if new != p.view {
                let left = p
                    .view
                    .iter()
                    .filter(|m| !new.contains(m))
                    .copied()
                    .collect();
                let joined = new
                    .iter()
                    .filter(|m| !p.view.contains(m))
                    .copied()
                    .collect();
                p.inbox.push_back(Event::Confchg {
                    members: new.clone(),
                    left,
                    joined,
                });
                p.view = new;
            }
        }
    }
}

fn answers_of(acts: &[Action]) -> Vec<(u64, Outcome)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Answer { count, outcome } => Some((*count, *outcome)),
            _ => None,
        })
        .collect()
}

fn header_types(bytes: &[u8]) -> (u16, u16) {
    BaseHeader::decode(bytes)
        .map(|h| (h.msg_type, h.subtype))
        .unwrap_or((u16::MAX, u16::MAX))
}
