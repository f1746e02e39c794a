//! `pmxcfs` — the pmxcfs-ng daemon and its offline tools.
//!
//! The wiring lives in the library half of this crate (`src/lib.rs`): command line,
//! logging, daemonizing, the database (`pmxcfs-backend`), the FUSE mount (`pmxcfs-fuse`),
//! the status tables and cluster mode.

use clap::Parser;
use pmxcfs_ng::{cli, offline, paths, run};

fn main() {
    let cli = cli::Cli::parse();
    let default_db = || paths::Paths::under(cli.root.as_deref().unwrap_or("/".as_ref())).db_file;
    let code = match &cli.command {
        Some(cli::Command::Check { db }) => offline::check(&db.clone().unwrap_or_else(default_db)),
        Some(cli::Command::Dump { db, path }) => offline::dump(&db.clone().unwrap_or_else(default_db), path.as_deref()),
        Some(cli::Command::Repair { db, out }) => offline::repair(&db.clone().unwrap_or_else(default_db), out),
        Some(cli::Command::OpenGateHelper { db, daemon_pid }) => pmxcfs_backend::open_gate::run_helper(db, *daemon_pid),
        None => run::run(cli),
    };
    std::process::exit(code);
}
