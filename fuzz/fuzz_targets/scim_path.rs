//! The SCIM PATCH path parser (`emails[type eq "work"].value`, extension URNs): it may refuse
//! any input, never panic.
#![no_main]

use idgate::scim::filter::parse_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let _ = parse_path(input);
});
