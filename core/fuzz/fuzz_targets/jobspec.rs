//! Fuzz target: the HCL jobspec parser must answer every byte string with a job or a
//! report of errors, never a panic, a hang or a stack overflow.

#![no_main]

use drover_core::jobspec::{ParseOptions, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|source: &[u8]| {
    let _ = parse("fuzz.nomad.hcl", source, &ParseOptions::default());
});
