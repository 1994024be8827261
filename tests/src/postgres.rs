//! A throwaway PostgreSQL server for the tests: a fresh cluster in a temporary folder
//! (Debian's `postgresql` package: `initdb` and `postgres` from
//! `/usr/lib/postgresql/<version>/bin`, or `$BLYAN_PG_BIN`), listening only on a Unix
//! socket in that folder, stopped and removed when dropped. PostgreSQL refuses to
//! run as root, so under root it runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser the cluster is created with.
const USER: &str = "blyan";
const PORT: u16 = 5432;

#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BLYAN_PG_BIN") {
        return PathBuf::from(dir);
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian's postgresql package; scripts/setup.sh)");
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .expect("a PostgreSQL server under /usr/lib/postgresql/<version>/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| output.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// `program` as the user PostgreSQL runs as.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Creates the cluster and starts its server; returns once it accepts connections.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("a temporary folder");
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster's folder to postgres");
        }
        let bin = bin_dir();
        let data = dir.path().join("data");
        let output = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let child = command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &PORT.to_string()])
            .args(["-c", "listen_addresses=", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let mut postgres = Postgres {
            child: Some(child),
            dir,
        };
        postgres.wait_ready();
        postgres
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.dir.path().join(format!(".s.PGSQL.{PORT}")).exists()
            || !self.dir.path().join("data/postmaster.pid").exists()
        {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().unwrap())
            {
                panic!("postgres exited before serving: {status}");
            }
            assert!(Instant::now() < deadline, "postgres did not start in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A libpq connection string for `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "host={} port={PORT} user={USER} dbname={database}",
            self.dir.path().display()
        )
    }

    /// A connection to `database`, driven by a task of the current runtime.
    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    return client;
                }
                // The socket may exist a moment before the server accepts logins.
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("connect to {database}: {error}"),
            }
        }
    }

    /// Creates an empty database.
    pub async fn create_database(&self, name: &str) {
        self.connect("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A fast shutdown (SIGINT to the postmaster, which `runuser` may stand
            // in front of): the server ends its backends and exits.
            let pid = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned))
                .unwrap_or_else(|| child.id().to_string());
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
