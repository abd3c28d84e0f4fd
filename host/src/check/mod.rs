//! Checks that the host, `shared` and other runtimes agree: the integer simulation in tch
//! ([`int_sim`]) and the parity report ([`parity`]).
pub mod int_sim;
pub mod litert;
pub mod parity;
