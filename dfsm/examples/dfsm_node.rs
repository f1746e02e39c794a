//! A DFSM test node over real corosync, driven by stdin lines and answering on stdout.
//!
//! A DFSM test node over real corosync: `GroupRunner<TestApp>` +
//! `QuorumTracker` + `CmapTracker`, driven by stdin lines (`put k v`,
//! `get k`, `burst p n threads`, `digest`, `applied`, `mode`, `members`,
//! `local`, `quorate`, `cluster`, `quit`); replies are stdout lines
//! starting with `@ `. Run it next to a corosync, e.g. in a harness
//! namespace: `cluster.sh netexec 1 target/debug/examples/dfsm_node`.

#[path = "../tests/corosync_support/node.rs"]
mod node;

fn main() {
    node::main();
}
