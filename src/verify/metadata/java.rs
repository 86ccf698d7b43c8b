//! A reader of the small part of Java's object serialization stream format that Flink
//! uses for `CheckpointProperties` (format 4 and later): objects of serializable classes,
//! enums, strings, primitives and back references, nested at most [`MAX_DEPTH`] deep.
//!
//! Written for this one purpose rather than taken from a general crate: a metadata file is
//! untrusted input, and this reader must refuse anything it does not know (proxies,
//! externalizable classes) with an error, never a panic, and never recurse without bound.

use super::ParseError;
use super::input::Input;

/// Deepest nesting of objects, class descriptors and annotations read.
pub const MAX_DEPTH: usize = 16;

const STREAM_MAGIC: u16 = 0xaced;
const STREAM_VERSION: u16 = 5;
const TC_NULL: u8 = 0x70;
const TC_REFERENCE: u8 = 0x71;
const TC_CLASSDESC: u8 = 0x72;
const TC_OBJECT: u8 = 0x73;
const TC_STRING: u8 = 0x74;
const TC_ARRAY: u8 = 0x75;
const TC_CLASS: u8 = 0x76;
const TC_BLOCKDATA: u8 = 0x77;
const TC_ENDBLOCKDATA: u8 = 0x78;
const TC_RESET: u8 = 0x79;
const TC_BLOCKDATALONG: u8 = 0x7a;
const TC_LONGSTRING: u8 = 0x7c;
const TC_ENUM: u8 = 0x7e;
const BASE_HANDLE: i32 = 0x7e_0000;
const SC_WRITE_METHOD: u8 = 0x01;
const SC_SERIALIZABLE: u8 = 0x02;
const SC_EXTERNALIZABLE: u8 = 0x04;

/// A value read from the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// A `String`.
    Str(String),
    /// An enum constant.
    Enum {
        /// The enum's class.
        class: String,
        /// The constant's name.
        constant: String,
    },
    /// An object with its fields, those of its superclasses first.
    Object {
        /// Its class.
        class: String,
        /// Field names and values.
        fields: Vec<(String, Value)>,
    },
    /// A primitive; booleans are 0 and 1.
    Primitive(i64),
    /// Anything else: arrays, classes, a reference to an object read before.
    Other,
}

