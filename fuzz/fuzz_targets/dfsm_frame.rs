#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pmxcfs_ng_fuzz::dfsm_frame(data);
});
