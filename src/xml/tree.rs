//! A minimal owned tree over quick-xml events, used to edit production XML surgically.
//!
//! Every node keeps the exact event quick-xml read: start tags keep their raw attribute text
//! (quote style, spacing, namespace declarations), and text, comments, CDATA, processing
//! instructions and entity references are stored as read. Writing an unmodified tree back
//! therefore reproduces the input byte for byte. Only elements reclab edits are re-rendered,
//! and even then the attributes it does not touch keep their raw value.

use anyhow::{Context, Result, bail};
use quick_xml::Reader;
use quick_xml::Writer;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

/// A node of the tree: an element, or any other event (text, comment, CDATA, PI, reference).
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Elem(Elem),
    Other(Event<'static>),
}

/// An element with its raw start tag and its children.
#[derive(Debug, Clone)]
pub(crate) struct Elem {
    start: BytesStart<'static>,
    pub children: Vec<Node>,
    /// Written as `<x/>` rather than `<x></x>` when it has no children.
    empty: bool,
}

/// A whole document: what precedes the root (declaration, comments), the root, what follows.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    pub prolog: Vec<Node>,
    pub root: Elem,
    pub epilog: Vec<Node>,
}

/// How new content is indented so that it blends into the document.
#[derive(Debug, Clone)]
pub(crate) struct Style {
    /// One level of indentation, e.g. two spaces; `None` for a document without layout.
    pub unit: Option<String>,
    /// The attribute quote of the document's root element, used for new elements.
    pub quote: char,
}

impl Style {
    /// The whitespace that precedes a child element at `depth` (the root is at depth 0).
    pub fn ws(&self, depth: usize) -> Option<String> {
        self.unit
            .as_ref()
            .map(|unit| format!("\n{}", unit.repeat(depth)))
    }
}

/// Refuses a start tag whose attributes are not well-formed: broken syntax, a duplicate, a
/// raw `<` or an undefined entity in a value. (Attributes are otherwise read leniently, so a
/// malformed one would pass through unnoticed, or be skipped when the rewrite reads a device.)
fn check_attributes(start: &BytesStart, position: u64) -> Result<()> {
    let name = start.name().as_ref().to_string();
    for a in start.attributes() {
        let a =
            a.with_context(|| format!("malformed attributes of <{name}> near byte {position}"))?;
        let key = a.key.as_ref().to_string();
        if a.value.contains('<') {
            bail!("attribute {key} of <{name}> near byte {position} contains a raw '<'");
        }
        quick_xml::escape::unescape(&a.value).with_context(|| {
            format!("attribute {key} of <{name}> near byte {position} has an undefined entity")
        })?;
    }
    Ok(())
}

/// Parses a document into a tree, refusing anything that is not well-formed.
pub(crate) fn parse(xml: &str) -> Result<Doc> {
    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.trim_text(false);
    config.expand_empty_elements = false;
    config.check_end_names = true;
    let mut stack: Vec<Elem> = Vec::new();
    let mut prolog = Vec::new();
    let mut root: Option<Elem> = None;
    let mut epilog = Vec::new();
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .with_context(|| format!("parsing xml near byte {position}"))?
            .into_owned();
        let node = match event {
            Event::Eof => break,
            Event::Start(start) => {
                check_attributes(&start, position)?;
                stack.push(Elem {
                    start,
                    children: Vec::new(),
                    empty: false,
                });
                continue;
            }
            Event::End(_) => {
                let elem = stack.pop().context("unbalanced end tag")?;
                Node::Elem(elem)
            }
            Event::Empty(start) => {
                check_attributes(&start, position)?;
                Node::Elem(Elem {
                    start,
                    children: Vec::new(),
                    empty: true,
                })
            }
            other => Node::Other(other),
        };
        if let Some(parent) = stack.last_mut() {
            parent.children.push(node);
        } else {
            match node {
                Node::Elem(elem) => {
                    if root.is_some() {
                        bail!("xml has more than one root element");
                    }
                    root = Some(elem);
                }
                other if root.is_none() => prolog.push(other),
                other => epilog.push(other),
            }
        }
    }
    if let Some(open) = stack.last() {
        bail!("xml ends inside <{}>", open.name());
    }
    let root = root.context("xml has no root element")?;
    Ok(Doc {
        prolog,
        root,
        epilog,
    })
}

