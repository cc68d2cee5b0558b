//! The restore commands of a dump source, filled in for one dump. Pure.

use anyhow::Result;

use crate::base::template::{expand, sh_quote};
use crate::spec::DumpsSpec;

/// `{dump}`, `{dir}`, `{file}`, `{manifest}` and `{as}` are shell-quoted as needed.
pub fn restore_commands(dumps: &DumpsSpec, file: &str) -> Result<Vec<String>> {
    let dir = dumps.mount.trim_end_matches('/');
    let dump = format!("{dir}/{file}");
    let manifest = dumps
        .manifest
        .as_ref()
        .and_then(|m| expand(m, &[("file", file)]).ok())
        .map(|name| format!("{dir}/{name}"));
    let mut values = vec![
        ("dump", sh_quote(&dump)),
        ("dir", sh_quote(dir)),
        ("file", sh_quote(file)),
    ];
    if let Some(manifest) = &manifest {
        values.push(("manifest", sh_quote(manifest)));
    }
    if let Some(restore_as) = &dumps.restore_as {
        values.push(("as", sh_quote(restore_as)));
    }
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    dumps
        .restore
        .iter()
        .map(|command| {
            expand(command, &values)
                .map_err(|why| anyhow::anyhow!("restore command {command:?} {why}"))
        })
        .collect()
}
