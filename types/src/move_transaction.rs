//! Move transactions and the encoding of their payload.
//!
//! A Move transaction is signed like any Ethereum transaction: its `to` is
//! [`MOVE_ENTRY_ADDRESS`] and its calldata is the BCS encoding of a [`MovePayload`], so an
//! ordinary wallet can sign it. The payload is either a call of an entry function or a bundle of
//! modules to publish.
//!
//! The encoding is BCS (Binary Canonical Serialization) of these Move-style types, so any BCS
//! library can produce it:
//!
//! ```text
//! enum MovePayload {
//!     EntryFunction {                 // variant 0
//!         module_address: [u8; 20],   // the module's account
//!         module_name: String,
//!         function: String,
//!         type_arguments: Vec<String>, // e.g. "0x1::string::String", "u64", "vector<u8>"
//!         arguments: Vec<Vec<u8>>,     // each argument BCS-encoded
//!     },
//!     ModuleBundle {                  // variant 1
//!         modules: Vec<Vec<u8>>,       // compiled modules, in dependency order
//!     },
//! }
//! ```
//!
//! Decoding is strict: trailing bytes, non-canonical lengths, invalid UTF-8, payloads over
//! [`MAX_PAYLOAD_BYTES`] and more than [`MAX_TYPE_ARGUMENTS`] type arguments,
//! [`MAX_ARGUMENTS`] arguments or [`MAX_BUNDLE_MODULES`] modules are errors (an empty element is
//! one byte encoded and about 24 held decoded: a node holds waiting transactions decoded).

use alloy_primitives::{address, Address};

/// The address a signed Ethereum-style transaction is sent to for it to be a Move transaction.
pub const MOVE_ENTRY_ADDRESS: Address = address!("0x000000000000000000000000000000000000d0e7");

/// The Move call precompile: Solidity calls a Move function here (`IMove.call`).
pub const MOVE_CALL_ADDRESS: Address = address!("0x000000000000000000000000000000000000d0e1");

/// A reserved account, never part of the state, whose journaled storage inside an EVM
/// transaction numbers the Move writes made through [`MOVE_CALL_ADDRESS`], so that reverting an
/// EVM frame undoes them.
pub const MOVE_OVERLAY_ADDRESS: Address = address!("0x000000000000000000000000000000000000d0e2");

/// The largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// The most type arguments a Move call takes (from a transaction or from Solidity).
pub const MAX_TYPE_ARGUMENTS: usize = 32;

/// The most arguments a Move call takes (a Move function has at most 255 parameters).
pub const MAX_ARGUMENTS: usize = 255;

/// The most modules one bundle publishes.
pub const MAX_BUNDLE_MODULES: usize = 256;

/// A Move transaction whose sender is already known (recovered from its signature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveTransaction {
    /// The account that signed it: the Move `signer`, and the account that pays.
    pub sender: Address,
    /// The sender's nonce (the same counter as for EVM transactions).
    pub nonce: u64,
    /// The most gas the transaction may use.
    pub gas_limit: u64,
    /// Wei paid per unit of gas used.
    pub gas_price: u128,
    /// What to do.
    pub payload: MovePayload,
}

/// What a Move transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MovePayload {
    /// Call an entry function.
    EntryFunction(EntryFunction),
    /// Publish (or upgrade) modules under the sender's address.
    ModuleBundle(Vec<Vec<u8>>),
}

/// A call of a Move entry function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFunction {
    /// The account the module is published under.
    pub module_address: Address,
    /// The module's name.
    pub module_name: String,
    /// The function's name.
    pub function: String,
    /// Type arguments, in Move syntax (`u64`, `0x1::string::String`, …).
    pub type_arguments: Vec<String>,
    /// The arguments, each BCS-encoded; the signer is implied.
    pub arguments: Vec<Vec<u8>>,
}

/// Why a payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload of {0} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
    /// The bytes end before the payload does.
    #[error("payload ends early")]
    Truncated,
    /// Bytes are left after the payload.
    #[error("{0} unexpected bytes after the payload")]
    TrailingBytes(usize),
    /// An unknown payload kind.
    #[error("unknown payload kind {0}")]
    UnknownVariant(u64),
    /// A length is not in canonical form or does not fit.
    #[error("malformed length")]
    BadLength,
    /// A string is not UTF-8.
    #[error("a string is not valid UTF-8")]
    BadUtf8,
    /// More elements of a kind than a payload holds.
    #[error("{count} {what}: at most {max}")]
    TooMany {
        /// What they are ("type arguments", "arguments", "modules").
        what: &'static str,
        /// How many the payload holds.
        count: usize,
        /// How many it may hold.
        max: usize,
    },
}

