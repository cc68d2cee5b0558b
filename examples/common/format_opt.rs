//! The `--format VALUE` option of the benchmark examples that take one.

/// Removes `--format VALUE` from `args` and returns VALUE (`default` when it is not given).
pub fn take_format(args: &mut Vec<String>, default: &str, usage: &str) -> anyhow::Result<String> {
    match args.iter().position(|a| a == "--format") {
        Some(i) if i + 1 < args.len() => {
            let value = args.remove(i + 1);
            args.remove(i);
            Ok(value)
        }
        Some(_) => anyhow::bail!("--format needs a value; {usage}"),
        None => Ok(default.to_string()),
    }
}
