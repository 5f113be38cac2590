//! Stateless nodes for tests (issue 10, "Two nodes behind a real proxy"): a fresh PostgreSQL
//! database, `smartlaunch serve --database` processes on it, and nginx (the Debian package) in
//! front of them with a round-robin upstream, every one a child process of the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use super::{random, Process};

/// The key encryption key of the test nodes (32 bytes of base64; every node has the same).
pub const TEST_KEY_ENCRYPTION_KEY: &str = "c21hcnRsYXVuY2gtdGVzdC1ub2Rlcy0zMi1ieXRlcyE=";

/// A PostgreSQL database made for one test on the server of `SMARTLAUNCH_TEST_DATABASE_URL`,
/// dropped by [`PgDatabase::drop_now`].
pub struct PgDatabase {
    pub url: String,
    server: String,
    name: String,
}

impl PgDatabase {
    /// A fresh database, or `None` (the test is skipped with a note) when no PostgreSQL is
    /// configured outside CI; in CI a missing PostgreSQL fails the test.
    pub async fn create() -> Option<PgDatabase> {
        let server = match std::env::var("SMARTLAUNCH_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var_os("CI").is_some() => {
                panic!("SMARTLAUNCH_TEST_DATABASE_URL is not set: CI must run the two-node tests")
            }
            _ => {
                eprintln!("note: SMARTLAUNCH_TEST_DATABASE_URL is not set; two-node test skipped");
                return None;
            }
        };
        let name = format!("smartlaunch_nodes_{}", random(8).to_lowercase().replace('-', "_"));
        let mut admin = PgConnection::connect(&server).await.expect("PostgreSQL");
        admin.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.expect("CREATE DATABASE");
        let (base, _) = server.split_once('?').unwrap_or((&server, ""));
        let host_end = base.find("://").map_or(0, |i| i + 3);
        let root = base[host_end..].find('/').map_or(base, |i| &base[..host_end + i]);
        Some(PgDatabase { url: format!("{root}/{name}"), server, name })
    }

    pub async fn drop_now(self) {
        let mut admin = PgConnection::connect(&self.server).await.expect("PostgreSQL");
        admin.execute(format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name).as_str()).await.expect("DROP DATABASE");
    }
}

/// `smartlaunch serve --database <url> --public-url <public_url>` with the test key
/// encryption key; `extra` flags are added.
pub fn start_node(database: &str, public_url: &str, extra: &[&str]) -> Process {
    Process::spawn(
        &[&["--database", database, "--public-url", public_url], extra].concat(),
        &[("SMARTLAUNCH_KEY_ENCRYPTION_KEY", TEST_KEY_ENCRYPTION_KEY)],
    )
}

/// A free loopback port (free when asked: nginx takes it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx in the foreground (`daemon off`), its configuration, logs and temporary files in a
/// directory of its own, proxying `127.0.0.1:port` round-robin to the upstreams.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    pub base: String,
}

impl Nginx {
    /// Starts nginx on `port` in front of `upstreams` (`http://127.0.0.1:…`) and waits until
    /// it accepts connections.
    pub fn start(port: u16, upstreams: &[&str]) -> Nginx {
        let dir = std::env::temp_dir().join(format!("smartlaunch-nginx-{}", random(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("        server {} max_fails=1 fail_timeout=30s;\n", u.trim_start_matches("http://")))
            .collect();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n\
                 client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
                 upstream smartlaunch {{\n{servers}        keepalive 32;\n    }}\n\
                 server {{\n        listen 127.0.0.1:{port};\n        client_max_body_size 64m;\n\
                     location / {{\n            proxy_pass http://smartlaunch;\n\
                         proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n\
                         proxy_set_header Host $http_host;\n\
                         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                         proxy_buffering off;\n        }}\n    }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts (apt-get install nginx)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, dir, base: format!("http://127.0.0.1:{port}") }
    }
}

/// `$NGINX` (scripts/test.sh sets it), else Debian's path, else `nginx` on the `PATH`.
fn nginx_binary() -> String {
    std::env::var("NGINX").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| {
        let debian = "/usr/sbin/nginx";
        if std::path::Path::new(debian).exists() { debian } else { "nginx" }.to_owned()
    })
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them running).
        // SAFETY: `kill` with the id of our own child process and a valid signal.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The key encryption key of the test servers (in-process ones too: on SQLite it is optional,
/// and given, it is used).
pub fn test_key_encryption_key() -> Option<smartlaunch_auth::key_encryption::KeyEncryptionKey> {
    Some(smartlaunch_auth::key_encryption::KeyEncryptionKey::from_base64(TEST_KEY_ENCRYPTION_KEY).unwrap())
}
