fn main() { eprintln!("spin-host: not built yet"); std::process::exit(2); }
