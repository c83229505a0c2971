//! Any bytes as a Clerk event body: parse, then plan.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = api::fuzzing::clerk_event(data);
});
