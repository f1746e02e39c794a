//! Randomized cluster simulation: 3–5 nodes running [`DcdbApp`] over real [`Database`]s (each
//! its own `config.db` in a temp dir) on the seeded simulated CPG, with thousands of random
//! file operations interleaved with partitions, heals, crashes and restarts from a stale
//! database.
//!
//! The model:
//! * every node has a "client" that issues one system call at a time (like a process doing
//!   `file_set_contents`: create tmp, write tmp, rename tmp over the target; or plain writes,
//!   creates, deletes, mkdir/rmdir, utimens) and waits for its answer;
//! * quorum is modelled here: each node's DcdbApp gets its own flag, set when the partition
//!   changes (a component is quorate when its *running* nodes are a majority of all nodes; a
//!   crashed node's corosync is gone too). Writes go through [`Harness::submit`], which refuses
//!   them on an inquorate node like `ClusterSink` does (EACCES, nothing sent);
//! * durability is modelled like the daemon: a node's own changes commit when applied (a
//!   create at its close), changes from others are group-committed at each simulated second;
//!   a crash drops the `Database` WITHOUT committing, so a restart re-opens a stale file;
//! * faults (partition change, heal, crash) are separated by a settle (run until no event is
//!   pending + one group-commit second) — pmxcfs, like the original, cannot keep an
//!   acknowledged change through two faults that hit before a resync finished (e.g. the only
//!   other holder crashes and the acknowledging node is cut off). Client operations continue
//!   between a fault and its settle, so they interleave with confchgs and sync rounds;
//! * half of the faults hit while changes are in flight. A change acknowledged since the last
//!   quiet point is then no longer guaranteed ("at risk"): e.g. node A acknowledges it in the
//!   quorate view {A, B, C} of 5 nodes, the partition {C} | {A, B} makes C inquorate before it
//!   delivers the message (C leaves without applying it), and C later forms a majority with
//!   two restarted nodes — the original behaves the same. At-risk changes may still be the
//!   final state of their path, but they do not have to be;
//! * a crash is either outside the group-commit window (what others sent is on disk; the
//!   database is stale only by its downtime) or inside it (40 %: uncommitted changes from
//!   others are lost with the RAM). After a crash inside the window the next settle is a full
//!   recovery (all nodes restarted, healed, resynced): until the crashed node resynced, the
//!   lost changes live only on their originators (durably) and on other receivers, so a
//!   second fault that takes those away while a majority re-forms loses them — a window the
//!   original (which commits every delivered change) does not have; see docs/cluster.md.
//!
//! Checked after the final heal: every node SYNCED with the same whole-tree checksum, every
//! `config.db` reloads to the same tree, every acknowledged change (answer ≥ 0 on a quorate
//! node) is reflected unless a later change to the same path superseded it, and content that
//! only refused writes carried appears nowhere.
//!
//! `PMXCFS_SIM_SEEDS=N` runs N seeds (default 16), `PMXCFS_SIM_ROUNDS=N` rounds per seed (default
//! 2000), `PMXCFS_SIM_SEED_BASE=S` starts at seed S (default 1).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pmxcfs_backend::{Content, Database, DatabaseOptions, Op};
use pmxcfs_dfsm::sim::Sim;
use pmxcfs_dfsm::{Mode, Outcome};

use crate::dcdb::{encode_op, DcdbApp, DcdbHost};

const MAX_STEPS: usize = 2_000_000;
const DIRS: usize = 3;
const FILES: usize = 6;
const SUBDIRS: usize = 2;

/// splitmix64, seeded per test run (independent of the simulator's own PRNG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathState {
    Absent,
    Dir,
    File(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Sent, no answer yet.
    Pending,
    /// Answer ≥ 0 on a quorate node.
    Acked,
    /// Answer < 0 from the node's own apply: no effect anywhere.
    Failed,
    /// May or may not have been applied (sender crashed, aborted, left as inquorate).
    Unknown,
    /// Acknowledged, but a fault hit before the cluster was quiet again: the change may be
    /// held only by nodes that the fault leaves in a minority (no protocol guarantee).
    AtRisk,
}

