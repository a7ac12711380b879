//! The `guardia` command line.

fn main() -> anyhow::Result<()> {
    Ok(())
}
