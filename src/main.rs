//! `pmxcfs` — the pmxcfs-ng daemon and its offline tools.
//!
//! This crate wires the pieces: command line, logging, daemonizing, the database
//! (`pmxcfs-backend`), the FUSE mount (`pmxcfs-fuse`) and the virtual files' contents.

mod cli;
mod daemonize;
mod instance_lock;
mod logging;
mod offline;
mod paths;
mod run;
mod sd_notify;
mod stats;
mod status;
mod status_files;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let default_db = || paths::Paths::under(cli.root.as_deref().unwrap_or("/".as_ref())).db_file;
    let code = match &cli.command {
        Some(cli::Command::Check { db }) => offline::check(&db.clone().unwrap_or_else(default_db)),
        Some(cli::Command::Dump { db, path }) => offline::dump(&db.clone().unwrap_or_else(default_db), path.as_deref()),
        None => run::run(cli),
    };
    std::process::exit(code);
}
