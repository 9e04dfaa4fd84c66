//! The `rerankd-soak` binary: parse the flags, run the soak, and exit
//! non-zero with the error's chain when the soak could not run or failed
//! (an unexpected status, a skipped call, RSS growth over the bound). Must
//! never: hold logic of its own (all of it is `rerankd_bench::soak::run`).

use clap::Parser;

use rerankd_bench::soak::args::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rerankd_bench::soak::run(Cli::parse().args).await?;
    Ok(())
}
