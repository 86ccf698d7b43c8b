//! Small text helpers shared by messages, Events and logs: [`truncate`].

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

#[cfg(test)]
mod tests {
    use super::truncate;

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
