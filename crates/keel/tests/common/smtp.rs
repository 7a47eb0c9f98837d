//! A real SMTP server for the e-mail channel's tests: `smtp_sink.py` on
//! aiosmtpd (the Python `KEEL_TEST_SMTP_PYTHON` names, which scripts/test
//! makes), with a certificate for `localhost` made by `openssl` and trusted
//! by the Keel under test through `SSL_CERT_FILE`. Messages land as files,
//! and a test awaits them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) struct SmtpSink {
    _child: Child,
    pub(crate) port: u16,
    /// The certificate authority to trust (`SSL_CERT_FILE`), which signed
    /// the server's certificate for `localhost`.
    pub(crate) cert: PathBuf,
    out: PathBuf,
}

impl SmtpSink {
    /// A sink requiring STARTTLS and the login `keel`/`s3cret`; `plain`
    /// offers neither.
    pub(crate) async fn start(dir: &std::path::Path, plain: bool) -> SmtpSink {
        SmtpSink::start_with(dir, if plain { &["--plain"] } else { &[] }).await
    }

    /// A sink with `smtp_sink.py`'s options (`--plain`, `--slow`).
    pub(crate) async fn start_with(dir: &std::path::Path, options: &[&str]) -> SmtpSink {
        let python = std::env::var("KEEL_TEST_SMTP_PYTHON")
            .expect("KEEL_TEST_SMTP_PYTHON: a python with aiosmtpd (scripts/test makes one)");
        let (cert, key, out) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("mail"));
        std::fs::create_dir_all(&out).expect("a mail directory");
        let ca = dir.join("ca.pem");
        let leaf = dir.join("leaf.ext");
        std::fs::write(
            &leaf,
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("an extensions file");
        let path = |p: &PathBuf| p.to_str().expect("a UTF-8 path").to_owned();
        let (ca_key, csr) = (path(&dir.join("ca.key")), path(&dir.join("leaf.csr")));
        let steps: [Vec<String>; 3] = [
            [
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=keel test CA",
                "-keyout",
                &ca_key,
                "-out",
                &path(&ca),
            ]
            .map(str::to_owned)
            .to_vec(),
            [
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                &path(&key),
                "-out",
                &csr,
            ]
            .map(str::to_owned)
            .to_vec(),
            [
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &path(&ca),
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &path(&leaf),
                "-out",
                &path(&cert),
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for step in steps {
            let made = Command::new("openssl")
                .args(&step)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .expect("openssl");
            assert!(made.success(), "openssl {step:?}");
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/smtp_sink.py");
        let mut command = Command::new(python);
        command
            .arg(script)
            .arg(&cert)
            .arg(&key)
            .arg(&out)
            .args(options);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the SMTP sink starts");
        let stdout = child.stdout.take().expect("its stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP sink is ready within 30 s")
            .expect("its stdout")
            .expect("a line");
        let port = line
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .expect("ready PORT");
        SmtpSink {
            _child: child,
            port,
            cert: ca,
            out,
        }
    }

    /// The `n`th message received (from 1), once it is there.
    pub(crate) async fn message(&self, n: usize) -> String {
        let path = self.out.join(format!("{n}.eml"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "message {n} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many messages came.
    pub(crate) fn count(&self) -> usize {
        std::fs::read_dir(&self.out)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0)
    }
}