/// One submitted operation.
#[derive(Debug, Clone)]
struct Rec {
    node: u32,
    /// The operation itself (printed with the record when a check fails).
    #[allow(dead_code)]
    op: Op,
    /// What a successful apply makes of each path.
    effects: Vec<(String, PathState)>,
    submitted: u64,
    acked_at: u64,
    status: Status,
}

/// A client's multi-step plan.
#[derive(Debug, Clone)]
enum Plan {
    Single(Op),
    /// file_set_contents: create tmp, write tmp, rename tmp → target.
    SetContents { tmp: String, target: String, data: Vec<u8>, step: u8 },
}

struct NodeSlot {
    id: u32,
    dir: tempfile::TempDir,
    db: Option<Arc<Database>>,
    quorate: Arc<AtomicBool>,
    generation: u32,
    /// (message count, index into `recs`) of the system call in progress.
    pending: Option<(u64, usize)>,
    plan: Option<Plan>,
}

impl NodeSlot {
    fn path(&self) -> PathBuf {
        self.dir.path().join("config.db")
    }
    fn up(&self) -> bool {
        self.db.is_some()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    submitted: u64,
    acked: u64,
    failed: u64,
    unknown: u64,
    refused: u64,
    partitions: u64,
    heals: u64,
    crashes: u64,
    restarts: u64,
    /// Crashes that lost uncommitted changes from other nodes.
    crashes_losing_ram: u64,
    /// Restarts whose database was older than the newest running node's.
    stale_restarts: u64,
    settles: u64,
    /// Full recoveries forced by a crash inside the group-commit window.
    recoveries: u64,
    /// Faults that hit while changes were in flight, and acknowledgements they put at risk.
    faults_in_flight: u64,
    at_risk: u64,
}

struct Harness {
    n: u32,
    sim: Sim<DcdbApp>,
    nodes: Vec<NodeSlot>,
    /// Component of each node (index = nodeid - 1).
    component: Vec<u32>,
    recs: Vec<Rec>,
    clock: u64,
    rng: Rng,
    c: Counters,
    /// Data carried only by refused writes.
    refused_data: Vec<Vec<u8>>,
    next_tmp: u64,
    /// Clock of the last quiet point (everything delivered, resynced, group-committed).
    last_quiet: u64,
}

impl Harness {
    fn new(seed: u64, n: u32) -> Harness {
        let mut nodes = Vec::new();
        for id in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let db = Arc::new(Database::open(&dir.path().join("config.db"), DatabaseOptions::default()).unwrap());
            nodes.push(NodeSlot { id, dir, db: Some(db), quorate: Arc::new(AtomicBool::new(true)), generation: 0, pending: None, plan: None });
        }
        let mut h = Harness {
            n,
            sim: Sim::new(seed, 1, None),
            nodes,
            component: vec![0; n as usize],
            recs: Vec::new(),
            clock: 1,
            rng: Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5151),
            c: Counters::default(),
            refused_data: Vec::new(),
            next_tmp: 0,
            last_quiet: 0,
        };
        for i in 0..n as usize {
            h.start_process(i);
        }
        h.sim.run(MAX_STEPS);
        h
    }

    fn start_process(&mut self, i: usize) {
        let s = &mut self.nodes[i];
        let db = s.db.clone().unwrap();
        let app = DcdbApp::new(db.clone(), s.quorate.clone());
        let pid = 1000 * (s.generation + 1) + s.id;
        s.generation += 1;
        self.sim.start_hosted(s.id, pid, app, Box::new(DcdbHost { db, host_corosync_conf: None }));
    }

    /// Quorum per component: running members form a majority of all nodes.
    fn update_quorum(&mut self) {
        let mut running: BTreeMap<u32, u32> = BTreeMap::new();
        for (i, s) in self.nodes.iter().enumerate() {
            if s.up() {
                *running.entry(self.component[i]).or_default() += 1;
            }
        }
        for (i, s) in self.nodes.iter().enumerate() {
            let q = running.get(&self.component[i]).copied().unwrap_or(0) * 2 > self.n;
            s.quorate.store(q, Ordering::SeqCst);
        }
    }

    fn apply_partition(&mut self) {
        let mut groups: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (i, c) in self.component.iter().enumerate() {
            groups.entry(*c).or_default().push(i as u32 + 1);
        }
        let slices: Vec<&[u32]> = groups.values().map(|v| v.as_slice()).collect();
        // quorum first: in reality votequorum and CPG see the same totem membership
        self.update_quorum();
        self.sim.partition(&slices);
    }

    // ---- client side ------------------------------------------------------------------

    /// A system call on `node`: refused (EACCES, nothing sent) when the node is inquorate.
    fn submit(&mut self, node: u32, op: Op, effects: Vec<(String, PathState)>) -> bool {
        let i = node as usize - 1;
        if !self.nodes[i].quorate.load(Ordering::SeqCst) {
            self.c.refused += 1;
            if let Op::Write { data, .. } = &op {
                self.refused_data.push(data.clone());
            }
            return false;
        }
        let (subtype, payload) = encode_op(&op).unwrap();
        self.clock += 1;
        let count = self.sim.request(node, subtype, &payload, true);
        self.recs.push(Rec { node, op, effects, submitted: self.clock, acked_at: 0, status: Status::Pending });
        self.nodes[i].pending = Some((count, self.recs.len() - 1));
        self.c.submitted += 1;
        true
    }

    fn data(&mut self, node: u32) -> Vec<u8> {
        let len = if self.rng.chance(5) { 1000 + self.rng.below(3000) } else { self.rng.below(120) } as usize;
        let mut d = format!("node{node} op{} ", self.recs.len() + self.refused_data.len()).into_bytes();
        d.extend((0..len).map(|k| b'a' + (k % 26) as u8));
        d
    }

    fn file_path(&mut self) -> String {
        format!("d{}/f{}", self.rng.below(DIRS as u64), self.rng.below(FILES as u64))
    }

    fn new_plan(&mut self, node: u32) -> Plan {
        let r = self.rng.below(100);
        let p = self.file_path();
        match r {
            0..=34 => {
                self.next_tmp += 1;
                let tmp = format!("{}/.tmp.{node}.{}", &p[..2], self.next_tmp);
                let data = self.data(node);
                Plan::SetContents { tmp, target: p, data, step: 0 }
            }
            35..=54 => {
                let data = self.data(node);
                Plan::Single(Op::Write { path: p, offset: 0, data, truncate: true })
            }
            55..=64 => Plan::Single(Op::Create { path: p }),
            65..=76 => Plan::Single(Op::Delete { path: p }),
            77..=84 => Plan::Single(Op::Mkdir { path: format!("d{}/s{}", self.rng.below(DIRS as u64), self.rng.below(SUBDIRS as u64)) }),
            85..=91 => Plan::Single(Op::Delete { path: format!("d{}/s{}", self.rng.below(DIRS as u64), self.rng.below(SUBDIRS as u64)) }),
            _ => {
                let mtime = self.sim.now() - self.rng.below(1000) as u32;
                Plan::Single(Op::SetMtime { path: p, mtime })
            }
        }
    }

    fn effects_of(op: &Op) -> Vec<(String, PathState)> {
        match op {
            Op::Mkdir { path } => vec![(path.clone(), PathState::Dir)],
            Op::Create { path } => vec![(path.clone(), PathState::File(Vec::new()))],
            Op::Write { path, data, offset: 0, truncate: true } => vec![(path.clone(), PathState::File(data.clone()))],
            Op::Delete { path } => vec![(path.clone(), PathState::Absent)],
            Op::SetMtime { .. } => Vec::new(),
            other => panic!("no model for {other:?}"),
        }
    }

    /// Idle, running clients issue their next system call.
    fn clients_act(&mut self) {
        for i in 0..self.nodes.len() {
            let node = i as u32 + 1;
            if !self.nodes[i].up() || self.nodes[i].pending.is_some() || !self.rng.chance(60) {
                continue;
            }
            let plan = match self.nodes[i].plan.take() {
                Some(p) => p,
                None => self.new_plan(node),
            };
            match plan {
                Plan::Single(op) => {
                    let eff = Self::effects_of(&op);
                    self.submit(node, op, eff);
                }
                Plan::SetContents { tmp, target, data, step } => {
                    let (op, eff) = match step {
                        0 => (Op::Create { path: tmp.clone() }, vec![(tmp.clone(), PathState::File(Vec::new()))]),
                        1 => (Op::Write { path: tmp.clone(), offset: 0, data: data.clone(), truncate: true }, vec![(tmp.clone(), PathState::File(data.clone()))]),
                        _ => (
                            Op::Rename { from: tmp.clone(), to: target.clone() },
                            vec![(target.clone(), PathState::File(data.clone())), (tmp.clone(), PathState::Absent)],
                        ),
                    };
                    if self.submit(node, op, eff) && step < 2 {
                        self.nodes[i].plan = Some(Plan::SetContents { tmp, target, data, step: step + 1 });
                    }
                }
            }
        }
    }

    /// Collects answers; a failed step ends a client's plan.
    fn harvest(&mut self) {
        self.clock += 1;
        for i in 0..self.nodes.len() {
            let Some((count, ri)) = self.nodes[i].pending else { continue };
            let Some(outcome) = self.sim.answer(i as u32 + 1, count) else { continue };
            self.nodes[i].pending = None;
            let status = match outcome {
                Outcome::Applied(r) if r >= 0 => Status::Acked,
                // the not-quorate and malformed-message paths leave the group: others may
                // still have applied the message
                Outcome::Applied(r) if r == -libc::EACCES || r == -libc::EINVAL => Status::Unknown,
                Outcome::Applied(_) => Status::Failed,
                Outcome::Aborted => Status::Unknown,
            };
            let rec = &mut self.recs[ri];
            rec.status = status;
            match status {
                Status::Acked => {
                    rec.acked_at = self.clock;
                    self.c.acked += 1;
                    // the submitter commits before its syscall returns (ClusterSink::submit;
                    // for a create: the writer's close)
                    self.nodes[i].db.as_ref().unwrap().acknowledge().unwrap();
                }
                Status::Failed => self.c.failed += 1,
                _ => self.c.unknown += 1,
            }
            if status != Status::Acked {
                self.nodes[i].plan = None;
            }
        }
    }

    // ---- time, faults -----------------------------------------------------------------

    /// One simulated second: the maintenance thread of every running node group-commits.
    fn tick(&mut self) {
        self.sim.advance(1);
        for s in &self.nodes {
            if let Some(db) = &s.db {
                db.acknowledge().unwrap();
            }
        }
    }

    /// Run until nothing is pending (resyncs finished), then one group-commit second.
    fn settle(&mut self) {
        self.sim.run(MAX_STEPS);
        self.harvest();
        self.tick();
        self.last_quiet = self.clock;
        self.c.settles += 1;
    }

    /// Kills node `i`'s process. `hard`: inside the group-commit window — changes from others
    /// not yet committed are lost with the RAM; otherwise the window has passed (they are on
    /// disk) and only the downtime makes the database stale.
    fn crash(&mut self, i: usize, hard: bool) {
        let id = self.nodes[i].id;
        let app = self.sim.crash(id).expect("running");
        drop(app);
        let db = self.nodes[i].db.as_ref().unwrap();
        if !hard {
            db.acknowledge().unwrap();
        } else if db.stats().dirty {
            self.c.crashes_losing_ram += 1;
        }
        // the process dies: RAM (incl. uncommitted changes from others) is gone
        self.nodes[i].db = None;
        if let Some((_, ri)) = self.nodes[i].pending.take() {
            self.recs[ri].status = Status::Unknown;
            self.c.unknown += 1;
        }
        self.nodes[i].plan = None;
        self.c.crashes += 1;
        self.update_quorum();
    }

    fn restart(&mut self, i: usize) {
        let db = Database::open(&self.nodes[i].path(), DatabaseOptions::default()).expect("stale database reopens");
        let newest = self.nodes.iter().filter_map(|s| s.db.as_ref()).map(|d| d.tree().version()).max().unwrap_or(0);
        if db.tree().version() < newest {
            self.c.stale_restarts += 1;
        }
        self.nodes[i].db = Some(Arc::new(db));
        self.update_quorum();
        self.start_process(i);
        self.c.restarts += 1;
    }

    /// Everyone back in one component (crashed nodes restart on their stale databases),
    /// settled.
    fn recover(&mut self) {
        self.settle();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up() {
                self.restart(i);
            }
        }
        self.component = vec![0; self.n as usize];
        self.apply_partition();
        self.settle();
    }

    /// One fault: a new partition, a heal or a crash. Returns true for a crash inside the
    /// group-commit window, after which only a full recovery keeps every acknowledged
    /// change (see the module doc).
    fn fault(&mut self) -> bool {
        // half of the faults wait for a quiet cluster; the others hit changes in flight, and
        // what was acknowledged since the last quiet point loses its guarantee
        if self.rng.chance(50) {
            self.settle();
        } else {
            self.c.faults_in_flight += 1;
            for r in self.recs.iter_mut().filter(|r| r.status == Status::Acked && r.acked_at > self.last_quiet) {
                r.status = Status::AtRisk;
                self.c.at_risk += 1;
            }
        }
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].up()).collect();
        match self.rng.below(10) {
            0..=4 => {
                let k = 2 + self.rng.below(2) as u32;
                for c in self.component.iter_mut() {
                    *c = 0;
                }
                let comps: Vec<u32> = (0..self.n).map(|_| self.rng.below(k as u64) as u32).collect();
                self.component = comps;
                self.c.partitions += 1;
                self.apply_partition();
            }
            5..=6 => {
                self.component = vec![0; self.n as usize];
                self.c.heals += 1;
                self.apply_partition();
            }
            _ if up.len() > 1 => {
                let i = up[self.rng.below(up.len() as u64) as usize];
                let hard = self.rng.chance(40);
                self.crash(i, hard);
                return hard;
            }
            _ => {}
        }
        false
    }

    // ---- checks -----------------------------------------------------------------------

    fn state_of(db: &Database, path: &str) -> PathState {
        let t = db.tree();
        match t.lookup(path).map(|e| &e.content) {
            None => PathState::Absent,
            Some(Content::Dir(_)) => PathState::Dir,
            Some(Content::File(d)) => PathState::File(d.to_vec()),
        }
    }

    fn check(&self, label: &str) {
        let mut sums = Vec::new();
        for s in &self.nodes {
            assert_eq!(self.sim.mode(s.id), Some(Mode::Synced), "{label}: node {} synced", s.id);
            let db = s.db.as_ref().unwrap();
            db.acknowledge().unwrap();
            let sum = db.tree().checksum();
            let reloaded = Database::open(&s.path(), DatabaseOptions::default()).unwrap();
            assert_eq!(reloaded.tree().checksum(), sum, "{label}: node {} config.db reloads to the tree in RAM", s.id);
            sums.push(sum);
        }
        assert!(sums.iter().all(|s| *s == sums[0]), "{label}: whole-tree checksums differ: {sums:02x?}");

        // every acknowledged change is reflected unless superseded
        let db = self.nodes[0].db.as_ref().unwrap();
        let mut by_path: BTreeMap<&str, Vec<(usize, &PathState)>> = BTreeMap::new();
        for (ri, r) in self.recs.iter().enumerate() {
            for (p, st) in &r.effects {
                by_path.entry(p.as_str()).or_default().push((ri, st));
            }
        }
        let mut checked = 0;
        for (path, list) in &by_path {
            let acked: Vec<&Rec> = list.iter().map(|(ri, _)| &self.recs[*ri]).filter(|r| r.status == Status::Acked).collect();
            let final_state = Self::state_of(db, path);
            // a candidate is any op that may have taken effect and was not acknowledged
            // before some acknowledged op on this path was even submitted
            let allowed = |r: &Rec| !acked.iter().any(|a| r.status == Status::Acked && r.acked_at < a.submitted);
            let mut candidates: Vec<&PathState> = list
                .iter()
                .filter(|(ri, _)| matches!(self.recs[*ri].status, Status::Acked | Status::AtRisk | Status::Unknown | Status::Pending) && allowed(&self.recs[*ri]))
                .map(|(_, st)| *st)
                .collect();
            if acked.is_empty() {
                candidates.push(&PathState::Absent);
            }
            let ok = candidates.contains(&&final_state);
            if !ok {
                let hist: Vec<String> = list
                    .iter()
                    .map(|(ri, st)| {
                        let r = &self.recs[*ri];
                        format!("  #{ri} node{} {:?} submitted@{} acked@{} -> {}", r.node, r.status, r.submitted, r.acked_at, short(st))
                    })
                    .collect();
                panic!("{label}: '{path}' is {} — an acknowledged change was lost\n{}", short(&final_state), hist.join("\n"));
            }
            if !acked.is_empty() {
                checked += 1;
            }
        }
        assert!(checked > 0, "{label}: nothing acknowledged to check");

        // content carried only by refused writes exists nowhere
        let refused: HashSet<&[u8]> = self.refused_data.iter().map(|d| &d[..]).collect();
        let t = db.tree();
        for e in t.sorted_entries() {
            if let Content::File(d) = &e.content {
                assert!(!refused.contains(&d[..]), "{label}: a refused write reached the tree ({})", e.name);
            }
        }
    }
}

