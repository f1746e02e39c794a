//! Write-amplification benchmark (placeholder until the benchmark lands).
fn main() {
    println!("write_amplification: not built yet");
}
