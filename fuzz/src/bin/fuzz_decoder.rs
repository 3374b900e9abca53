//! One libFuzzer binary for every target of `xnode_fuzz`: the target's name comes from the
//! environment variable `XNODE_FUZZ_TARGET` (scripts/fuzz.sh sets it), read once.

#![no_main]

use std::sync::OnceLock;

fn target() -> &'static xnode_fuzz::Target {
    static TARGET: OnceLock<&'static xnode_fuzz::Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let name = std::env::var("XNODE_FUZZ_TARGET").unwrap_or_default();
        match xnode_fuzz::target(&name) {
            Some(target) => target,
            None => {
                let names: Vec<&str> = xnode_fuzz::TARGETS.iter().map(|t| t.name).collect();
                eprintln!("set XNODE_FUZZ_TARGET to one of: {}", names.join(" "));
                std::process::exit(2);
            }
        }
    })
}

libfuzzer_sys::fuzz_target!(init: { target(); }, |data: &[u8]| {
    (target().run)(data);
});
