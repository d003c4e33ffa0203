//! Payload formats. The request's `Content-Type` picks the codec; the reply uses the same one.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::meta::header;

/// `Content-Type` of JSON payloads.
pub const JSON: &str = "application/json";
/// `Content-Type` of MessagePack payloads.
pub const MSGPACK: &str = "application/msgpack";

/// A payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// JSON, the default when a message has no `Content-Type`.
    #[default]
    Json,
    /// MessagePack with structs as maps (field names on the wire), via `rmp-serde`.
    MsgPack,
}

/// Why a payload could not be decoded: the field path (empty for the whole body) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", if path.is_empty() || path == "." { String::new() } else { format!("{path}: ") })]
pub struct DecodeError {
    /// Dotted path of the offending field, `.` for the whole body.
    pub path: String,
    /// What is wrong, from the decoder.
    pub problem: String,
}

/// A value could not be encoded (a map with non-string keys in JSON, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode reply: {0}")]
pub struct EncodeError(String);

impl Codec {
    /// The codec named by a `Content-Type` value (parameters such as `; charset=utf-8` ignored).
    pub fn from_content_type(value: Option<&str>) -> Result<Self, String> {
        let Some(value) = value else {
            return Ok(Self::Json);
        };
        let essence = value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | JSON | "text/json" => Ok(Self::Json),
            MSGPACK | "application/x-msgpack" | "application/vnd.msgpack" => Ok(Self::MsgPack),
            _ => Err(format!(
                "unsupported {} {}: use {JSON} or {MSGPACK}",
                header::CONTENT_TYPE,
                crate::error::quote(value)
            )),
        }
    }

    /// The `Content-Type` this codec writes.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => JSON,
            Self::MsgPack => MSGPACK,
        }
    }

    /// Decodes a payload. An empty JSON payload reads as `{}`, so `nats req users.list ''` works.
    /// The payload must be one value and nothing else: bytes after it are an error, so a
    /// request is never half read.
    ///
    /// A payload is read once, plainly; only one that fails is read again, tracking the path
    /// of the field at fault for the error (tracking costs on every field).
    pub fn decode<T: DeserializeOwned>(self, payload: &[u8]) -> Result<T, DecodeError> {
        let payload = match self {
            Self::Json if payload.iter().all(u8::is_ascii_whitespace) => b"{}",
            _ => payload,
        };
        self.read(payload, false)
            .or_else(|_| self.read(payload, true))
    }

    /// One reading of `payload`, tracking the path of a faulty field when `track`.
    fn read<T: DeserializeOwned>(self, payload: &[u8], track: bool) -> Result<T, DecodeError> {
        let error = |path: String, problem: String| DecodeError { path, problem };
        fn value<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
            de: D,
            track: bool,
        ) -> Result<T, (String, String)>
        where
            D::Error: std::fmt::Display,
        {
            if track {
                serde_path_to_error::deserialize(de)
                    .map_err(|e| (e.path().to_string(), e.inner().to_string()))
            } else {
                T::deserialize(de).map_err(|e| (".".to_owned(), e.to_string()))
            }
        }
        match self {
            Self::Json => {
                let mut de = serde_json::Deserializer::from_slice(payload);
                let value = value(&mut de, track).map_err(|(path, e)| error(path, e))?;
                // Trailing white space is fine; anything else after the value is not.
                de.end()
                    .map_err(|e| error(".".into(), format!("bytes after the JSON value: {e}")))?;
                Ok(value)
            }
            Self::MsgPack => {
                let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(payload));
                let value = value(&mut de, track).map_err(|(path, e)| error(path, e))?;
                let used = de.position();
                if used != payload.len() as u64 {
                    return Err(error(
                        ".".into(),
                        format!(
                            "{} bytes after the MessagePack value",
                            payload.len() as u64 - used
                        ),
                    ));
                }
                Ok(value)
            }
        }
    }

    /// Encodes a value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes, EncodeError> {
        match self {
            Self::Json => serde_json::to_vec(value)
                .map(Bytes::from)
                .map_err(|e| EncodeError(e.to_string())),
            Self::MsgPack => rmp_serde::to_vec_named(value)
                .map(Bytes::from)
                .map_err(|e| EncodeError(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Person {
        name: String,
        age: u32,
    }

    #[test]
    fn no_content_type_means_json() {
        assert_eq!(Codec::from_content_type(None), Ok(Codec::Json));
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        assert_eq!(
            Codec::from_content_type(Some("application/msgpack; v=1")),
            Ok(Codec::MsgPack)
        );
        assert_eq!(
            Codec::from_content_type(Some("Application/JSON")),
            Ok(Codec::Json)
        );
    }

    #[test]
    fn an_unknown_content_type_is_refused_by_name() {
        let err = Codec::from_content_type(Some("text/xml")).unwrap_err();
        assert!(err.contains("text/xml"), "{err}");
    }

    #[test]
    fn msgpack_round_trips_structs_as_maps() {
        let p = Person {
            name: "Ada".into(),
            age: 36,
        };
        let bytes = Codec::MsgPack.encode(&p).unwrap();
        // A fixmap of two entries, not a fixarray: field names travel on the wire.
        assert_eq!(bytes[0], 0x82);
        assert_eq!(Codec::MsgPack.decode::<Person>(&bytes).unwrap(), p);
    }

    #[test]
    fn a_wrong_field_type_names_the_field() {
        let err = Codec::Json
            .decode::<Person>(br#"{"name":"Ada","age":"old"}"#)
            .unwrap_err();
        assert_eq!(err.path, "age");
        assert!(err.to_string().starts_with("age: invalid type"), "{err}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = Codec::Json
            .decode::<Person>(br#"{"name":"Ada"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("missing field `age`"), "{err}");
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(Codec::Json.decode::<Person>(b"\xff\x00garbage").is_err());
        assert!(Codec::MsgPack.decode::<Person>(b"\xc1\xc1").is_err());
    }

    #[test]
    fn bytes_after_a_complete_body_are_refused() {
        #[derive(Debug, serde::Deserialize, serde::Serialize)]
        struct Page {
            limit: u32,
        }
        for bad in [
            &br#"{"limit":1}garbage"#[..],
            br#"{"limit":1}{"limit":"x"}"#,
        ] {
            let err = Codec::Json.decode::<Page>(bad).unwrap_err();
            assert!(err.problem.contains("after"), "{err}");
        }
        assert!(Codec::Json.decode::<Page>(b" {\"limit\":1} \n").is_ok());
        let mut packed = Codec::MsgPack.encode(&Page { limit: 1 }).unwrap().to_vec();
        assert!(Codec::MsgPack.decode::<Page>(&packed).is_ok());
        packed.extend_from_slice(b"junk");
        let err = Codec::MsgPack.decode::<Page>(&packed).unwrap_err();
        assert_eq!(err.problem, "4 bytes after the MessagePack value");
    }

    #[test]
    fn an_unknown_content_type_is_quoted_short() {
        let long = "x".repeat(600_000);
        let err = Codec::from_content_type(Some(&long)).unwrap_err();
        assert!(err.len() < 300, "{}", err.len());
        assert!(err.contains("600000 bytes"), "{err}");
    }

    #[test]
    fn an_empty_json_payload_reads_as_an_empty_object() {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            limit: Option<u32>,
        }
        assert_eq!(Codec::Json.decode::<Page>(b"").unwrap().limit, None);
    }
}
