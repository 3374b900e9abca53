// Give `recurse` a 16 MiB shadow stack (in linear memory) instead of Rust's
// default 1 MiB, so the *wasm call stack* limit (`limits.stack_kb`, i.e.
// wasmtime's `max_wasm_stack`) is what stops the recursion ("call stack
// exhausted"), not a shadow-stack overflow (out-of-bounds memory access).
fn main() {
    println!("cargo:rustc-link-arg=-zstack-size=16777216");
}
