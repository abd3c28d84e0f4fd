//! Fuzzing a model loader: byte mutations of a valid file (in place, truncating, extending,
//! inserting or removing), the runner and the outcome tally. The blob fuzz test (`shared`) and the
//! `.tflite` fuzz test (`tflite`) use it.

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// A runner of `cases` cases that writes no regression file.
pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Runs `load` on `cases` values of `strategy` (none may panic), tallies the outcomes, prints
/// the tally under `name` and returns it.
pub fn tally<S: Strategy, T, E: Debug>(
    name: &str,
    cases: u32,
    strategy: S,
    load: impl Fn(S::Value) -> Result<T, E>,
) -> Tally {
    let tally = std::cell::RefCell::new(Tally::default());
    runner(cases)
        .run(&strategy, |value| {
            tally.borrow_mut().record(&load(value));
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    eprintln!("{name}: {tally:?}");
    assert_eq!(tally.cases, cases as usize);
    tally
}

/// A forward pass of `model` on an all-zero input: a model that loads must run (a panic fails
/// the fuzz case).
pub fn forward_zeros(model: &tinycnn::Model) {
    let arch = model.arch;
    let mut scratch = vec![0i8; arch.scratch_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    let input = vec![0i8; arch.input_len()];
    tinycnn::forward(model, &input, &mut scratch, &mut logits);
}

/// `good` with `mutations` applied in order, stopping once it is empty.
pub fn mutated(good: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = good.to_vec();
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        apply(&mut bytes, m);
    }
    bytes
}

/// A loader error's kind, the key of [`Tally::errors`]: its variant name as `Debug` prints it.
pub fn error_kind(error: &impl Debug) -> String {
    let text = format!("{error:?}");
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Outcome tally of one fuzz run.
#[derive(Default, Debug)]
pub struct Tally {
    pub cases: usize,
    pub loaded: usize,
    pub errors: BTreeMap<String, usize>,
}

impl Tally {
    pub fn record<T, E: Debug>(&mut self, result: &Result<T, E>) {
        self.cases += 1;
        match result {
            Ok(_) => self.loaded += 1,
            Err(e) => *self.errors.entry(error_kind(e)).or_default() += 1,
        }
    }

    /// How many cases failed with the error variant `kind`.
    pub fn count(&self, kind: &str) -> usize {
        self.errors.get(kind).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR one byte.
    Flip { at: usize, mask: u8 },
    /// Overwrite a byte.
    Set { at: usize, value: u8 },
    /// Keep only the first `len` bytes.
    Truncate { len: usize },
    /// Append bytes.
    Extend(Vec<u8>),
    /// Insert a byte (shifts everything after it).
    Insert { at: usize, value: u8 },
    /// Remove a byte.
    Remove { at: usize },
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        // In-place damage keeps the structure and reaches the semantic checks: weight it up.
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        1 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        1 => proptest::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Insert { at, value }),
        1 => any::<usize>().prop_map(|at| Mutation::Remove { at }),
    ]
}

pub fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match *m {
        Mutation::Flip { at, mask } => bytes[at % n] ^= mask,
        Mutation::Set { at, value } => bytes[at % n] = value,
        Mutation::Truncate { len } => bytes.truncate(len % n),
        Mutation::Extend(ref extra) => bytes.extend_from_slice(extra),
        Mutation::Insert { at, value } => bytes.insert(at % (n + 1), value),
        Mutation::Remove { at } => {
            bytes.remove(at % n);
        }
    }
}