impl Doc {
    /// Serializes the document exactly as stored.
    pub fn to_xml(&self) -> String {
        let mut writer = Writer::new(Vec::new());
        for node in self
            .prolog
            .iter()
            .chain(std::iter::once(&Node::Elem(self.root.clone())))
            .chain(self.epilog.iter())
        {
            write_node(&mut writer, node);
        }
        String::from_utf8(writer.into_inner()).expect("quick-xml writes the utf-8 it was given")
    }

    /// Guesses the indentation unit from the first indented child of the root.
    pub fn style(&self) -> Style {
        let unit = self.root.children.iter().find_map(|node| match node {
            Node::Other(Event::Text(text)) => {
                let text: &str = text;
                let last_line = text.rsplit('\n').next()?;
                (text.contains('\n') && !last_line.is_empty() && last_line.trim().is_empty())
                    .then(|| last_line.to_string())
            }
            _ => None,
        });
        let has_layout = self
            .root
            .children
            .iter()
            .any(|n| is_ws(n) && node_has_newline(n));
        Style {
            quote: self.root.quote(),
            unit: if has_layout {
                Some(unit.unwrap_or_else(|| "  ".to_string()))
            } else {
                None
            },
        }
    }
}

fn node_has_newline(node: &Node) -> bool {
    matches!(node, Node::Other(Event::Text(t)) if t.contains('\n'))
}

fn write_node(writer: &mut Writer<Vec<u8>>, node: &Node) {
    // Writing into a Vec cannot fail.
    match node {
        Node::Other(event) => writer.write_event(event.borrow()).expect("write to vec"),
        Node::Elem(elem) => {
            if elem.children.is_empty() && elem.empty {
                writer
                    .write_event(Event::Empty(elem.start.borrow()))
                    .expect("write to vec");
            } else {
                writer
                    .write_event(Event::Start(elem.start.borrow()))
                    .expect("write to vec");
                for child in &elem.children {
                    write_node(writer, child);
                }
                writer
                    .write_event(Event::End(BytesEnd::new(elem.name())))
                    .expect("write to vec");
            }
        }
    }
}

/// True for a text node made only of whitespace.
pub(crate) fn is_ws(node: &Node) -> bool {
    matches!(node, Node::Other(Event::Text(t)) if t.trim().is_empty())
}

fn ws_node(ws: &str) -> Node {
    Node::Other(Event::Text(BytesText::from_escaped(ws.to_string())))
}

impl Elem {
    /// A new empty element without attributes.
    pub fn new(name: &str) -> Elem {
        Elem {
            start: BytesStart::new(name.to_string()),
            children: Vec::new(),
            empty: true,
        }
    }

    /// Builder form of [`Elem::set_attr`].
    pub fn with_attr(mut self, key: &str, value: &str) -> Elem {
        self.set_attr(key, value);
        self
    }

    /// Builder form of [`Elem::set_text`].
    pub fn with_text(mut self, text: &str) -> Elem {
        self.set_text(text);
        self
    }

    /// The qualified name as written (`reclab:lab`).
    pub fn name(&self) -> String {
        self.start.name().as_ref().to_string()
    }

    /// The name without its prefix.
    pub fn local_name(&self) -> String {
        self.start.local_name().as_ref().to_string()
    }

    /// The prefix of the name, if any.
    pub fn prefix(&self) -> Option<String> {
        let name = self.name();
        name.split_once(':').map(|(p, _)| p.to_string())
    }

    /// All attributes as (qualified key, raw escaped value).
    fn raw_attrs(&self) -> Vec<(String, String)> {
        let mut attrs = self.start.attributes();
        attrs.with_checks(false);
        attrs
            .filter_map(|a| a.ok())
            .map(|a| (a.key.as_ref().to_string(), a.value.into_owned()))
            .collect()
    }

    /// All attributes as (qualified key, unescaped value).
    pub fn attrs(&self) -> Vec<(String, String)> {
        self.raw_attrs()
            .into_iter()
            .map(|(k, raw)| {
                let value = quick_xml::escape::unescape(&raw)
                    .map(|v| v.into_owned())
                    .unwrap_or(raw);
                (k, value)
            })
            .collect()
    }

