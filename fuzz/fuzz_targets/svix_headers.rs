//! Any bytes as svix headers and body: verification never panics and never accepts a forgery.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = api::fuzzing::svix_headers(data);
});
