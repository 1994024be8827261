//! The columns of the plugin ABI: `bytes` fields that hold fixed-width little-endian
//! numbers back to back (`plugin.proto` lists which field holds which type).
//!
//! Who uses it: the host, which writes input columns and reads output columns, and the
//! plugin kit, which does the reverse. Reading a column is one bounds check and then a
//! plain load per value, and writing one is a store per value, where a `repeated`
//! field's generated code checks and advances the buffer at every value.

use std::fmt;
use std::marker::PhantomData;
use std::slice::ChunksExact;

mod sealed {
    pub trait Sealed {}
}

/// A number type a column can hold.
pub trait Fixed: Copy + sealed::Sealed {
    /// Bytes per value.
    const WIDTH: usize;
    /// The name of the type, as errors show it.
    const NAME: &'static str;

    /// The value of `WIDTH` little-endian bytes.
    #[doc(hidden)]
    fn from_le(bytes: &[u8]) -> Self;

    /// Writes the value's `WIDTH` little-endian bytes into `out`.
    #[doc(hidden)]
    fn to_le(self, out: &mut [u8]);
}

macro_rules! fixed {
    ($($type:ty),*) => {$(
        impl sealed::Sealed for $type {}

        impl Fixed for $type {
            const WIDTH: usize = size_of::<$type>();
            const NAME: &'static str = stringify!($type);

            #[inline]
            fn from_le(bytes: &[u8]) -> Self {
                <$type>::from_le_bytes(bytes.try_into().expect("a chunk of WIDTH bytes"))
            }

            #[inline]
            fn to_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

fixed!(u32, u64, i64);

/// A column whose length is not a whole number of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaggedColumn {
    /// The column's length in bytes.
    pub len: usize,
    /// The width of one value.
    pub width: usize,
    /// The value type's name.
    pub type_name: &'static str,
}

impl fmt::Display for RaggedColumn {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} bytes is not a whole number of {}-byte {} values",
            self.len, self.width, self.type_name
        )
    }
}

impl std::error::Error for RaggedColumn {}

/// The values of a column, in order.
#[derive(Debug, Clone)]
pub struct Values<'a, T> {
    chunks: ChunksExact<'a, u8>,
    marker: PhantomData<T>,
}

impl<T: Fixed> Iterator for Values<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        self.chunks.next().map(T::from_le)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }

    #[inline]
    fn nth(&mut self, n: usize) -> Option<T> {
        self.chunks.nth(n).map(T::from_le)
    }
}

impl<T: Fixed> ExactSizeIterator for Values<'_, T> {}

/// The values of `column`, or why it does not hold whole values of type `T`.
pub fn values<T: Fixed>(column: &[u8]) -> Result<Values<'_, T>, RaggedColumn> {
    if !column.len().is_multiple_of(T::WIDTH) {
        return Err(RaggedColumn {
            len: column.len(),
            width: T::WIDTH,
            type_name: T::NAME,
        });
    }
    Ok(Values {
        chunks: column.chunks_exact(T::WIDTH),
        marker: PhantomData,
    })
}

/// The column of `values`, in order.
pub fn to_column<T: Fixed>(values: impl IntoIterator<Item = T>) -> Vec<u8> {
    let mut values = values.into_iter();
    // Room for the values the iterator promises, written in place; then any others.
    let mut column = vec![0; values.size_hint().0 * T::WIDTH];
    let mut written = 0;
    for (out, value) in column.chunks_exact_mut(T::WIDTH).zip(&mut values) {
        value.to_le(out);
        written += T::WIDTH;
    }
    column.truncate(written);
    for value in values {
        column.resize(written + T::WIDTH, 0);
        value.to_le(&mut column[written..]);
        written += T::WIDTH;
    }
    column
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_little_endian_and_round_trip() {
        let written = to_column([1u32, 0x0102_0304]);
        assert_eq!(written, [1, 0, 0, 0, 4, 3, 2, 1]);
        assert_eq!(
            values::<u32>(&written).unwrap().collect::<Vec<_>>(),
            [1, 0x0102_0304]
        );
        let signed = [i64::MIN, -1, 0, i64::MAX];
        let written = to_column(signed);
        assert_eq!(&written[8..16], &[0xff; 8]);
        assert_eq!(values::<i64>(&written).unwrap().collect::<Vec<_>>(), signed);
        assert_eq!(values::<u64>(&written).map(|values| values.len()), Ok(4));
        assert_eq!(values::<u32>(&written).map(|values| values.len()), Ok(8));
        assert!(to_column::<u64>([]).is_empty());
        // Iterators that don't know their length, or understate it.
        let odd = (0..10u64).filter(|n| n % 2 == 1);
        assert_eq!(to_column(odd.clone()), to_column(odd.collect::<Vec<_>>()));
        assert_eq!(to_column(1..=3u64), to_column([1u64, 2, 3]));
    }

    #[test]
    fn a_ragged_column_is_refused() {
        let error = values::<u64>(&[0; 12]).unwrap_err();
        assert_eq!(
            error,
            RaggedColumn {
                len: 12,
                width: 8,
                type_name: "u64"
            }
        );
        assert_eq!(
            error.to_string(),
            "12 bytes is not a whole number of 8-byte u64 values"
        );
        assert!(values::<u32>(&[0; 6]).is_err());
    }

    #[test]
    fn a_column_is_the_wire_form_of_a_packed_repeated_field() {
        use prost::Message;

        #[derive(Clone, PartialEq, Message)]
        struct Packed {
            #[prost(fixed64, repeated, tag = "1")]
            values: Vec<u64>,
        }
        #[derive(Clone, PartialEq, Message)]
        struct Column {
            #[prost(bytes = "vec", tag = "1")]
            values: Vec<u8>,
        }
        let numbers = [7u64, u64::MAX, 0];
        let packed = Packed {
            values: numbers.to_vec(),
        }
        .encode_to_vec();
        let as_column = Column {
            values: to_column(numbers),
        }
        .encode_to_vec();
        assert_eq!(packed, as_column);
        let decoded = Column::decode(packed.as_slice()).unwrap();
        assert_eq!(
            values::<u64>(&decoded.values).unwrap().collect::<Vec<_>>(),
            numbers
        );
    }
}