impl MovePayload {
    /// The payload's BCS encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::EntryFunction(call) => {
                write_uleb128(&mut out, 0);
                out.extend_from_slice(call.module_address.as_slice());
                write_bytes(&mut out, call.module_name.as_bytes());
                write_bytes(&mut out, call.function.as_bytes());
                write_uleb128(&mut out, call.type_arguments.len() as u64);
                for type_argument in &call.type_arguments {
                    write_bytes(&mut out, type_argument.as_bytes());
                }
                write_uleb128(&mut out, call.arguments.len() as u64);
                for argument in &call.arguments {
                    write_bytes(&mut out, argument);
                }
            }
            Self::ModuleBundle(modules) => {
                write_uleb128(&mut out, 1);
                write_uleb128(&mut out, modules.len() as u64);
                for module in modules {
                    write_bytes(&mut out, module);
                }
            }
        }
        out
    }

    /// The length of [`encode`](Self::encode)'s output, without encoding.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        fn bytes(length: usize) -> usize {
            uleb128_len(length as u64) + length
        }
        match self {
            Self::EntryFunction(call) => {
                1 + 20
                    + bytes(call.module_name.len())
                    + bytes(call.function.len())
                    + uleb128_len(call.type_arguments.len() as u64)
                    + call.type_arguments.iter().map(|tag| bytes(tag.len())).sum::<usize>()
                    + uleb128_len(call.arguments.len() as u64)
                    + call.arguments.iter().map(|argument| bytes(argument.len())).sum::<usize>()
            }
            Self::ModuleBundle(modules) => {
                1 + uleb128_len(modules.len() as u64)
                    + modules.iter().map(|module| bytes(module.len())).sum::<usize>()
            }
        }
    }

    /// Decodes a payload.
    ///
    /// # Errors
    /// [`PayloadError`] if `bytes` is not exactly one well-formed payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(PayloadError::TooLarge(bytes.len()));
        }
        let mut reader = BcsReader(bytes);
        let payload = match reader.uleb128()? {
            0 => {
                let module_address = Address::from_slice(reader.take(20)?);
                let module_name = reader.string()?;
                let function = reader.string()?;
                let type_arguments =
                    reader.sequence(("type arguments", MAX_TYPE_ARGUMENTS), BcsReader::string)?;
                let arguments = reader.sequence(("arguments", MAX_ARGUMENTS), |reader| {
                    reader.bytes().map(<[u8]>::to_vec)
                })?;
                Self::EntryFunction(EntryFunction {
                    module_address,
                    module_name,
                    function,
                    type_arguments,
                    arguments,
                })
            }
            1 => {
                Self::ModuleBundle(reader.sequence(("modules", MAX_BUNDLE_MODULES), |reader| {
                    reader.bytes().map(<[u8]>::to_vec)
                })?)
            }
            other => return Err(PayloadError::UnknownVariant(other)),
        };
        if !reader.0.is_empty() {
            return Err(PayloadError::TrailingBytes(reader.0.len()));
        }
        Ok(payload)
    }
}

