//! The SCIM filter parser, then its translation to SQL: neither may panic on any input.
#![no_main]

use idgate::directory::query::{Scope, condition};
use idgate::scim::filter::parse_filter;
use idgate::scim::schema::ResourceKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(filter) = parse_filter(input) {
        for kind in [ResourceKind::User, ResourceKind::Group] {
            let scope = Scope {
                workspace_id: "w",
                kind,
            };
            let _ = condition(scope, &filter);
        }
    }
});
