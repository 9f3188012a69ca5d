//! `cargo bench -p steadfast-bench`: the framework overhead per model round trip (a 50-turn
//! tool-calling loop with a FunctionModel against calling the model directly), measured by the
//! same code as `steadfast-bench overhead`. Pass `--quick` for a smoke run.

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so stay quick there.
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let runs = if quick { 3 } else { 300 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let o = rt.block_on(steadfast_bench::overhead::measure(50, runs))?;
    println!(
        "overhead: {}-turn tool-calling loop, median of {} runs",
        o.turns, o.runs
    );
    println!(
        "  plain agent loop          {:>9.2} µs per round trip",
        o.agent_us
    );
    println!("  FunctionModel directly    {:>9.2} µs per call", o.bare_us);
    println!(
        "  framework overhead        {:>9.2} µs per round trip (the loop is {:.2}× the direct call)",
        o.overhead_us(),
        o.agent_us / o.bare_us
    );
    println!(
        "  in a workflow, MemoryStore {:>8.2} µs per round trip ({:.2}× the plain loop)",
        o.durable_memory_us,
        o.durable_memory_us / o.agent_us
    );
    Ok(())
}
