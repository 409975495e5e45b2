//! TaskSpec validation on hostile requests: the bytes are a TaskSpec as protobuf (first byte even) or as the
//! JSON that grpcurl users send (first byte odd). Validation must never panic; what it accepts must respect every
//! documented limit, validate again to itself, and pass or fail the policy gate as its rules say.
#![no_main]

use control_tower::{pb, spec};
use control_tower_fuzz::{assert_gate, assert_names_fields, assert_revalidates, assert_valid};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let decoded =
        if mode % 2 == 0 { pb::TaskSpec::decode(body).ok() } else { serde_json::from_slice::<pb::TaskSpec>(body).ok() };
    let Some(request) = decoded else { return };
    match spec::validate(Some(request)) {
        Ok(task) => {
            assert_valid(&task);
            assert_revalidates(&task);
            assert_gate(&spec::Policy::from_comma_separated("acme/, Other/"), &task);
        }
        Err(err) => assert_names_fields(&err),
    }
});