fn short(st: &PathState) -> String {
    match st {
        PathState::File(d) => format!("File({:?}…, {} B)", String::from_utf8_lossy(&d[..d.len().min(16)]), d.len()),
        other => format!("{other:?}"),
    }
}

/// One seeded run; returns its counters.
fn run_seed(seed: u64, n: u32, rounds: usize) -> Counters {
    let label = format!("seed {seed} ({n} nodes)");
    let mut h = Harness::new(seed, n);
    // the directories every file lives in
    for d in 0..DIRS {
        let op = Op::Mkdir { path: format!("d{d}") };
        let eff = Harness::effects_of(&op);
        assert!(h.submit(1, op, eff));
        h.sim.run(MAX_STEPS);
        h.harvest();
    }
    assert_eq!(h.c.acked, DIRS as u64, "{label}: setup");
    let mut need_settle = false;
    let mut need_recovery = false;
    for round in 0..rounds {
        h.clients_act();
        let steps = 1 + h.rng.below(40) as usize;
        h.sim.run(steps);
        h.harvest();
        if round % 17 == 16 {
            h.tick();
        }
        if need_settle {
            if h.rng.chance(15) {
                if need_recovery {
                    h.recover();
                    h.c.recoveries += 1;
                } else {
                    h.settle();
                }
                need_settle = false;
                need_recovery = false;
            }
        } else if h.rng.chance(4) {
            need_recovery = h.fault();
            need_settle = true;
        }
        // restarts are not faults: a crashed node may come back at any time (stale database)
        if h.rng.chance(3) {
            let down: Vec<usize> = (0..h.nodes.len()).filter(|&i| !h.nodes[i].up()).collect();
            if !down.is_empty() {
                let i = down[h.rng.below(down.len() as u64) as usize];
                h.restart(i);
            }
        }
    }
    // final heal: everyone back, one component
    h.recover();
    h.sim.run(MAX_STEPS);
    h.harvest();
    h.check(&label);
    assert!(h.c.acked > rounds as u64 / 10, "{label}: too few acknowledged operations: {:?}", h.c);
    h.c
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn random_operations_with_partitions_crashes_and_stale_restarts_converge_without_losing_acked_changes() {
    let seeds = env_usize("PMXCFS_SIM_SEEDS", 16) as u64;
    let rounds = env_usize("PMXCFS_SIM_ROUNDS", 2000);
    let base = env_usize("PMXCFS_SIM_SEED_BASE", 1) as u64;
    let t0 = Instant::now();
    let mut total = Counters::default();
    for seed in base..base + seeds {
        let n = 3 + (seed % 3) as u32;
        let c = run_seed(seed, n, rounds);
        eprintln!("seed {seed} ({n} nodes): {c:?}");
        total.submitted += c.submitted;
        total.acked += c.acked;
        total.failed += c.failed;
        total.unknown += c.unknown;
        total.refused += c.refused;
        total.partitions += c.partitions;
        total.heals += c.heals;
        total.crashes += c.crashes;
        total.restarts += c.restarts;
        total.crashes_losing_ram += c.crashes_losing_ram;
        total.stale_restarts += c.stale_restarts;
        total.settles += c.settles;
        total.recoveries += c.recoveries;
        total.faults_in_flight += c.faults_in_flight;
        total.at_risk += c.at_risk;
    }
    eprintln!("{seeds} seeds in {:.1} s: {total:?}", t0.elapsed().as_secs_f64());
    assert!(total.refused > 0, "no write was ever refused: the partitions never cost quorum");
    assert!(total.crashes > 0 && total.restarts > 0, "no crash/restart happened");
    assert!(total.stale_restarts > 0, "no restart from a stale database");
}

/// The group-commit window on its own: a receiver that crashes before committing a change
/// from another node restarts without it on disk and gets it back from the next resync.
#[test]
fn receiver_crashing_inside_the_group_commit_window_gets_the_change_back_by_resync() {
    let mut h = Harness::new(77, 3);
    let op = Op::Mkdir { path: "d0".into() };
    let eff = Harness::effects_of(&op);
    assert!(h.submit(1, op, eff));
    h.settle();
    let op = Op::Create { path: "d0/f".into() };
    let eff = Harness::effects_of(&op);
    assert!(h.submit(1, op, eff));
    h.sim.run(MAX_STEPS);
    h.harvest();
    let op = Op::Write { path: "d0/f".into(), offset: 0, data: b"payload".to_vec(), truncate: true };
    let eff = Harness::effects_of(&op);
    assert!(h.submit(1, op, eff));
    h.sim.run(MAX_STEPS);
    h.harvest();
    assert_eq!(h.c.acked, 3);
    // node 1 (the originator) has it on disk, node 2 only in RAM
    let on_disk = |h: &Harness, i: usize| {
        let db = Database::open(&h.nodes[i].path(), DatabaseOptions::default()).unwrap();
        Harness::state_of(&db, "d0/f")
    };
    assert_eq!(on_disk(&h, 0), PathState::File(b"payload".to_vec()));
    assert_eq!(Harness::state_of(h.nodes[1].db.as_ref().unwrap(), "d0/f"), PathState::File(b"payload".to_vec()));
    assert_eq!(on_disk(&h, 1), PathState::Absent, "not yet group-committed on the receiver");
    h.crash(1, true);
    assert_eq!(h.c.crashes_losing_ram, 1);
    h.restart(1);
    assert_eq!(Harness::state_of(h.nodes[1].db.as_ref().unwrap(), "d0/f"), PathState::Absent, "restarted stale");
    h.settle();
    assert_eq!(on_disk(&h, 1), PathState::File(b"payload".to_vec()), "the resync committed it");
    h.check("window");
}
