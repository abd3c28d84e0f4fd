//! A tiny command-line parser: positionals in order, `--name VALUE` or `--name=VALUE` options.

use std::collections::VecDeque;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context as _, Result};

pub struct Args {
    rest: VecDeque<String>,
}

impl Args {
    pub fn from_env() -> Self {
        Self {
            rest: std::env::args().skip(1).collect(),
        }
    }

    /// The next argument, when it is not an option.
    pub fn next_positional(&mut self) -> Option<String> {
        match self.rest.front() {
            Some(arg) if !arg.starts_with("--") => self.rest.pop_front(),
            _ => None,
        }
    }

    /// Removes `--name VALUE` or `--name=VALUE` wherever it appears and returns VALUE.
    pub fn option(&mut self, name: &str) -> Result<Option<String>> {
        let flag = format!("--{name}");
        let prefix = format!("--{name}=");
        let Some(index) = self
            .rest
            .iter()
            .position(|arg| *arg == flag || arg.starts_with(&prefix))
        else {
            return Ok(None);
        };
        let arg = self.rest.remove(index).unwrap_or_default();
        if let Some(value) = arg.strip_prefix(&prefix) {
            return Ok(Some(value.to_owned()));
        }
        match self.rest.remove(index) {
            Some(value) if !value.starts_with("--") => Ok(Some(value)),
            _ => bail!("option {flag} needs a value, e.g. {flag} 100"),
        }
    }

    /// Like [`Args::option`], parsed into `T`.
    pub fn parsed_option<T>(&mut self, name: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.option(name)?
            .map(|value| {
                value
                    .parse()
                    .with_context(|| format!("option --{name}: `{value}` is not a valid value"))
            })
            .transpose()
    }

    /// Fails on anything left over, so a typo never passes silently.
    pub fn finish(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            let rest: Vec<_> = self.rest.into_iter().collect();
            Err(anyhow!(
                "unexpected argument(s): {}; see `cargo xtask help`",
                rest.join(" ")
            ))
        }
    }
}