impl Value {
    /// The field `name` of an object.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object { fields, .. } => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The class of an object or enum constant.
    pub fn class(&self) -> Option<&str> {
        match self {
            Value::Object { class, .. } | Value::Enum { class, .. } => Some(class),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Field {
    code: u8,
    name: String,
}

#[derive(Clone, Debug)]
struct ClassDesc {
    name: String,
    flags: u8,
    fields: Vec<Field>,
    parent: Option<Box<ClassDesc>>,
}

#[derive(Clone, Debug)]
enum Handle {
    Class(ClassDesc),
    Str(String),
    Value,
}

/// Reads the first object of the serialization stream at the start of `bytes`.
pub fn read_object(bytes: &[u8]) -> Result<Value, ParseError> {
    let mut reader = Reader {
        input: Input::new(bytes),
        handles: Vec::new(),
    };
    let input = &mut reader.input;
    let at = input.position();
    if input.u16("serialization magic")? != STREAM_MAGIC
        || input.u16("serialization version")? != STREAM_VERSION
    {
        return Err(ParseError::malformed(at, "not a Java serialization stream"));
    }
    reader.content(0)
}

struct Reader<'a> {
    input: Input<'a>,
    handles: Vec<Handle>,
}

impl Reader<'_> {
    fn content(&mut self, depth: usize) -> Result<Value, ParseError> {
        let at = self.input.position();
        if depth > MAX_DEPTH {
            return Err(ParseError::malformed(
                at,
                "serialized object nested too deep",
            ));
        }
        match self.input.u8("serialized value")? {
            TC_NULL => Ok(Value::Null),
            TC_RESET => {
                self.handles.clear();
                self.content(depth + 1)
            }
            TC_REFERENCE => match self.handle()? {
                Handle::Str(s) => Ok(Value::Str(s)),
                _ => Ok(Value::Other),
            },
            TC_STRING => {
                let s = self.input.utf("serialized string")?;
                self.handles.push(Handle::Str(s.clone()));
                Ok(Value::Str(s))
            }
            TC_LONGSTRING => {
                let len = self.input.i64("serialized long string")?;
                let len = usize::try_from(len)
                    .map_err(|_| ParseError::malformed(at, "negative string length"))?;
                let bytes = self.input.take(len, "serialized long string")?;
                let s = cesu8::from_java_cesu8(bytes)
                    .map_err(|_| ParseError::malformed(at, "string not modified UTF-8"))?
                    .into_owned();
                self.handles.push(Handle::Str(s.clone()));
                Ok(Value::Str(s))
            }
            TC_ENUM => {
                let desc = self.class_desc(depth + 1)?;
                self.handles.push(Handle::Value);
                let constant = match self.content(depth + 1)? {
                    Value::Str(s) => s,
                    _ => return Err(ParseError::malformed(at, "enum constant without a name")),
                };
                let class = desc.map(|d| d.name).unwrap_or_default();
                Ok(Value::Enum { class, constant })
            }
            TC_OBJECT => {
                let desc = self
                    .class_desc(depth + 1)?
                    .ok_or_else(|| ParseError::malformed(at, "object without a class"))?;
                self.handles.push(Handle::Value);
                let mut chain = Vec::new();
                let mut next = Some(&desc);
                while let Some(d) = next {
                    chain.push(d);
                    next = d.parent.as_deref();
                }
                let mut fields = Vec::new();
                for class in chain.into_iter().rev() {
                    self.class_data(class, &mut fields, depth + 1)?;
                }
                Ok(Value::Object {
                    class: desc.name,
                    fields,
                })
            }
            TC_CLASS => {
                self.class_desc(depth + 1)?;
                self.handles.push(Handle::Value);
                Ok(Value::Other)
            }
            TC_ARRAY => {
                let desc = self
                    .class_desc(depth + 1)?
                    .ok_or_else(|| ParseError::malformed(at, "array without a class"))?;
                self.handles.push(Handle::Value);
                let len = self.input.count("array length")?;
                match desc.name.as_bytes().get(1).copied() {
                    Some(code @ (b'L' | b'[')) => {
                        let _ = code;
                        for _ in 0..len {
                            self.content(depth + 1)?;
                        }
                    }
                    Some(code) => self.input.skip(len, primitive_width(code, at)?, "array")?,
                    None => return Err(ParseError::malformed(at, "array class without a type")),
                }
                Ok(Value::Other)
            }
            other => Err(ParseError::unsupported(
                at,
                format!("serialized value of kind {other:#04x}"),
            )),
        }
    }

    fn handle(&mut self) -> Result<Handle, ParseError> {
        let at = self.input.position();
        let raw = self.input.i32("serialization handle")?;
        raw.checked_sub(BASE_HANDLE)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.handles.get(i).cloned())
            .ok_or_else(|| ParseError::malformed(at, format!("unknown handle {raw:#x}")))
    }

    fn class_desc(&mut self, depth: usize) -> Result<Option<ClassDesc>, ParseError> {
        let at = self.input.position();
        if depth > MAX_DEPTH {
            return Err(ParseError::malformed(
                at,
                "class descriptors nested too deep",
            ));
        }
        match self.input.u8("class descriptor")? {
            TC_NULL => Ok(None),
            TC_REFERENCE => match self.handle()? {
                Handle::Class(desc) => Ok(Some(desc)),
                _ => Err(ParseError::malformed(at, "reference to a non-class")),
            },
            TC_CLASSDESC => {
                let name = self.input.utf("class name")?;
                self.input.i64("serialVersionUID")?;
                let slot = self.handles.len();
                self.handles.push(Handle::Value);
                let flags = self.input.u8("class flags")?;
                if flags & SC_EXTERNALIZABLE != 0 {
                    return Err(ParseError::unsupported(
                        at,
                        format!("externalizable class {name}"),
                    ));
                }
                let count = self.input.u16("field count")?;
                let mut fields = Vec::with_capacity(usize::from(count).min(self.input.remaining()));
                for _ in 0..count {
                    let code = self.input.u8("field type")?;
                    let name = self.input.utf("field name")?;
                    if matches!(code, b'L' | b'[') {
                        self.content(depth + 1)?;
                    } else {
                        primitive_width(code, at)?;
                    }
                    fields.push(Field { code, name });
                }
                self.annotation(depth + 1)?;
                let parent = self.class_desc(depth + 1)?.map(Box::new);
                let desc = ClassDesc {
                    name,
                    flags,
                    fields,
                    parent,
                };
                // A reset inside the descriptor may have dropped its handle: then no later
                // reference can name it anyway.
                if let Some(handle) = self.handles.get_mut(slot) {
                    *handle = Handle::Class(desc.clone());
                }
                Ok(Some(desc))
            }
            other => Err(ParseError::unsupported(
                at,
                format!("class descriptor of kind {other:#04x}"),
            )),
        }
    }