    /// The unescaped value of an attribute.
    pub fn attr(&self, key: &str) -> Option<String> {
        self.attrs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True when the attribute exists.
    pub fn has_attr(&self, key: &str) -> bool {
        self.raw_attrs().iter().any(|(k, _)| k == key)
    }

    /// The quote this element uses for its attributes (single quotes for a new element,
    /// as libvirt writes them).
    fn quote(&self) -> char {
        let raw = self.start.attributes_raw();
        raw.find('=')
            .and_then(|i| raw[i + 1..].trim_start().chars().next())
            .filter(|c| *c == '"' || *c == '\'')
            .unwrap_or('\'')
    }

    /// Rebuilds the start tag from attributes given as (key, raw escaped value).
    fn rebuild(&mut self, attrs: &[(String, String)]) {
        self.rebuild_with(attrs, self.quote());
    }

    fn rebuild_with(&mut self, attrs: &[(String, String)], quote: char) {
        let name = self.name();
        let mut content = name.clone();
        for (key, raw) in attrs {
            // A raw value that contains the preferred quote was written with the other one.
            let q = if raw.contains(quote) {
                if quote == '\'' { '"' } else { '\'' }
            } else {
                quote
            };
            content.push_str(&format!(" {key}={q}{raw}{q}"));
        }
        self.start = BytesStart::from_content(content, name.len());
    }

    /// Sets an attribute, keeping its position if it exists, appending it otherwise.
    pub fn set_attr(&mut self, key: &str, value: &str) {
        let escaped = escape(value).into_owned();
        let mut attrs = self.raw_attrs();
        if let Some(slot) = attrs.iter_mut().find(|(k, _)| k == key) {
            if slot.1 == escaped {
                return;
            }
            slot.1 = escaped;
        } else {
            attrs.push((key.to_string(), escaped));
        }
        self.rebuild(&attrs);
    }

    /// Removes an attribute; returns whether it was there.
    pub fn remove_attr(&mut self, key: &str) -> bool {
        let mut attrs = self.raw_attrs();
        let before = attrs.len();
        attrs.retain(|(k, _)| k != key);
        if attrs.len() == before {
            return false;
        }
        self.rebuild(&attrs);
        true
    }

    /// Child elements in order.
    pub fn elems(&self) -> impl Iterator<Item = &Elem> {
        self.children.iter().filter_map(|n| match n {
            Node::Elem(e) => Some(e),
            Node::Other(_) => None,
        })
    }

    /// Child elements in order, mutably.
    pub fn elems_mut(&mut self) -> impl Iterator<Item = &mut Elem> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Elem(e) => Some(e),
            Node::Other(_) => None,
        })
    }

    /// The first child element with this qualified name.
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.elems().find(|e| e.name() == name)
    }

    /// The first child element with this qualified name, mutably.
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Elem> {
        self.elems_mut().find(|e| e.name() == name)
    }

    /// The text content of the element (text, CDATA and entity references, unescaped).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for node in &self.children {
            match node {
                Node::Other(Event::Text(t)) => {
                    let raw: &str = t;
                    out.push_str(&quick_xml::escape::unescape(raw).unwrap_or(raw.into()));
                }
                Node::Other(Event::CData(c)) => out.push_str(c),
                Node::Other(Event::GeneralRef(r)) => {
                    if let Ok(Some(ch)) = r.resolve_char_ref() {
                        out.push(ch);
                    } else if let Some(s) = resolve_predefined_entity(r) {
                        out.push_str(s);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Replaces all children with one text node, unless the text is already that.
    pub fn set_text(&mut self, text: &str) {
        let only_text = self
            .children
            .iter()
            .all(|n| matches!(n, Node::Other(Event::Text(_))));
        if only_text && self.text() == text && !self.children.is_empty() {
            return;
        }
        self.children = vec![Node::Other(Event::Text(BytesText::new(text).into_owned()))];
        self.empty = false;
    }

    /// Removes the child elements matching `pred`, with the whitespace that precedes each, and
    /// returns them.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Elem) -> bool) -> Vec<Elem> {
        let mut removed = Vec::new();
        let mut kept: Vec<Node> = Vec::with_capacity(self.children.len());
        for node in std::mem::take(&mut self.children) {
            match node {
                Node::Elem(e) if pred(&e) => {
                    if kept.last().is_some_and(is_ws) {
                        kept.pop();
                    }
                    removed.push(e);
                }
                other => kept.push(other),
            }
        }
        self.children = kept;
        removed
    }

    /// Visits every child element with `keep`, which may edit it; drops those for which it
    /// returns `false`, with the whitespace that precedes each. Stops at the first error.
    pub fn retain_elems(&mut self, mut keep: impl FnMut(&mut Elem) -> Result<bool>) -> Result<()> {
        let mut kept: Vec<Node> = Vec::with_capacity(self.children.len());
        for node in std::mem::take(&mut self.children) {
            match node {
                Node::Elem(mut e) => {
                    let result = keep(&mut e);
                    match result {
                        Ok(true) => kept.push(Node::Elem(e)),
                        Ok(false) => {
                            if kept.last().is_some_and(is_ws) {
                                kept.pop();
                            }
                        }
                        Err(err) => {
                            kept.push(Node::Elem(e));
                            self.children = kept;
                            return Err(err);
                        }
                    }
                }
                other => kept.push(other),
            }
        }
        self.children = kept;
        Ok(())
    }

    /// The element serialized on its own, exactly as it would appear in the document.
    pub fn to_xml(&self) -> String {
        let mut writer = Writer::new(Vec::new());
        write_node(&mut writer, &Node::Elem(self.clone()));
        String::from_utf8(writer.into_inner()).expect("quick-xml writes the utf-8 it was given")
    }

    /// Index into `children` of the n-th child element matching `pred`.
    pub fn position(&self, mut pred: impl FnMut(&Elem) -> bool) -> Option<usize> {
        self.children
            .iter()
            .position(|n| matches!(n, Node::Elem(e) if pred(e)))
    }

    /// The whitespace used before child elements, from the existing children or the style.
    fn inner_ws(&self, depth: usize, style: &Style) -> Option<String> {
        let mut previous: Option<&Node> = None;
        let mut found = None;
        for node in &self.children {
            if let (Node::Elem(_), Some(prev)) = (node, previous)
                && is_ws(prev)
                && let Node::Other(Event::Text(t)) = prev
            {
                found = Some(t.to_string());
            }
            previous = Some(node);
        }
        found.or_else(|| style.ws(depth + 1))
    }

    /// Writes the attributes of a new subtree with the document's quote.
    fn requote(&mut self, quote: char) {
        let attrs = self.raw_attrs();
        self.rebuild_with(&attrs, quote);
        for child in self.elems_mut() {
            child.requote(quote);
        }
    }

    /// Replaces `children[index]`, which must be an element, with a new element.
    pub fn replace_at(&mut self, index: usize, mut child: Elem, style: &Style) {
        child.requote(style.quote);
        self.children[index] = Node::Elem(child);
    }

    /// Appends a child element after the last child, indented like its siblings. `depth` is the
    /// depth of `self` (the root is at depth 0).
    pub fn append(&mut self, mut child: Elem, depth: usize, style: &Style) {
        child.requote(style.quote);
        let inner = self.inner_ws(depth, style);
        self.empty = false;
        if self.children.last().is_some_and(is_ws) {
            let at = self.children.len() - 1;
            self.children.insert(at, Node::Elem(child));
            if let Some(ws) = inner {
                self.children.insert(at, ws_node(&ws));
            }
        } else if self.children.is_empty() {
            if let Some(ws) = inner {
                self.children.push(ws_node(&ws));
            }
            self.children.push(Node::Elem(child));
            if let Some(ws) = style.ws(depth) {
                self.children.push(ws_node(&ws));
            }
        } else {
            if let Some(ws) = inner {
                self.children.push(ws_node(&ws));
            }
            self.children.push(Node::Elem(child));
        }
    }

    /// Inserts a child element right after `children[index]`, indented like its siblings.
    pub fn insert_after(&mut self, index: usize, mut child: Elem, depth: usize, style: &Style) {
        child.requote(style.quote);
        let inner = self.inner_ws(depth, style);
        self.empty = false;
        self.children.insert(index + 1, Node::Elem(child));
        if let Some(ws) = inner {
            self.children.insert(index + 1, ws_node(&ws));
        }
    }

    /// Inserts a child element right before `children[index]`, indented like its siblings.
    pub fn insert_before(&mut self, index: usize, mut child: Elem, depth: usize, style: &Style) {
        child.requote(style.quote);
        let inner = self.inner_ws(depth, style);
        self.empty = false;
        if let Some(ws) = inner {
            self.children.insert(index, ws_node(&ws));
        }
        self.children.insert(index, Node::Elem(child));
    }

    /// Removes one level of indentation from every whitespace node of the subtree, so that an
    /// element lifted out of its parent (a snapshot's `<domain>`) reads as a document root.
    pub fn dedent(&mut self, unit: &str) {
        for node in &mut self.children {
            match node {
                Node::Elem(e) => e.dedent(unit),
                Node::Other(Event::Text(t)) if t.trim().is_empty() && t.contains('\n') => {
                    let fixed = t.replace(&format!("\n{unit}"), "\n");
                    *node = ws_node(&fixed);
                }
                Node::Other(_) => {}
            }
        }
    }

    /// Namespace declarations made on this element, as (prefix, uri); `""` is the default.
    pub fn ns_decls(&self) -> Vec<(String, String)> {
        self.attrs()
            .into_iter()
            .filter_map(|(k, v)| {
                if k == "xmlns" {
                    Some((String::new(), v))
                } else {
                    k.strip_prefix("xmlns:").map(|p| (p.to_string(), v))
                }
            })
            .collect()
    }

    /// The namespace URI of this element, given the declarations in scope above it (innermost
    /// last).
    pub fn namespace(&self, inherited: &[(String, String)]) -> Option<String> {
        let prefix = self.prefix().unwrap_or_default();
        self.ns_decls()
            .into_iter()
            .rev()
            .chain(inherited.iter().rev().cloned())
            .find(|(p, _)| *p == prefix)
            .map(|(_, uri)| uri)
            .filter(|uri| !uri.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmodified_tree_writes_back_byte_for_byte() {
        let xml = "<?xml version=\"1.0\"?>\n<!-- top -->\n<a x='1' y=\"it's\">\n  <b />\n  <c>t &amp; &#x41; <![CDATA[<raw>]]></c>\n  <?pi data?>\n  <d></d>\n</a>\n";
        let doc = parse(xml).unwrap();
        assert_eq!(doc.to_xml(), xml);
    }

    #[test]
    fn malformed_attributes_are_refused_not_passed_through() {
        for xml in [
            "<a><input type='<b x='1'>tablet' bus='usb'/></a>",
            "<a><graphics type='vnc' listen='0.0.0.0' listen='127.0.0.1'/></a>",
            "<a><b x='&undefined;'/></a>",
        ] {
            let err = format!("{:#}", parse(xml).unwrap_err());
            assert!(err.contains("near byte"), "{xml}: {err}");
        }
    }

    #[test]
    fn editing_one_attribute_keeps_the_others_and_their_quotes() {
        let mut doc = parse("<a x='1' y=\"it's\" z='&lt;'/>").unwrap();
        doc.root.set_attr("x", "2");
        assert_eq!(doc.to_xml(), "<a x='2' y=\"it's\" z='&lt;'/>");
        assert_eq!(doc.root.attr("z").as_deref(), Some("<"));
    }

    #[test]
    fn appended_children_follow_the_sibling_indentation() {
        let mut doc = parse("<a>\n    <b/>\n</a>").unwrap();
        let style = doc.style();
        doc.root.append(Elem::new("c"), 0, &style);
        assert_eq!(doc.to_xml(), "<a>\n    <b/>\n    <c/>\n</a>");
        doc.root.remove_where(|e| e.name() == "b");
        assert_eq!(doc.to_xml(), "<a>\n    <c/>\n</a>");
    }

    #[test]
    fn text_resolves_references() {
        let doc = parse("<a>x &amp; &#65;</a>").unwrap();
        assert_eq!(doc.root.text(), "x & A");
    }
}
