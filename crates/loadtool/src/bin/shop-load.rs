//! `shop-load`: see `shop-load --help` and the README's "Load tool".

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = shop_load::Args::parse();
    let report = shop_load::run(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
        println!("  plot        {}", args.plot.display());
    }
    Ok(())
}
