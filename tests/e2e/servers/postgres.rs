//! PostgreSQL (Debian's) for BuildGrid's scheduler: a fresh cluster in a temp folder on a free
//! port, user bgd with trust authentication on loopback, database bgd with BuildGrid's schema.
//! initdb and postgres refuse to run as root, so as root they run as the `postgres` user (or
//! `nobody`), and the folder is theirs.

use super::process::Process;
use super::{ensure_installed, free_port, venv_bin};
use nix::sys::signal::Signal;
use nix::unistd::{Uid, User, chown};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const START_LIMIT: Duration = Duration::from_secs(30);

pub(crate) struct Postgres {
    process: Process,
    port: u16,
    startup: Duration,
    _dir: TempDir,
}

impl Postgres {
    pub(crate) fn start() -> Postgres {
        ensure_installed();
        let bin = bin_dir();
        let user = run_as();
        let dir = tempfile::tempdir().expect("temp folder for PostgreSQL");
        hand_over(dir.path(), user.as_ref());
        let data = dir.path().join("data");
        let started = Instant::now();
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data);
        initdb.args(["-U", "bgd", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        run(initdb, dir.path(), user.as_ref(), "initdb");
        let port = free_port();
        let mut process = Process::spawn(
            "PostgreSQL",
            postgres_cmd(&bin, &data, dir.path(), port, user.as_ref()),
            &dir.path().join("postgres.log"),
        )
        .stop_with(Signal::SIGINT);
        process.wait_ready(started, START_LIMIT, || is_ready(&bin, port));
        let mut createdb = Command::new(bin.join("createdb"));
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "bgd",
            "bgd",
        ]);
        run(createdb, dir.path(), None, "createdb bgd");
        let mut pg = Postgres {
            process,
            port,
            startup: Duration::ZERO,
            _dir: dir,
        };
        pg.migrate();
        pg.startup = started.elapsed();
        pg
    }

    /// For BuildGrid's `!sql-connection`: psycopg2 by name (see buildgrid-exec.yml); no password,
    /// loopback is trusted.
    pub(crate) fn connection_string(&self) -> String {
        format!("postgresql+psycopg2://bgd@127.0.0.1:{}/bgd", self.port)
    }

    /// The rows `sql` returns, unaligned (`psql -At`): what BuildGrid recorded in its tables.
    pub(crate) fn query(&self, sql: &str) -> String {
        let out = Command::new(bin_dir().join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "bgd", "-d", "bgd", "-At", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// initdb, start, createdb and BuildGrid's migrations, together.
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    pub(crate) fn running(&mut self) -> bool {
        self.process.running()
    }

    /// BuildGrid 0.4.4 applies its Alembic migrations with `bgd migrate apply CONNECTION`.
    fn migrate(&self) {
        let mut cmd = Command::new(venv_bin("bgd"));
        cmd.args(["migrate", "apply", &self.connection_string()]);
        let out = cmd.output().expect("run bgd migrate apply");
        assert!(
            out.status.success(),
            "bgd migrate apply failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.process.tail()
        );
    }
}

/// Debian's newest installed PostgreSQL: /usr/lib/postgresql/<version>/bin.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("PostgreSQL is not installed ({}: {e})", root.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/*/bin/initdb: PostgreSQL is not installed")
}

/// The user PostgreSQL runs as when we are root; None when we are not.
fn run_as() -> Option<User> {
    if !Uid::effective().is_root() {
        return None;
    }
    let user = ["postgres", "nobody"]
        .iter()
        .find_map(|name| User::from_name(name).ok().flatten());
    Some(user.expect("neither a postgres nor a nobody user to run PostgreSQL as"))
}

/// The folder belongs to the server's user, and others may pass through it to the socket.
fn hand_over(dir: &Path, user: Option<&User>) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if let Some(user) = user {
        chown(dir, Some(user.uid), Some(user.gid)).expect("chown the PostgreSQL folder");
    }
}

fn as_user(cmd: &mut Command, user: Option<&User>) {
    if let Some(user) = user {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
}

fn postgres_cmd(bin: &Path, data: &Path, dir: &Path, port: u16, user: Option<&User>) -> Command {
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D").arg(data).args(["-p", &port.to_string()]);
    cmd.args(["-c", "listen_addresses=127.0.0.1"]);
    cmd.arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()));
    // A throwaway database: durability only costs time.
    for setting in [
        "fsync=off",
        "full_page_writes=off",
        "synchronous_commit=off",
    ] {
        cmd.args(["-c", setting]);
    }
    cmd.current_dir(dir);
    as_user(&mut cmd, user);
    cmd
}

fn is_ready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

fn run(mut cmd: Command, dir: &Path, user: Option<&User>, what: &str) {
    cmd.current_dir(dir);
    as_user(&mut cmd, user);
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