    fn class_data(
        &mut self,
        class: &ClassDesc,
        out: &mut Vec<(String, Value)>,
        depth: usize,
    ) -> Result<(), ParseError> {
        if class.flags & SC_SERIALIZABLE == 0 {
            return Ok(());
        }
        for field in &class.fields {
            let at = self.input.position();
            let value = match field.code {
                b'L' | b'[' => self.content(depth + 1)?,
                code => {
                    let bytes = self.input.take(primitive_width(code, at)?, "field value")?;
                    Value::Primitive(bytes.iter().fold(0i64, |n, b| (n << 8) | i64::from(*b)))
                }
            };
            out.push((field.name.clone(), value));
        }
        if class.flags & SC_WRITE_METHOD != 0 {
            self.annotation(depth + 1)?;
        }
        Ok(())
    }

    /// Skips block data and objects up to the end-of-block marker.
    fn annotation(&mut self, depth: usize) -> Result<(), ParseError> {
        loop {
            let at = self.input.position();
            if depth > MAX_DEPTH {
                return Err(ParseError::malformed(at, "annotations nested too deep"));
            }
            match self.input.rest().first().copied() {
                Some(TC_ENDBLOCKDATA) => {
                    self.input.u8("end of block")?;
                    return Ok(());
                }
                Some(TC_BLOCKDATA) => {
                    self.input.u8("block")?;
                    let len = self.input.u8("block length")?;
                    self.input.take(usize::from(len), "block")?;
                }
                Some(TC_BLOCKDATALONG) => {
                    self.input.u8("block")?;
                    let len = self.input.count("block length")?;
                    self.input.take(len, "block")?;
                }
                Some(_) => {
                    self.content(depth + 1)?;
                }
                None => return Err(ParseError::truncated(at, "annotation")),
            }
        }
    }
}

fn primitive_width(code: u8, at: usize) -> Result<usize, ParseError> {
    match code {
        b'B' | b'Z' => Ok(1),
        b'C' | b'S' => Ok(2),
        b'I' | b'F' => Ok(4),
        b'J' | b'D' => Ok(8),
        other => Err(ParseError::malformed(
            at,
            format!("field type {:?}", char::from(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_inside_a_class_descriptor_is_survived() {
        let mut bytes = vec![0xac, 0xed, 0x00, 0x05, TC_OBJECT, TC_CLASSDESC];
        bytes.extend_from_slice(&[0, 1, b'A']);
        bytes.extend_from_slice(&[0; 8]);
        bytes.push(SC_SERIALIZABLE);
        bytes.extend_from_slice(&[0, 1, b'L', 0, 1, b'f']);
        bytes.extend_from_slice(&[TC_RESET, TC_STRING, 0, 1, b'X']);
        bytes.extend_from_slice(&[TC_ENDBLOCKDATA, TC_NULL, TC_NULL]);
        let value = read_object(&bytes).unwrap();
        assert_eq!(value.class(), Some("A"));
        assert_eq!(value.field("f"), Some(&Value::Null));
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let mut bytes = vec![0xac, 0xed, 0x00, 0x05];
        bytes.extend(std::iter::repeat_n(TC_RESET, 10_000));
        assert!(read_object(&bytes).is_err());
    }
}