fn write_uleb128(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn uleb128_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_uleb128(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A strict reader of BCS: the payload's decoder, and the Move executor's check of arguments.
pub struct BcsReader<'a>(pub &'a [u8]);

impl<'a> BcsReader<'a> {
    /// The next `count` bytes.
    ///
    /// # Errors
    /// Fewer are left.
    pub fn take(&mut self, count: usize) -> Result<&'a [u8], PayloadError> {
        if self.0.len() < count {
            return Err(PayloadError::Truncated);
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(taken)
    }

    /// A ULEB128 integer in canonical (shortest) form, at most `u32::MAX` as BCS requires.
    ///
    /// # Errors
    /// Truncated, not canonical, or too large.
    pub fn uleb128(&mut self) -> Result<u64, PayloadError> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if (byte == 0 && shift > 0) || value > u64::from(u32::MAX) {
                    return Err(PayloadError::BadLength);
                }
                return Ok(value);
            }
        }
        Err(PayloadError::BadLength)
    }

    /// A sequence's length, no more than the bytes left (each element takes at least one).
    ///
    /// # Errors
    /// As [`Self::uleb128`], or longer than what is left.
    pub fn length(&mut self) -> Result<usize, PayloadError> {
        let length = usize::try_from(self.uleb128()?).map_err(|_| PayloadError::BadLength)?;
        // Every element takes at least one byte: a longer count cannot be honest.
        if length > self.0.len() {
            return Err(PayloadError::Truncated);
        }
        Ok(length)
    }

    /// A `vector<u8>`: its length, then its bytes.
    ///
    /// # Errors
    /// As [`Self::length`].
    pub fn bytes(&mut self) -> Result<&'a [u8], PayloadError> {
        let length = self.length()?;
        self.take(length)
    }

    fn string(&mut self) -> Result<String, PayloadError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| PayloadError::BadUtf8)
    }

    /// A sequence of at most `max` elements (`what` they are, for the error).
    fn sequence<T>(
        &mut self,
        (what, max): (&'static str, usize),
        mut element: impl FnMut(&mut Self) -> Result<T, PayloadError>,
    ) -> Result<Vec<T>, PayloadError> {
        let count = self.length()?;
        if count > max {
            return Err(PayloadError::TooMany { what, count, max });
        }
        (0..count).map(|_| element(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> MovePayload {
        MovePayload::EntryFunction(EntryFunction {
            module_address: Address::repeat_byte(0xab),
            module_name: "eth".into(),
            function: "transfer".into(),
            type_arguments: vec!["u64".into(), "0x1::string::String".into()],
            arguments: vec![vec![1; 20], 7u128.to_le_bytes().to_vec(), vec![0; 300]],
        })
    }

    #[test]
    fn payloads_round_trip() {
        for payload in [call(), MovePayload::ModuleBundle(vec![vec![0xa1, 0x1c], vec![]])] {
            assert_eq!(payload.encoded_len(), payload.encode().len());
            assert_eq!(MovePayload::decode(&payload.encode()), Ok(payload));
        }
    }

    #[test]
    fn encoding_is_bcs() {
        let bundle = MovePayload::ModuleBundle(vec![vec![7, 8]]);
        assert_eq!(bundle.encode(), [1, 1, 2, 7, 8]);
        // A 300-byte argument has a two-byte length: 300 = 0b10_0101100.
        let encoded = call().encode();
        let tail = &encoded[encoded.len() - 302..];
        assert_eq!(&tail[..2], &[0xac, 0x02]);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let encoded = call().encode();
        for cut in 0..encoded.len() {
            assert!(MovePayload::decode(&encoded[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = encoded.clone();
        trailing.push(0);
        assert_eq!(MovePayload::decode(&trailing), Err(PayloadError::TrailingBytes(1)));
        assert_eq!(MovePayload::decode(&[2]), Err(PayloadError::UnknownVariant(2)));
        // Non-canonical length: 1 written in two bytes.
        assert_eq!(MovePayload::decode(&[1, 0x81, 0x00]), Err(PayloadError::BadLength));
        // A huge count with nothing behind it.
        assert_eq!(MovePayload::decode(&[1, 0xff, 0xff, 0x03]), Err(PayloadError::Truncated));
        let mut bad_utf8 = vec![0];
        bad_utf8.extend_from_slice(&[0; 20]);
        bad_utf8.extend_from_slice(&[1, 0xff]);
        assert_eq!(MovePayload::decode(&bad_utf8), Err(PayloadError::BadUtf8));
        let huge = vec![0; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(MovePayload::decode(&huge), Err(PayloadError::TooLarge(MAX_PAYLOAD_BYTES + 1)));
        // Empty elements cost a byte each encoded: their counts are bounded.
        let with = |type_arguments: usize, arguments: usize| {
            MovePayload::EntryFunction(EntryFunction {
                module_address: Address::ZERO,
                module_name: "m".into(),
                function: "f".into(),
                type_arguments: vec![String::new(); type_arguments],
                arguments: vec![Vec::new(); arguments],
            })
            .encode()
        };
        assert!(MovePayload::decode(&with(MAX_TYPE_ARGUMENTS, MAX_ARGUMENTS)).is_ok());
        let many = PayloadError::TooMany { what: "arguments", count: 100_000, max: MAX_ARGUMENTS };
        assert_eq!(MovePayload::decode(&with(0, 100_000)), Err(many));
        assert_eq!(
            MovePayload::decode(&with(MAX_TYPE_ARGUMENTS + 1, 0)).unwrap_err().to_string(),
            "33 type arguments: at most 32"
        );
        let modules = MovePayload::ModuleBundle(vec![Vec::new(); MAX_BUNDLE_MODULES + 1]);
        assert_eq!(
            MovePayload::decode(&modules.encode()),
            Err(PayloadError::TooMany { what: "modules", count: 257, max: MAX_BUNDLE_MODULES })
        );
    }
}
