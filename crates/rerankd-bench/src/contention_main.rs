//! The `rerankd-contention` binary: parse the flags, run the three phases,
//! and exit non-zero with the error's chain when the run could not be made,
//! a call failed, or a figure could not be measured (never on the latency
//! targets, which the table shows beside the figures). Must never: hold
//! logic of its own (all of it is `rerankd_bench::contention::run`).

use clap::Parser;

use rerankd_bench::contention::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rerankd_bench::contention::run(Cli::parse().args).await?;
    Ok(())
}
