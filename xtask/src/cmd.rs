//! Running child processes: streamed output, clear failures, and the project's environment.

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// What every command needs: where the repository is, and what happened so far in this run.
pub struct Context {
    pub root: PathBuf,
    apt_lists_fresh: Cell<bool>,
    timings: RefCell<Vec<(String, Duration)>>,
}

impl Context {
    pub fn new() -> Result<Self> {
        // xtask always builds from this repository, so its manifest dir is `<root>/xtask`.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask's manifest dir has no parent")?
            .to_path_buf();
        if !root.join("Cargo.toml").is_file() {
            bail!(
                "the tinycnn repository is not at {} any more (xtask was built there); \
                 run `cargo xtask` from the repository you cloned",
                root.display()
            );
        }
        Ok(Self {
            root,
            apt_lists_fresh: Cell::new(false),
            timings: RefCell::new(Vec::new()),
        })
    }

    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.root.join(relative)
    }

    /// A command that runs in the repository root with the project's environment.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.root);
        // `.cargo/config.toml` points LIBTORCH at `.libtorch`; an explicit LIBTORCH from the user wins.
        if std::env::var_os("LIBTORCH").is_none() {
            command.env("LIBTORCH", self.path(".libtorch"));
        }
        command
    }

    pub fn cargo(&self) -> Command {
        self.command("cargo")
    }

    /// Cargo in `firmware/`, its own workspace (it builds for thumbv7em-none-eabihf by default).
    pub fn firmware_cargo(&self) -> Command {
        let mut cargo = self.cargo();
        cargo.current_dir(self.path("firmware"));
        cargo
    }

    /// LIBTORCH when the user set it to something other than the project's `.libtorch`.
    pub fn user_libtorch(&self) -> Option<PathBuf> {
        let value = PathBuf::from(std::env::var_os("LIBTORCH")?);
        let project = self.path(".libtorch");
        if value == project || value == Path::new(".libtorch") {
            None
        } else {
            Some(value)
        }
    }

    /// Runs `apt-get update` at most once per xtask run.
    pub fn apt_update(&self) -> Result<()> {
        if !self.apt_lists_fresh.get() {
            require_root("apt-get update", "sudo apt-get update")?;
            run(self.command("apt-get").arg("update"))?;
            self.apt_lists_fresh.set(true);
        }
        Ok(())
    }

    /// Installs Debian packages (as root; otherwise says which sudo command to run).
    pub fn apt_install(&self, packages: &[&str]) -> Result<()> {
        let list = packages.join(" ");
        require_root(
            &format!("apt-get install {list}"),
            &format!(
                "sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}"
            ),
        )?;
        if !on_path("apt-get") {
            bail!("apt-get is not available; install {list} with your system's package manager");
        }
        self.apt_update()?;
        run(self
            .command("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }

    /// Runs one named step of a pipeline: header, the work, its duration.
    pub fn step(&self, name: &str, work: impl FnOnce() -> Result<()>) -> Result<()> {
        println!("\n==> {name}");
        flush();
        let start = Instant::now();
        let result = work().with_context(|| format!("step `{name}` failed"));
        let elapsed = start.elapsed();
        match &result {
            Ok(()) => println!("    {name}: ok ({:.1} s)", elapsed.as_secs_f64()),
            Err(_) => println!("    {name}: FAILED ({:.1} s)", elapsed.as_secs_f64()),
        }
        flush();
        self.timings.borrow_mut().push((name.to_owned(), elapsed));
        result
    }

    pub fn print_timings(&self) {
        println!("\nstep timings:");
        for (name, elapsed) in self.timings.borrow().iter() {
            println!("  {:>8.1} s  {name}", elapsed.as_secs_f64());
        }
        flush();
    }
}

pub fn flush() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

fn describe(command: &Command) -> String {
    let mut text = String::new();
    for (key, value) in command.get_envs() {
        if key != "LIBTORCH" {
            if let Some(value) = value {
                text.push_str(&format!(
                    "{}={} ",
                    key.to_string_lossy(),
                    value.to_string_lossy()
                ));
            }
        }
    }
    text.push_str(&command.get_program().to_string_lossy());
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs a command with inherited stdio, echoing it first; a non-zero exit is an error.
pub fn run(command: &mut Command) -> Result<()> {
    let description = describe(command);
    println!("$ {description}");
    flush();
    let status = command
        .status()
        .map_err(|error| spawn_error(&description, error))?;
    if !status.success() {
        bail!("`{description}` failed ({status})");
    }
    Ok(())
}

/// Runs a `cargo test` command like [`run`], echoing its stdout line by line, and returns the
/// (passed, failed) counts summed over its `test result:` lines.
pub fn run_tests(command: &mut Command) -> Result<(u64, u64)> {
    use std::io::BufRead as _;
    let description = describe(command);
    println!("$ {description}");
    flush();
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| spawn_error(&description, error))?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.with_context(|| format!("reading the output of `{description}`"))?;
            println!("{line}");
            if let Some((p, f)) = parse_test_result(&line) {
                passed += p;
                failed += f;
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{description}`"))?;
    if !status.success() {
        bail!("`{description}` failed ({status})");
    }
    Ok((passed, failed))
}

/// Parses libtest's `test result: ok. 5 passed; 0 failed; ...` line.
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(word)?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    Some((count(" passed")?, count(" failed")?))
}

/// Runs a command quietly and returns its stdout, or `None` when the program is not installed or
/// exits non-zero. For probes such as "is torch importable".
pub fn probe(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn spawn_error(description: &str, error: std::io::Error) -> anyhow::Error {
    if error.kind() == ErrorKind::NotFound {
        anyhow::anyhow!(
            "`{description}`: program not found; install it or put it on PATH, then run again"
        )
    } else {
        anyhow::anyhow!("`{description}`: could not start it: {error}")
    }
}

/// Whether a program is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub fn is_root() -> bool {
    probe(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

/// Fails unless running as root, naming the command a non-root user should run instead.
pub fn require_root(what: &str, instead: &str) -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        bail!("`{what}` needs root; run `{instead}` yourself, then run this command again")
    }
}

#[cfg(test)]
mod test_result_tests {
    use super::parse_test_result;

    #[test]
    fn parses_libtest_summaries() {
        assert_eq!(
            parse_test_result("test result: ok. 22 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.03s"),
            Some((22, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some((3, 2))
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
    }
}
