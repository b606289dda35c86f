//! The ABI's structs as typed values: the codecs of `pv_core::abi`, shared with the
//! split drivers (one implementation for both ends; see that module).

pub use pv_core::abi::*;
