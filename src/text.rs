//! Small text helpers shared by messages, Events and logs: [`truncate`], [`clip`] and
//! [`printable`].

use std::borrow::Cow;

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `text` cut to at most `max` bytes (see [`truncate`]) and made [`printable`]: the form
/// in which input a client sent is echoed in an error.
pub fn clip(text: &str, max: usize) -> String {
    let cut = if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        cut
    } else {
        text.len()
    };
    let mut out = printable(&text[..cut]).into_owned();
    if cut < text.len() {
        out.push_str(&format!("… ({} bytes)", text.len()));
    }
    out
}

/// `text` with every control character written as an escape (`\n`, `\u{1b}`), so that
/// a name cannot forge a log line or break a warning header; unchanged when it has none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{clip, printable, truncate};

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(clip("abcdef", 3), "abc… (6 bytes)");
        assert_eq!(clip("a\tb", 10), "a\\tb");
    }

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(truncate("abc".into(), 5), "abc");
        assert_eq!(truncate("abcdef".into(), 3), "abc…");
        assert_eq!(
            truncate("aé".into(), 2),
            "a…",
            "é is two bytes and is not split"
        );
    }
}
