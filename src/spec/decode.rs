//! TOML text to wire types, with every syntax and decoding error as a problem.

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::problems::Problems;
use super::wire::{
    WireCheck, WireLab, WireMetrics, WireNotify, WirePublish, WireSegment, WireTop, WireVm,
};

/// Decodes the text into wire types; `None` if there is any problem. Syntax errors are all
/// reported; unknown keys and wrong value types only the first per top-level section, segment,
/// vm and check, because each piece is decoded on its own.
pub(super) fn decode(text: &str, problems: &mut Problems) -> Option<WireLab> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let span = root.span();
    let root = Spanned::new(span.clone(), DeValue::Table(root.into_inner()));
    if !syntax_errors.is_empty() {
        for err in &syntax_errors {
            problems.toml_error(err, &root, 0..0);
        }
        return None;
    }
    let DeValue::Table(table) = root.get_ref() else {
        unreachable!("a document is a table")
    };

    let top = decode_piece::<WireTop>(&root, &root, problems);
    let mut segments = Vec::new();
    let mut vms = Vec::new();
    let mut checks = Vec::new();
    let mut notify = None;
    let mut metrics = None;
    let mut publish = Vec::new();
    for (key, value) in table.iter() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("segment", DeValue::Table(entries)) => {
                for (name, segment) in entries.iter() {
                    if let Some(wire) = decode_piece::<WireSegment>(&root, segment, problems) {
                        let name = Spanned::new(name.span(), name.get_ref().to_string());
                        segments.push((name, Spanned::new(segment.span(), wire)));
                    }
                }
            }
            ("vm", DeValue::Array(entries)) => {
                for vm in entries.iter() {
                    if let Some(wire) = decode_piece::<WireVm>(&root, vm, problems) {
                        vms.push(Spanned::new(vm.span(), wire));
                    }
                }
            }
            ("check", DeValue::Array(entries)) => {
                for check in entries.iter() {
                    if let Some(wire) = decode_piece::<WireCheck>(&root, check, problems) {
                        checks.push(Spanned::new(check.span(), wire));
                    }
                }
            }
            ("publish", DeValue::Array(entries)) => {
                for p in entries.iter() {
                    if let Some(wire) = decode_piece::<WirePublish>(&root, p, problems) {
                        publish.push(Spanned::new(p.span(), wire));
                    }
                }
            }
            ("notify", _) => {
                notify = decode_piece::<WireNotify>(&root, value, problems)
                    .map(|wire| Spanned::new(value.span(), wire));
            }
            ("metrics", _) => {
                metrics = decode_piece::<WireMetrics>(&root, value, problems)
                    .map(|wire| Spanned::new(value.span(), wire));
            }
            _ => {}
        }
    }
    if !problems.is_empty() {
        return None;
    }
    // Segments come in key order from the parser; file order reads better in messages.
    segments.sort_by_key(|(name, _)| name.span().start);
    Some(WireLab {
        top: top?,
        segments,
        vms,
        checks,
        notify,
        metrics,
        publish,
    })
}

fn decode_piece<T: DeserializeOwned>(
    root: &Spanned<DeValue>,
    piece: &Spanned<DeValue>,
    problems: &mut Problems,
) -> Option<T> {
    let deserializer = ValueDeserializer::from(piece.clone());
    match T::deserialize(deserializer) {
        Ok(value) => Some(value),
        Err(err) => {
            problems.toml_error(&err, root, piece.span());
            None
        }
    }
}
