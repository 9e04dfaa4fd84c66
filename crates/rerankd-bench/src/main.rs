//! The `rerankd-bench` binary: parse the flags, run the bench, and exit
//! non-zero with the error's chain when the run could not be made or
//! measured nothing. Must never: hold logic of its own (all of it is
//! `rerankd_bench::run`, which the server binary's `rerankd bench` calls
//! too, so the two stay the same command).

use clap::Parser;

use rerankd_bench::args::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rerankd_bench::run(Cli::parse().args).await?;
    Ok(())
}
