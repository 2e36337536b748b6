//! `u8_enum!`: a fieldless `#[repr(u8)]` enum with `TryFrom<u8>` and the list of its variants,
//! for states kept in an `AtomicU8` (server, client and shutdown states). Written once so no
//! enum hand-writes the reverse mapping.

/// Declares the enum as written (every variant with an explicit `= value`), adds
/// `#[repr(u8)]`, `ALL` (the variants in declaration order) and `TryFrom<u8>` (the unknown
/// value is the error).
macro_rules! u8_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        $vis enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
        }

        impl TryFrom<u8> for $name {
            type Error = u8;
            fn try_from(v: u8) -> Result<$name, u8> {
                $(if v == $value {
                    return Ok($name::$variant);
                })+
                Err(v)
            }
        }
    };
}

pub(crate) use u8_enum;

#[cfg(test)]
mod tests {
    u8_enum! {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Light {
            Red = 0,
            Green = 2,
        }
    }

    #[test]
    fn round_trips_and_rejects_unknown_values() {
        for l in Light::ALL {
            assert_eq!(Light::try_from(*l as u8), Ok(*l));
        }
        assert_eq!(Light::try_from(1), Err(1));
        assert_eq!(Light::ALL.len(), 2);
    }
}
