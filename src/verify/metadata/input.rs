//! A bounds-checked big-endian reader over the bytes of a metadata file, reading what
//! Java's `DataInputStream` writes.

use super::ParseError;

/// Reads Java `DataInput` values from a byte slice; every read past the end is an error
/// naming the offset, never a panic.
pub struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Offset of the next byte.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        if n > self.remaining() {
            return Err(ParseError::truncated(self.at, what));
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    /// Skips `count` items of `width` bytes each (key-group offsets and the like), checking
    /// first that they are there, so a huge count costs nothing.
    pub fn skip(
        &mut self,
        count: usize,
        width: usize,
        what: &'static str,
    ) -> Result<(), ParseError> {
        let n = count
            .checked_mul(width)
            .ok_or_else(|| ParseError::truncated(self.at, what))?;
        self.take(n, what).map(|_| ())
    }

    /// A `byte`, unsigned.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(self.take(1, what)?[0])
    }

    /// A `boolean`.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, ParseError> {
        Ok(self.u8(what)? != 0)
    }

    /// An unsigned `short`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, ParseError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// An `int`.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, ParseError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An `int` that counts something: negative is malformed.
    pub fn count(&mut self, what: &'static str) -> Result<usize, ParseError> {
        let at = self.at;
        let n = self.i32(what)?;
        usize::try_from(n).map_err(|_| ParseError::malformed(at, format!("{what}: {n}")))
    }

    /// A `long`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, ParseError> {
        let b = self.take(8, what)?;
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(b);
        Ok(i64::from_be_bytes(chunk))
    }

    /// A string as `writeUTF` writes it: a 2-byte length, then modified UTF-8.
    pub fn utf(&mut self, what: &'static str) -> Result<String, ParseError> {
        let len = self.u16(what)? as usize;
        let at = self.at;
        let bytes = self.take(len, what)?;
        cesu8::from_java_cesu8(bytes)
            .map(|s| s.into_owned())
            .map_err(|_| ParseError::malformed(at, format!("{what}: not modified UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_refuses_past_the_end() {
        let mut input = Input::new(&[0, 0, 0, 7, 0, 2, b'h', b'i', 1]);
        assert_eq!(input.i32("n").unwrap(), 7);
        assert_eq!(input.utf("s").unwrap(), "hi");
        assert!(input.bool("b").unwrap());
        let err = input.i64("l").unwrap_err();
        assert_eq!(err.at, 9);
        assert!(err.is_truncated());
    }

    #[test]
    fn a_huge_skip_is_an_error_not_an_allocation() {
        let mut input = Input::new(&[0; 16]);
        assert!(input.skip(usize::MAX, 8, "offsets").is_err());
        assert!(input.skip(2, 8, "offsets").is_ok());
        assert_eq!(input.remaining(), 0);
    }

    #[test]
    fn java_encodes_nul_in_two_bytes() {
        let mut input = Input::new(&[0, 4, b'a', 0xc0, 0x80, b'b']);
        assert_eq!(input.utf("s").unwrap(), "a\0b");
    }
}
